"""Data-parallel training in several processes (torchrun, gloo on the CPU, two ranks) with the tiny decoder:
a step on two ranks is the step of one process, for the plain and the shared-prefix forward; the command
trains a loadable model in two processes; a killed rank re-queues the run, the next attempt resumes from the
checkpoint, and a cancel stops every rank. Each test starts torchrun once or twice (about 15 s each on a
busy 2-core machine)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardtrain.models import RewardModel, TrainingRun
from rewardtrain.services.run_execution import training_run_execute
from rewardtrain.services.runs import (
    artifact_absolute,
    run_directory,
    training_run_create,
)
from rewardtrain.training.launch import LAUNCH_DIR, train_in_processes
from rewardtrain.training.trainer import latest_checkpoint, train
from tests.rewardtrain.conftest import marker_rows
from tests.rewardtrain.runs_data import FAST, judged_project, succeeded_export


def _rank_processes(job_dir: Path) -> dict[int, int]:
    """{rank: pid} of the ranks training ``job_dir``'s job, from /proc."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rank" in arguments and str(job_dir).encode() in arguments:
            rank = next((item[5:] for item in environment if item.startswith(b"RANK=")), None)
            if rank is not None:
                ranks[int(rank)] = int(entry.name)
    return ranks


@pytest.mark.parametrize("shared_prefix", ["off", "on"])
def test_a_step_on_two_ranks_gives_the_weights_of_the_same_step_in_one_process(
    tiny_decoder, tmp_path, shared_prefix
):
    # 17 pairs in micro-batches of 8, 8 and 1, accumulated into one step: the ranks split every micro-batch
    # (the last one leaves rank 1 a stand-in pair), and DDP all-reduces once, after the last.
    config = {
        "base_model": tiny_decoder,
        "learning_rate": 1e-3,
        "batch_size": 8,
        "gradient_accumulation_steps": 3,
        "max_length": 64,
        "save_steps": 1,
        "eval_steps": 0,
        "mixed_precision": "no",
        "shared_prefix": shared_prefix,
        "center_rewards_coefficient": 0.01,
    }
    rows = marker_rows(17, seed=5, conversational=True, extra=True)
    validation = marker_rows(3, seed=6, conversational=True)
    one = train(config, rows, validation, output_dir=tmp_path / "one", device="cpu")
    progress = []
    two = train_in_processes(
        config,
        rows,
        validation,
        processes=2,
        output_dir=tmp_path / "two",
        device="cpu",
        on_progress=lambda *arguments: progress.append(arguments),
    )
    assert one.total_steps == two.total_steps == 1 and two.status == "completed"
    assert two.timing["shared_prefix"] is (shared_prefix == "on") and two.device == "cpu × 2 processes"
    assert [step for step, *_ in progress] == [1]
    assert two.history[0]["loss"] == pytest.approx(one.history[0]["loss"], abs=1e-6)
    assert two.history[0]["accuracy"] == one.history[0]["accuracy"]
    assert two.history[0]["pairs"] == 17 and two.history[0]["tokens"] == one.history[0]["tokens"]
    single, parallel = (load_file(f"{run.checkpoint_dir}/model.safetensors") for run in (one, two))
    base = load_file(f"{tiny_decoder}/model.safetensors")
    assert single.keys() == parallel.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(parallel[name], tensor, rtol=0, atol=1e-5, msg=name)
    moved = [
        name
        for name, tensor in single.items()
        if name in base
        and base[name].shape == tensor.shape
        and not torch.allclose(tensor, base[name], atol=5e-4)
    ]
    assert len(moved) > len(single) // 2  # the step changed the weights by much more than the tolerance
    assert (tmp_path / "two" / "model" / "config.json").is_file()
    assert not (tmp_path / "two" / LAUNCH_DIR / "train.jsonl").exists()


@pytest.mark.django_db
def test_the_command_trains_in_two_processes_a_model_that_loads_with_pipeline(tiny_base_model):
    from io import StringIO

    from django.core.management import call_command
    from transformers import pipeline

    project, _ = judged_project(40)
    export = succeeded_export(project)
    out = StringIO()
    call_command(
        "train_reward_model", project.slug, "--export", str(export.pk), "--base-model", tiny_base_model,
        "--set", "num_epochs=1", "--set", "max_length=64", "--set", "eval_steps=2", "--set", "learning_rate=3e-3",
        "--processes", "2", "--allow-below-target", "--no-progress", stdout=out,
    )  # fmt: skip
    run = TrainingRun.objects.get(project=project)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.traceback
    assert run.step == run.total_steps == 4 and run.device == "cpu × 2 processes"
    assert "(2 processes)" in run.log and [entry["step"] for entry in run.metrics] == [1, 2, 3, 4]
    assert "eval_accuracy" in run.metrics[1] and run.evaluation["count"] == 10
    model = RewardModel.objects.get(run=run)
    assert "Reward model v1 at" in out.getvalue()
    scorer = pipeline("text-classification", model=str(artifact_absolute(model.path)), device="cpu")
    assert isinstance(scorer("a prompt and a response", function_to_apply="none")[0]["score"], float)


@pytest.mark.django_db
def test_a_killed_rank_requeues_the_run_the_next_attempt_resumes_and_a_cancel_stops_every_rank(
    tiny_base_model,
):
    project, _ = judged_project(60)
    export = succeeded_export(project)
    run = training_run_create(
        project=project, base_model=tiny_base_model, export=export, allow_below_target=True, enqueue=False,
        # Ten epochs planned: the resumed attempt must not finish before its cancel lands (with one epoch
        # it once did, a few steps after resuming).
        hyperparameters={**FAST, "batch_size": 1, "num_epochs": 10, "save_steps": 2, "learning_rate": 0.001},
    )  # fmt: skip
    job_dir = run_directory(run=run).resolve() / LAUNCH_DIR
    seen: list[dict[int, int]] = []

    def kill_rank_one(step: int, total: int, entry: dict) -> None:
        if step >= 2 and not seen:
            seen.append(_rank_processes(job_dir))
            os.kill(seen[0][1], signal.SIGKILL)

    run = training_run_execute(
        run_id=run.pk, worker_name="w1", on_progress=kill_rank_one, enqueue_retry=False, processes=2
    )
    assert run.status == TrainingRun.Status.QUEUED and run.attempts == 1, run.error
    assert "LaunchError" in run.log and "torchrun exit code" in run.traceback
    killed_at = latest_checkpoint(run_directory(run=run))
    assert killed_at is not None and sorted(seen[0]) == [0, 1]

    ranks: list[dict[int, int]] = []

    def cancel(step: int, total: int, entry: dict) -> None:
        if not ranks:
            ranks.append(_rank_processes(job_dir))
            TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    run = training_run_execute(
        run_id=run.pk, worker_name="w2", on_progress=cancel, enqueue_retry=False, processes=2
    )
    assert run.status == TrainingRun.Status.CANCELLED and run.attempts == 2, run.error + run.traceback
    assert f"resuming from the checkpoint of step {killed_at.name[5:]}" in run.log
    assert int(killed_at.name[5:]) < run.step < run.total_steps
    assert latest_checkpoint(run_directory(run=run)).name == f"step-{run.step}"
    assert not RewardModel.objects.filter(run=run).exists()
    assert sorted(ranks[0]) == [0, 1]
    deadline = time.monotonic() + 10
    while _rank_processes(job_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _rank_processes(job_dir)
