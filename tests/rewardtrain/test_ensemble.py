"""Ensembles: members trained on one split with their own seeds, saved as one directory; a response's score is
the members' mean and its uncertainty their spread (zero for identical members), through the engine and the
scoring API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rewardtrain.scoring.engine import ScoringRequest, load_model, score_members, score_requests
from rewardtrain.stats import ensemble_scores, model_uncertainty_priorities
from rewardtrain.training.artifacts import save_ensemble
from rewardtrain.training.ensemble import train_ensemble
from tests.rewardtrain.conftest import marker_rows

REQUEST = ScoringRequest("the river and the stone ", ("excellent morning light", "terrible", ""))


@pytest.fixture(scope="module")
def ensemble(tiny_decoder, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ensemble")
    progress: list[int] = []
    result = train_ensemble(
        {
            "base_model": tiny_decoder,
            "learning_rate": 3e-3,
            "batch_size": 16,
            "max_length": 48,
            "eval_steps": 0,
            "save_steps": 0,
            "ensemble_size": 2,
        },
        marker_rows(48, seed=12),
        output_dir=directory,
        device="cpu",
        on_progress=lambda step, total, epoch, metrics: progress.append(step),
    )
    return result, progress


def test_an_ensemble_trains_its_members_on_one_split_as_one_run(ensemble):
    result, progress = ensemble
    members = result.evaluation["ensemble"]["members"]
    assert result.status == "completed" and [m["seed"] for m in members] == [42, 43]
    assert progress == list(range(1, result.global_step + 1)) and result.global_step == 6
    assert result.data["validation"]["source"] == "held_out"
    directory = Path(result.artifact_dir)
    palate = json.loads((directory / "config.json").read_text())["palate"]
    assert palate["ensemble"]["members"] == [".", "members/member-1"]
    assert palate["temperature"] == pytest.approx(result.calibration["temperature"])
    assert (directory / "members" / "member-1" / "model.safetensors").is_file()
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(directory)  # a plain directory: member 0


def test_members_that_differ_give_a_positive_uncertainty_and_the_mean_score(ensemble):
    result, _ = ensemble
    loaded = load_model(result.artifact_dir, device="cpu")
    assert loaded.ensemble_size == 2
    members = score_members(loaded, [REQUEST])[0]
    score, uncertainty = loaded.combine(members)
    assert members.shape == (2, 3) and (uncertainty > 0).all()
    np.testing.assert_allclose(score, members.mean(axis=0))
    np.testing.assert_allclose(score_requests(loaded, [REQUEST])[0], score)


def test_identical_members_give_zero_uncertainty(tiny_reward_model, tmp_path):
    member = Path(tiny_reward_model)
    save_ensemble(
        [member, member, member],
        tmp_path / "same",
        offsets=[0.0, 0.0, 0.0],
        evaluation={
            "accuracy": None,
            "reward_mean": 0.0,
            "reward_std": 1.0,
            "ensemble": {"size": 3, "members": []},
        },
        calibration=None,
    )
    loaded = load_model(str(tmp_path / "same"), device="cpu")
    score, uncertainty = loaded.combine(score_members(loaded, [REQUEST])[0])
    assert loaded.ensemble_size == 3
    np.testing.assert_array_equal(uncertainty, np.zeros(3))
    single = load_model(tiny_reward_model, device="cpu")
    np.testing.assert_allclose(score, score_requests(single, [REQUEST])[0], rtol=1e-6)
    assert single.combine(score_members(single, [REQUEST])[0])[1] is None


def test_the_uncertain_model_strategy_puts_pairs_the_members_disagree_on_first():
    score, uncertainty = ensemble_scores(np.array([[1.0, 0.0, 3.0, 0.0], [1.0, 0.0, -1.0, 0.0]]))
    np.testing.assert_array_equal(uncertainty, [0.0, 0.0, 2.0, 0.0])
    # Two pairs with the same mean margin of 1: the one whose response the members disagree on comes first.
    a, b = np.array([score[0], score[2]]), np.array([score[1], score[3]])
    plain = model_uncertainty_priorities(a, b, np.zeros(2))
    with_spread = model_uncertainty_priorities(
        a, b, np.zeros(2), uncertainty_a=uncertainty[[0, 2]], uncertainty_b=uncertainty[[1, 3]]
    )
    assert plain[0] == plain[1] and with_spread[1] > with_spread[0]


@pytest.mark.django_db
def test_the_scoring_api_returns_an_ensembles_uncertainty_and_calibrated_win_probabilities(ensemble):
    from rest_framework.test import APIClient

    from annotate.models import Membership
    from palate.celery import app
    from tests.factories import MembershipFactory, ProjectFactory, UserFactory
    from tests.rewardtrain.scoring_data import reward_model_row

    result, _ = ensemble
    project = ProjectFactory()
    model = reward_model_row(project, result.artifact_dir)
    user = UserFactory()
    MembershipFactory(user=user, project=project, role=Membership.Role.ENGINEER)
    client = APIClient()
    client.force_authenticate(user)
    previous, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        body = client.post(
            f"/api/reward-models/{model.pk}/score/",
            {"prompt": REQUEST.prompt, "responses": list(REQUEST.responses)},
            format="json",
        ).json()
    finally:
        app.conf.task_always_eager = previous
    loaded = load_model(result.artifact_dir, device="cpu")
    score, uncertainty = loaded.combine(score_members(loaded, [REQUEST])[0])
    rows = body["scores"]
    np.testing.assert_allclose([row["raw"] for row in rows], score, rtol=1e-5)
    np.testing.assert_allclose([row["uncertainty"] for row in rows], uncertainty, rtol=1e-4)
    np.testing.assert_allclose(
        [row["win_probability"] for row in rows], loaded.win_probabilities(score), rtol=1e-4
    )
    assert rows[0]["win_probability"] > 0.5  # 'excellent' beats the others


@pytest.mark.django_db
def test_stored_uncertainties_reorder_the_uncertain_model_queue_and_predictions_use_the_temperature():
    from annotate.models import Pair
    from rewardtrain.models import ResponseScore
    from rewardtrain.services.assisted import model_pair_priorities_refresh, pair_predictions
    from tests.factories import PairFactory, ProjectFactory
    from tests.rewardtrain.scoring_data import reward_model_row

    project = ProjectFactory(assignment_strategy="uncertain_model", overlap=3)
    model = reward_model_row(project, "unused")
    model.metrics = {**model.metrics, "temperature": 2.0}
    model.save()
    agreed, disputed = (PairFactory(project=project, prompt__project=project) for _ in range(2))
    # Both pairs have A ahead by 1; the members disagree about the disputed pair's responses.
    for pair, spread in ((agreed, 0.0), (disputed, 3.0)):
        ResponseScore.objects.create(
            response=pair.response_a, reward_model=model, score=1.0, uncertainty=spread
        )
        ResponseScore.objects.create(
            response=pair.response_b, reward_model=model, score=0.0, uncertainty=spread
        )
    model_pair_priorities_refresh(project=project)
    order = list(
        Pair.objects.filter(project=project).order_by("-priority", "id").values_list("id", flat=True)
    )
    assert order == [disputed.pk, agreed.pk]
    probability = pair_predictions(project=project, reward_model=model)[0]["probability_a"]
    assert probability == pytest.approx(1 / (1 + np.exp(-1.0 / 2.0)))
