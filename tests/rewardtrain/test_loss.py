"""The losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rewardtrain.training.loss import (
    bradley_terry_loss,
    pair_losses,
    preference_loss,
    reward_centering_loss,
    soft_label_loss,
)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_is_the_mean_negative_log_sigmoid_of_the_difference():
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2  # 0.3133 + 0.6931
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.5032, abs=1e-4)


def test_bradley_terry_subtracts_the_margin_and_weighs_pairs():
    chosen, rejected = torch.tensor([2.0, 1.0]), torch.tensor([0.0, 0.0])
    margin, weight = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    loss = bradley_terry_loss(chosen, rejected, margin=margin, weight=weight)
    # Both pairs end up with difference 1: -log sigma(1) = 0.31326 whatever the weights.
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)
    loss = bradley_terry_loss(
        torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), weight=torch.tensor([3.0, 1.0])
    )
    assert loss.item() == pytest.approx((3 * math.log(2) + math.log1p(math.exp(-2))) / 4, abs=1e-6)


def test_soft_label_loss_against_hand_values():
    # p = 0.75, d = 2: -(0.75 log sigma(2) + 0.25 log sigma(-2)) = 0.75 * 0.126928 + 0.25 * 2.126928
    loss = soft_label_loss(torch.tensor([2.0]), torch.tensor([0.75]))
    assert loss.item() == pytest.approx(0.626928, abs=1e-6)


def test_a_tie_is_a_vote_share_of_one_half_and_is_minimised_at_equal_rewards():
    differences = torch.tensor([-1.0, 0.0, 1.0])
    losses = [soft_label_loss(d[None], torch.tensor([0.5])).item() for d in differences]
    assert losses[1] == pytest.approx(math.log(2), abs=1e-7)
    assert losses[0] == pytest.approx(losses[2]) and losses[0] > losses[1]


def test_a_vote_share_of_one_is_bradley_terry():
    chosen, rejected = torch.tensor([0.3, -1.2, 2.5]), torch.tensor([0.1, 0.4, -0.5])
    soft = soft_label_loss(chosen - rejected, torch.ones(3))
    assert soft.item() == pytest.approx(bradley_terry_loss(chosen, rejected).item(), abs=1e-7)


def test_reward_centering_against_hand_values():
    assert reward_centering_loss(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(
        2.0
    )


def test_pair_losses_use_bradley_terry_where_the_vote_share_is_missing():
    chosen, rejected = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    losses = pair_losses(chosen, rejected, vote_share=torch.tensor([float("nan"), 0.5]))
    assert losses[0].item() == pytest.approx(-log_sigmoid(1.0), abs=1e-6)
    assert losses[1].item() == pytest.approx(-(0.5 * log_sigmoid(1.0) + 0.5 * log_sigmoid(-1.0)), abs=1e-6)


def test_preference_loss_adds_the_centering_term():
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])
    plain = preference_loss(chosen, rejected)
    centred = preference_loss(chosen, rejected, center_rewards_coefficient=0.1)
    assert centred.item() == pytest.approx(plain.item() + 0.1 * 1.0, abs=1e-6)


def test_large_differences_stay_finite():
    loss = bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert loss.item() == pytest.approx(400.0, rel=1e-6)
