"""The per-pair losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rewardtrain.training.loss import pair_losses


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_is_the_negative_log_sigmoid_of_the_difference():
    losses = pair_losses(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert losses[0].item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)  # 0.3133
    assert losses[1].item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_the_margin_is_subtracted_from_the_difference():
    losses = pair_losses(torch.tensor([2.0, 1.0]), torch.tensor([0.0, 0.0]), margin=torch.tensor([1.0, 0.0]))
    # Both pairs end up with difference 1: -log sigma(1) = 0.31326.
    assert losses.tolist() == pytest.approx([0.313262, 0.313262], abs=1e-6)


def test_soft_label_loss_against_hand_values():
    # p = 0.75, d = 2: -(0.75 log sigma(2) + 0.25 log sigma(-2)) = 0.75 * 0.126928 + 0.25 * 2.126928
    losses = pair_losses(torch.tensor([2.0]), torch.tensor([0.0]), vote_share=torch.tensor([0.75]))
    assert losses.item() == pytest.approx(0.626928, abs=1e-6)


def test_a_tie_is_a_vote_share_of_one_half_and_is_minimised_at_equal_rewards():
    differences = torch.tensor([-1.0, 0.0, 1.0])
    losses = pair_losses(differences, torch.zeros(3), vote_share=torch.full((3,), 0.5)).tolist()
    assert losses[1] == pytest.approx(math.log(2), abs=1e-7)
    assert losses[0] == pytest.approx(losses[2]) and losses[0] > losses[1]


def test_a_vote_share_of_one_is_bradley_terry():
    chosen, rejected = torch.tensor([0.3, -1.2, 2.5]), torch.tensor([0.1, 0.4, -0.5])
    soft = pair_losses(chosen, rejected, vote_share=torch.ones(3))
    torch.testing.assert_close(soft, pair_losses(chosen, rejected), atol=1e-7, rtol=0)


def test_pair_losses_use_bradley_terry_where_the_vote_share_is_missing():
    chosen, rejected = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    losses = pair_losses(chosen, rejected, vote_share=torch.tensor([float("nan"), 0.5]))
    assert losses[0].item() == pytest.approx(-log_sigmoid(1.0), abs=1e-6)
    assert losses[1].item() == pytest.approx(-(0.5 * log_sigmoid(1.0) + 0.5 * log_sigmoid(-1.0)), abs=1e-6)


def test_large_differences_stay_finite():
    losses = pair_losses(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert losses.item() == pytest.approx(400.0, rel=1e-6)
