"""The training loop end to end on CPU: learning, progress, cancel, checkpoint and resume, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardtrain.training.errors import CheckpointError, ConfigError, ModelLoadError
from rewardtrain.training.trainer import latest_checkpoint, read_checkpoint_state, train
from tests.rewardtrain.conftest import marker_rows

DECODER_SETTINGS = {
    "learning_rate": 3e-3,
    "batch_size": 16,
    "num_epochs": 2,
    "max_length": 64,
    "eval_steps": 4,
    "save_steps": 0,
    "chunk_overhead_tokens": 256,
}


@pytest.fixture(scope="module")
def decoder_run(tiny_decoder, tmp_path_factory):
    progress = []
    result = train(
        {"base_model": tiny_decoder, **DECODER_SETTINGS},
        marker_rows(96, seed=1, conversational=True, extra=True),
        marker_rows(48, seed=2, conversational=True, extra=True),
        output_dir=tmp_path_factory.mktemp("decoder-run"),
        device="cpu",
        on_progress=lambda *arguments: progress.append(arguments),
        policy={"min_agreement": 0.6},
    )
    return result, progress


def test_the_tiny_decoder_learns_the_marker_task(decoder_run):
    result, _ = decoder_run
    assert result.status == "completed" and result.global_step == result.total_steps == 12
    assert result.evaluation["accuracy"] >= 0.9
    assert set(result.evaluation["by_agreement"]) == {"unanimous", "contested"}
    assert result.data["train"]["dropped"] == 0 and result.data["train"]["pairs"] == 96
    assert result.timing["shared_prefix"] and result.timing["pairs_per_second"] > 0
    assert result.eval_history and result.eval_history[0]["step"] == 4
    json.dumps(result.to_dict())


def test_progress_is_reported_after_every_step(decoder_run):
    result, progress = decoder_run
    steps = [step for step, total, _, metrics in progress if "loss" in metrics]
    assert steps == list(range(1, result.total_steps + 1))
    step, total, epoch, metrics = progress[3]
    assert (step, total, epoch) == (4, 12, pytest.approx(4 / 6))
    assert {"loss", "accuracy", "learning_rate", "pairs_per_second", "eval_accuracy"} <= set(metrics)
    # The final report is that of the evaluation whose model was kept.
    kept = [m for step, _, _, m in progress if step == result.selection["best_step"] and "eval_accuracy" in m]
    assert kept and kept[0]["eval_accuracy"] == result.evaluation["accuracy"]
    assert progress[-1][3]["eval_accuracy"] is not None  # the last step is evaluated too


def test_the_decoder_artifact_loads_with_from_pretrained_and_pipeline(decoder_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    result, _ = decoder_run
    directory = result.artifact_dir
    model = AutoModelForSequenceClassification.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert model.config.reward_mean == pytest.approx(result.evaluation["reward_mean"])
    assert model.config.reward_std == pytest.approx(result.evaluation["reward_std"])
    assert model.config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    reward = pipeline("text-classification", model=directory, device="cpu")
    right = 0
    rows = marker_rows(48, seed=2, conversational=True)
    for row in rows:
        scores = [
            reward(tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=False))[0]["score"]
            for side in ("chosen", "rejected")
        ]
        right += scores[0] > scores[1]
    # Training ran under bf16 autocast where the CPU has AMX; the saved float32 model ranks the same.
    assert right / len(rows) >= 0.9
    card = Path(directory, "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "min_agreement" in card and "| eval | 48 |" in card


def test_minilm_learns_the_marker_task_and_its_artifact_scores_text_pairs(minilm, tmp_path):
    from transformers import pipeline

    result = train(
        {
            "base_model": minilm,
            "learning_rate": 2e-4,
            "batch_size": 16,
            "max_length": 32,
            "eval_steps": 0,
            "save_steps": 0,
        },
        marker_rows(64, seed=1),
        marker_rows(32, seed=2),
        output_dir=tmp_path,
        device="cpu",
    )
    assert result.evaluation["accuracy"] >= 0.8
    reward = pipeline("text-classification", model=result.artifact_dir, device="cpu")
    row = marker_rows(32, seed=2)[0]
    chosen, rejected = (
        reward({"text": row["prompt"], "text_pair": row[side]})["score"] for side in ("chosen", "rejected")
    )
    assert chosen > rejected


def test_cancel_stops_within_one_step_and_resume_gives_the_uninterrupted_weights(tiny_decoder, tmp_path):
    settings = {
        **DECODER_SETTINGS,
        "batch_size": 8,
        "gradient_accumulation_steps": 2,
        "save_steps": 3,
        "eval_steps": 0,
    }
    config = {"base_model": tiny_decoder, **settings}
    rows, held_out = (
        marker_rows(64, seed=3, conversational=True),
        marker_rows(16, seed=4, conversational=True),
    )

    whole = train(config, rows, held_out, output_dir=tmp_path / "whole", device="cpu")
    assert whole.total_steps == 8

    calls = []
    stopped = train(
        config,
        rows,
        held_out,
        output_dir=tmp_path / "stopped",
        device="cpu",
        should_stop=lambda: calls.append(1) or len(calls) > 5,
    )
    assert stopped.status == "cancelled" and stopped.global_step == 5 and stopped.artifact_dir is None
    checkpoint = latest_checkpoint(tmp_path / "stopped")
    assert checkpoint.name == "step-5" and str(checkpoint) == stopped.checkpoint_dir
    assert read_checkpoint_state(checkpoint)["step"] == 5

    resumed = train(
        config, rows, held_out, output_dir=tmp_path / "stopped", device="cpu", resume_from=checkpoint
    )
    assert resumed.status == "completed" and resumed.global_step == 8
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    final, expected = (load_file(f"{run.artifact_dir}/model.safetensors") for run in (resumed, whole))
    assert final.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(final[name], tensor), name
    assert resumed.evaluation["accuracy"] == whole.evaluation["accuracy"]

    with pytest.raises(CheckpointError, match="learning_rate"):
        train(
            {**config, "learning_rate": 1e-3},
            rows,
            held_out,
            output_dir=tmp_path / "x",
            resume_from=checkpoint,
        )


def test_a_base_model_that_does_not_exist_fails_before_training(tmp_path):
    with pytest.raises(ModelLoadError, match="no model directory"):
        train({"base_model": str(tmp_path / "missing")}, marker_rows(4, seed=1), output_dir=tmp_path / "run")


def test_max_length_beyond_the_model_is_a_config_error(tiny_decoder, tmp_path):
    with pytest.raises(ConfigError) as caught:
        train({"base_model": tiny_decoder, "max_length": 4096}, marker_rows(4, seed=1), output_dir=tmp_path)
    assert caught.value.field == "max_length"


def test_lora_trains_adapters_and_saves_a_merged_model(tiny_decoder, tmp_path):
    result = train(
        {"base_model": tiny_decoder, **DECODER_SETTINGS, "num_epochs": 1, "use_lora": True, "lora_r": 4},
        marker_rows(32, seed=5, conversational=True),
        marker_rows(8, seed=6, conversational=True),
        output_dir=tmp_path,
        device="cpu",
    )
    weights = load_file(f"{result.artifact_dir}/model.safetensors")
    assert not any("lora" in name for name in weights)
    assert result.status == "completed"
