"""Validation always: the split held out by prompt when the data has none, model selection on it (the best
evaluation's weights kept, across a resume too), and early stopping."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from rewardtrain.training.data import hold_out_validation
from rewardtrain.training.data.split import prompt_key
from rewardtrain.training.errors import DataError
from rewardtrain.training.trainer import BEST_DIR, latest_checkpoint, train
from tests.rewardtrain.conftest import marker_rows


def rows_on_prompts(prompts: int, pairs_per_prompt: int, *, seed: int) -> list[dict]:
    rows = marker_rows(prompts * pairs_per_prompt, seed=seed)
    for index, row in enumerate(rows):
        row["prompt"] = rows[index - index % pairs_per_prompt]["prompt"]
    return rows


def prompts_of(rows: list[dict]) -> set[str]:
    return {prompt_key(index, row) for index, row in enumerate(rows)}


def test_the_split_is_prompt_disjoint_and_the_same_for_the_same_rows_in_any_order():
    rows = rows_on_prompts(40, 3, seed=1)
    train_rows, validation, report = hold_out_validation(rows, share=0.2, seed=7)
    assert not prompts_of(train_rows) & prompts_of(validation)
    assert len(prompts_of(validation)) == report.prompts == 8 and report.pairs == len(validation) == 24
    assert report.train_prompts == 32 and len(train_rows) + len(validation) == len(rows)
    assert report.source == "held_out" and (report.share, report.seed) == (0.2, 7)

    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    _, again, _ = hold_out_validation(shuffled, share=0.2, seed=7)
    assert prompts_of(again) == prompts_of(validation)
    _, other_seed, _ = hold_out_validation(rows, share=0.2, seed=8)
    assert prompts_of(other_seed) != prompts_of(validation)


def test_a_tiny_dataset_holds_out_one_prompt_and_a_single_prompt_is_a_clear_error():
    train_rows, validation, report = hold_out_validation(rows_on_prompts(2, 2, seed=2), share=0.1, seed=0)
    assert report.prompts == 1 and len(validation) == 2 and len(train_rows) == 2
    with pytest.raises(DataError, match="at least two prompts"):
        hold_out_validation(rows_on_prompts(1, 5, seed=3), share=0.1, seed=0)


# --- model selection -----------------------------------------------------------------------------------------

PAIRS, BATCH = 64, 16  # one pair per prompt: 4 steps an epoch
SETTINGS = {
    "learning_rate": 3e-3,
    "batch_size": BATCH,
    "num_epochs": 3,
    "max_length": 48,
    "eval_steps": 0,
    "save_steps": 4,
    "save_total_limit": 5,
    "selection_metric": "loss",
    "early_stopping_patience": 1,
}


def reversed_validation() -> list[dict]:
    """Validation pairs that prefer what training teaches against: the more the model learns, the higher its
    validation loss, so the end of epoch 1 is the best model a run can keep."""
    rows = marker_rows(24, seed=9)
    return [{**row, "chosen": row["rejected"], "rejected": row["chosen"]} for row in rows]


def run(tiny_decoder, output_dir, **options):
    return train(
        {"base_model": tiny_decoder, **SETTINGS},
        marker_rows(PAIRS, seed=8),
        reversed_validation(),
        output_dir=output_dir,
        device="cpu",
        **options,
    )


@pytest.fixture(scope="module")
def rising(tiny_decoder, tmp_path_factory):
    directory = tmp_path_factory.mktemp("rising")
    return run(tiny_decoder, directory), directory


def head(directory) -> dict[str, torch.Tensor]:
    return {
        name: tensor
        for name, tensor in load_file(f"{directory}/model.safetensors").items()
        if "score" in name
    }


def test_a_run_whose_validation_loss_rises_after_epoch_one_ends_with_the_epoch_one_model(rising):
    result, directory = rising
    first, second = result.eval_history[:2]
    assert (first["step"], second["step"]) == (4, 8) and second["loss"] > first["loss"]
    assert result.selection["best_step"] == 4 and result.selection["best_epoch"] == 1.0
    assert result.evaluation["loss"] == pytest.approx(first["loss"])
    kept, epoch_one = head(result.artifact_dir), head(directory / "checkpoints" / "step-4")
    assert kept and kept.keys() == epoch_one.keys()
    for name, tensor in epoch_one.items():
        assert torch.equal(kept[name], tensor), name
    assert not torch.equal(
        kept[next(iter(kept))], head(directory / "checkpoints" / "step-8")[next(iter(kept))]
    )
    card = (directory / "model" / "README.md").read_text()
    assert "the model of step 4, the best of 2 evaluations by validation loss" in card


def test_early_stopping_ends_the_run_after_patience_evaluations_without_improvement(rising):
    result, _ = rising
    assert result.status == "completed" and result.total_steps == 12
    assert result.global_step == 8 and result.selection["stopped_early_at"] == 8
    assert [entry["step"] for entry in result.eval_history] == [4, 8]


def test_a_resumed_run_keeps_the_best_model_it_found_before_the_interruption(tiny_decoder, tmp_path, rising):
    whole, _ = rising
    calls: list[int] = []
    stopped = run(tiny_decoder, tmp_path, should_stop=lambda: calls.append(1) or len(calls) > 6)
    assert stopped.status == "cancelled" and stopped.global_step == 6
    # The checkpoint carries the best weights: the run's own copy is not needed to resume.
    for path in (tmp_path / BEST_DIR).iterdir():
        path.unlink()
    resumed = run(tiny_decoder, tmp_path, resume_from=latest_checkpoint(tmp_path))
    assert resumed.selection["best_step"] == 4 and resumed.global_step == 8
    kept, expected = head(resumed.artifact_dir), head(whole.artifact_dir)
    for name, tensor in expected.items():
        assert torch.equal(kept[name], tensor), name


def test_without_validation_rows_a_run_holds_out_prompts_and_says_so(tiny_decoder, tmp_path):
    result = train(
        {"base_model": tiny_decoder, **SETTINGS, "num_epochs": 1, "save_steps": 0, "validation_share": 0.25},
        rows_on_prompts(16, 2, seed=4),
        output_dir=tmp_path,
        device="cpu",
    )
    validation = result.data["validation"]
    assert validation["source"] == "held_out" and validation["prompts"] == 4 and validation["pairs"] == 8
    assert result.data["train"]["pairs"] == 24 and result.evaluation["count"] == 8
    assert result.evaluation["accuracy"] is not None
    assert "4 of the training prompts" in (tmp_path / "model" / "README.md").read_text()


@pytest.mark.django_db
def test_a_run_on_an_export_without_a_test_split_reports_its_held_out_prompts_on_its_page(
    client, tiny_base_model
):
    from django.core.management import call_command

    from annotate.models import Membership
    from rewardtrain.models import TrainingRun
    from tests.factories import MembershipFactory, UserFactory
    from tests.rewardtrain.runs_data import judged_project, succeeded_export

    project, _ = judged_project(40)
    export = succeeded_export(project, split=1.0)
    assert export.counts["rows"].get("test") is None
    call_command(
        "train_reward_model", project.slug, "--export", str(export.pk), "--base-model", tiny_base_model,
        "--set", "num_epochs=1", "--set", "max_length=64", "--set", "eval_steps=2", "--allow-below-target",
        "--no-progress",
    )  # fmt: skip
    run = TrainingRun.objects.get(project=project)
    assert run.status == TrainingRun.Status.SUCCEEDED
    validation = run.evaluation["data"]["validation"]
    assert validation["source"] == "held_out" and (validation["prompts"], validation["pairs"]) == (4, 4)
    assert run.evaluation["count"] == 4 and run.evaluation["accuracy"] is not None
    best = run.evaluation["selection"]["best_step"]
    assert best in {entry["step"] for entry in run.metrics if "eval_loss" in entry}
    assert "held out 4 of 40 prompts (4 pairs) for validation" in run.log
    assert f"kept the model of step {best} by validation loss" in run.log
    model = run.reward_model
    assert model.metrics["temperature"] == run.evaluation["temperature_scaling"]["temperature"]
    assert model.metrics["best_step"] == best and model.metrics["ensemble_size"] == 1

    engineer = UserFactory()
    MembershipFactory(user=engineer, project=project, role=Membership.Role.ENGINEER)
    client.force_login(engineer)
    page = client.get(f"/projects/{project.slug}/training/{run.pk}/").content.decode()
    assert "4 of 40 prompts (10%, seed 0) were held out with their 4 pairs" in page
    assert f"Step {best} (epoch" in page and "Temperature " in page


def test_selection_by_accuracy_keeps_the_first_best_and_counts_patience_from_it():
    from rewardtrain.training.selection import Selection

    selection = Selection("accuracy", patience=2)
    evaluations = [(10, 0.6), (20, 0.8), (30, 0.8), (40, None), (50, 0.9)]
    improved = [
        selection.consider(step, step / 10, {"accuracy": value, "loss": 1.0})
        for step, value in evaluations[:4]
    ]
    assert improved == [True, True, False, False]  # a tie is no improvement, nor an undefined accuracy
    assert (selection.best_step, selection.best_value, selection.since_best) == (20, 0.8, 2)
    assert selection.patience_spent
    last = Selection("last")
    assert all(
        last.consider(step, 1.0, {"accuracy": value, "loss": 9.0 - step}) for step, value in evaluations
    )
    assert last.best_step == 50 and not last.keeps_weights and not last.patience_spent
