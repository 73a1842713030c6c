"""Temperature scaling: fitted on the validation pairs, it lowers the calibration error of an over-confident
model, is saved with the model and read back by scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardtrain.training.calibration import calibration_report, fit_temperature
from rewardtrain.training.trainer import train
from tests.rewardtrain.conftest import marker_rows


def test_temperature_scaling_lowers_the_error_of_over_confident_scores():
    rng = np.random.default_rng(0)
    right = rng.random(400) < 0.7  # ranked right seven times in ten, with differences of about 6
    difference = np.where(right, 1.0, -1.0) * rng.uniform(4.0, 8.0, 400)
    report = calibration_report(difference, np.zeros(400))
    assert report["temperature"] > 3
    assert report["ece_before"] > 0.25 and report["ece_after"] < 0.05
    assert report["log_loss_after"] < report["log_loss_before"]


def test_well_calibrated_scores_keep_a_temperature_near_one():
    rng = np.random.default_rng(1)
    difference = rng.normal(0.0, 2.0, 4000)
    preferred = rng.random(4000) < 1 / (1 + np.exp(-difference))
    assert fit_temperature(np.where(preferred, difference, -difference), np.ones(4000)) == pytest.approx(
        1.0, abs=0.1
    )


@pytest.fixture
def over_confident_model(tiny_reward_model, tmp_path):
    """The tiny reward model with a large random head (seeded, so the test is the same every time): it ranks
    about three pairs in four right and is nearly sure of every verdict."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # The sign that ranks more than half the pairs right (with this seed, about three in four).
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=generator) * -50.0)
    model.save_pretrained(tmp_path / "over-confident")
    AutoTokenizer.from_pretrained(tiny_reward_model).save_pretrained(tmp_path / "over-confident")
    return str(tmp_path / "over-confident")


def test_a_run_fits_a_temperature_that_lowers_an_over_confident_models_ece(over_confident_model, tmp_path):
    from rewardtrain.scoring.engine import load_model

    result = train(
        {
            "base_model": over_confident_model,
            "learning_rate": 1e-12,  # training leaves the model as it is
            "batch_size": 16,
            "max_length": 48,
            "eval_steps": 0,
            "save_steps": 0,
            "validation_share": 0.5,
        },
        marker_rows(64, seed=11),
        output_dir=tmp_path / "run",
        device="cpu",
    )
    calibration = result.calibration
    assert 0.6 < result.evaluation["accuracy"] < 0.9, result.evaluation["accuracy"]
    assert calibration["ece_before"] > 0.15
    assert calibration["ece_after"] < calibration["ece_before"] / 2
    assert calibration["temperature"] > 10
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["palate"]
    assert saved["temperature"] == pytest.approx(calibration["temperature"])
    assert saved["max_length"] == 48  # next to the encoding settings
    loaded = load_model(result.artifact_dir, device="cpu")
    assert loaded.temperature == pytest.approx(calibration["temperature"])
    probabilities = loaded.win_probabilities(np.array([0.0, 10.0]))
    expected = 1 / (1 + np.exp(10.0 / calibration["temperature"]))
    np.testing.assert_allclose(probabilities, [expected, 1 - expected])
