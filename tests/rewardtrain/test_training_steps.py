"""The schedule's step count: steps are the batches length grouping actually makes, numbered strictly
increasing across epochs and resumes, and the learning rate decays over exactly those steps."""

from __future__ import annotations

import math

import pytest

from rewardtrain.training.trainer import latest_checkpoint, train
from tests.rewardtrain.conftest import marker_rows

PAIRS, PAIRS_PER_PROMPT, BATCH_SIZE = 70, 3, 4
SETTINGS = {
    "learning_rate": 1e-3,
    "batch_size": BATCH_SIZE,
    "max_length": 64,
    "warmup_ratio": 0.0,
    "lr_scheduler": "linear",
    "eval_steps": 0,
    "save_steps": 0,
}


def grouped_rows() -> list[dict]:
    """Three pairs on each prompt: packing whole prompt groups into batches of 4 leaves part-filled batches,
    so an epoch has more batches than pairs / batch size."""
    rows = marker_rows(PAIRS, seed=5)
    for index, row in enumerate(rows):
        row["prompt"] = rows[index - index % PAIRS_PER_PROMPT]["prompt"]
    return rows


def run(tiny_decoder, output_dir, *, epochs: int, **options):
    progress: list[int] = []
    result = train(
        {"base_model": tiny_decoder, **SETTINGS, "num_epochs": epochs},
        grouped_rows(),
        marker_rows(4, seed=6),  # validation pairs of their own: every training pair trains
        output_dir=output_dir,
        device="cpu",
        on_progress=lambda step, total, epoch, metrics: progress.append(step),
        **options,
    )
    return result, progress


@pytest.fixture(scope="module")
def two_epochs(tiny_decoder, tmp_path_factory):
    return run(tiny_decoder, tmp_path_factory.mktemp("two-epochs"), epochs=2)


@pytest.mark.parametrize("epochs", [1, 2])
def test_total_steps_is_the_number_of_optimizer_steps_taken(tiny_decoder, tmp_path, two_epochs, epochs):
    result, progress = two_epochs if epochs == 2 else run(tiny_decoder, tmp_path, epochs=1)
    assert result.status == "completed"
    assert result.total_steps > epochs * math.ceil(PAIRS / BATCH_SIZE)  # the data exercises the grouping
    assert len(result.history) == len(progress) == result.total_steps == result.global_step
    assert [h["step"] for h in result.history] == progress == list(range(1, result.total_steps + 1))
    assert result.epoch == epochs and result.history[-1]["epoch"] == epochs
    assert sum(h["pairs"] for h in result.history) == epochs * PAIRS


def test_the_learning_rate_reaches_its_final_value_only_at_the_last_step(two_epochs):
    result, _ = two_epochs
    total = result.total_steps
    rates = [h["learning_rate"] for h in result.history]
    # Linear decay without warm-up: step k trains at lr * (1 - (k - 1) / total), never at zero.
    assert rates == pytest.approx([1e-3 * (1 - (k - 1) / total) for k in range(1, total + 1)])
    assert min(rates) == rates[-1] > 0


def test_a_run_resumed_mid_epoch_two_trains_exactly_the_remaining_batches(tiny_decoder, tmp_path, two_epochs):
    whole, _ = two_epochs
    first_epoch = next(h["step"] for h in whole.history if h["epoch"] == 1)
    stop_after = first_epoch + 3
    calls: list[int] = []
    stopped, _ = run(
        tiny_decoder,
        tmp_path,
        epochs=2,
        should_stop=lambda: calls.append(1) or len(calls) > stop_after,
    )
    assert stopped.status == "cancelled" and stopped.global_step == stop_after

    resumed, progress = run(tiny_decoder, tmp_path, epochs=2, resume_from=latest_checkpoint(tmp_path))
    assert resumed.status == "completed"
    assert progress == list(range(stop_after + 1, whole.total_steps + 1))
    assert len(progress) == whole.total_steps - stop_after
    assert [h["step"] for h in resumed.history] == list(range(1, whole.total_steps + 1))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
