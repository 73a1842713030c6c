"""Hyperparameter validation, and the web process's import boundary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rewardtrain.training.config import TrainConfig
from rewardtrain.training.errors import ConfigError, TrainingError


def test_defaults_round_trip():
    config = TrainConfig.from_dict({"base_model": "some/model"})
    assert config.learning_rate > 0 and config.batch_size == 8
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.prompt_floor == config.max_length // 4


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"learning_rate": 0}, "learning_rate", "must be > 0"),
        ({"learning_rate": "fast"}, "learning_rate", "must be a number"),
        ({"batch_size": 2.5}, "batch_size", "must be an integer"),
        ({"batch_size": True}, "batch_size", "must be an integer"),
        ({"lr_scheduler": "wavy"}, "lr_scheduler", "must be one of linear, cosine, constant"),
        ({"learnin_rate": 1e-5}, "learnin_rate", "unknown hyperparameter"),
        ({"use_lora": "yes"}, "use_lora", "must be true or false"),
        ({"max_length": 128, "min_prompt_tokens": 128}, "min_prompt_tokens", "must be < max_length"),
        ({"learning_rate": float("nan")}, "learning_rate", "must be finite"),
    ],
)
def test_errors_name_the_field(values, field, words):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"base_model": "some/model", **values})
    assert caught.value.field == field
    assert words in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, TrainingError)


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"learning_rate": -1, "num_epochs": 0})
    assert set(caught.value.errors) == {"base_model", "learning_rate", "num_epochs"}
    assert caught.value.errors["base_model"] == "is required"


def test_describe_lists_every_field_with_help():
    described = {field["name"]: field for field in TrainConfig.describe()}
    assert described["base_model"]["required"] and described["learning_rate"]["default"] == 5e-5
    assert all(field["help"] for field in described.values())


def test_the_web_process_can_validate_without_importing_torch():
    code = (
        "import sys; from rewardtrain.training.config import TrainConfig; import rewardtrain.training.evaluate;"
        " TrainConfig.from_dict({'base_model': 'x'}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_numeric_hyperparameter_has_an_upper_bound_checked_when_the_run_is_created():
    """A value the worker cannot use (a seed of 10**30 overflows numpy's and torch's) is refused up front."""
    numeric = [
        spec for spec in TrainConfig.describe() if spec["type"].removesuffix(" | None") in {"int", "float"}
    ]
    assert numeric and all("le" in spec or "lt" in spec for spec in numeric), [
        spec["name"] for spec in numeric if "le" not in spec and "lt" not in spec
    ]
    with pytest.raises(ConfigError) as refused:
        TrainConfig.from_dict({"base_model": "x", "seed": 10**30})
    assert refused.value.field == "seed"
