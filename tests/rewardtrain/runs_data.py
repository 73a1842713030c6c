"""A project whose judgments teach the synthetic marker task (tests/rewardtrain/conftest.py), and an export
of it, for the training-run tests."""

from __future__ import annotations

import random

from annotate.models import Export, Judgment, Membership, Pair, Project, Prompt, Response
from annotate.services.exports import export_create, export_run
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.rewardtrain.conftest import marker_rows

FAST = {
    "learning_rate": 0.003,
    "batch_size": 8,
    "num_epochs": 2,
    "max_length": 64,
    "eval_steps": 0,
    "save_steps": 0,
    "warmup_ratio": 0.0,
}


def judged_project(pairs: int = 160, *, seed: int = 0, annotators: int = 2) -> tuple[Project, list]:
    """A project with ``pairs`` marker pairs, each judged by ``annotators`` who all prefer the 'excellent'
    response (shown as A or B at random). Returns the project and its annotators."""
    project = ProjectFactory()
    users = [UserFactory() for _ in range(annotators)]
    for user in users:
        MembershipFactory(user=user, project=project, role=Membership.Role.ANNOTATOR)
    rng = random.Random(seed)
    rows = marker_rows(pairs, seed=seed)
    prompts = Prompt.objects.bulk_create(
        Prompt(
            project=project,
            external_id=f"p{index}",
            content=row["prompt"].strip(),
            fingerprint=f"{index:040d}",
        )
        for index, row in enumerate(rows)
    )
    responses = Response.objects.bulk_create(
        Response(
            prompt=prompt,
            external_id=f"r{index}-{side}",
            system=side,
            content=row[side],
            fingerprint=f"{index:038d}{0 if side == 'chosen' else 1:02d}",
        )
        for index, (prompt, row) in enumerate(zip(prompts, rows, strict=True))
        for side in ("chosen", "rejected")
    )
    flips = [rng.random() < 0.5 for _ in rows]
    made = Pair.objects.bulk_create(
        Pair(
            project=project,
            prompt=prompt,
            response_a=responses[2 * index + (1 if flip else 0)],
            response_b=responses[2 * index + (0 if flip else 1)],
            judgment_count=len(users),
            slots_taken=len(users),
        )
        for index, (prompt, flip) in enumerate(zip(prompts, flips, strict=True))
    )
    Judgment.objects.bulk_create(
        Judgment(pair=pair, annotator=user, choice="b" if flip else "a")
        for pair, flip in zip(made, flips, strict=True)
        for user in users
    )
    return project, users


def succeeded_export(project: Project, **policy) -> Export:
    export = export_create(
        project=project, policy={"split": 0.75, **policy}, formats=["jsonl"], created_by=None, enqueue=False
    )
    export = export_run(export_id=export.pk)
    assert export.status == Export.Status.SUCCEEDED, export.error
    return export


def search_run_with_trials(project, base_model: str, *, finished: bool = True):
    """A search run (not executed) with the rows its trials leave: two complete (the first kept), one
    pruned and, while it runs, one training; for the pages."""
    from django.utils import timezone

    from rewardtrain.models import SearchTrial, TrainingRun
    from rewardtrain.services.runs import training_run_create

    run = training_run_create(
        project=project, base_model=base_model, policy={"split": 0.8}, allow_below_target=True, enqueue=False,
        mode="search", search={"trials": 4, "parallel": 2, "time_budget_seconds": 1800},
    )  # fmt: skip
    figures = [
        (0, {"learning_rate": 8.1e-5, "num_epochs": 2, "warmup_ratio": 0.05, "weight_decay": 0.01,
             "center_rewards_coefficient": 0.012}, [0.70, 0.78, 0.83], SearchTrial.Status.SUCCEEDED, None),
        (1, {"learning_rate": 1.6e-5, "num_epochs": 1, "warmup_ratio": 0.17, "weight_decay": 0.08,
             "center_rewards_coefficient": 0.031}, [0.58], SearchTrial.Status.SUCCEEDED, 10),
        (2, {"learning_rate": 1.4e-4, "num_epochs": 3, "warmup_ratio": 0.11, "weight_decay": 0.04,
             "center_rewards_coefficient": 0.002}, [0.72, 0.79, 0.80], SearchTrial.Status.SUCCEEDED, None),
        (3, {"learning_rate": 4.4e-5, "num_epochs": 2, "warmup_ratio": 0.02, "weight_decay": 0.06,
             "center_rewards_coefficient": 0.044}, [0.69], SearchTrial.Status.RUNNING, None),
    ]  # fmt: skip
    for number, params, accuracies, status, pruned in figures:
        steps = [10 * (index + 1) for index in range(len(accuracies))]
        intermediate = [
            {"step": step, "accuracy": accuracy, "loss": 0.9 - accuracy / 2}
            for step, accuracy in zip(steps, accuracies, strict=True)
        ]
        complete = status == SearchTrial.Status.SUCCEEDED and pruned is None
        SearchTrial.objects.create(
            run=run, number=number, params=params, status=status, pruned_at_step=pruned, attempts=1,
            value=accuracies[-1] if status == SearchTrial.Status.SUCCEEDED else None, intermediate=intermediate,
            step=steps[-1], total_steps=10 * params["num_epochs"] * 3 if not complete else steps[-1],
            worker=f"gpu{number % 2 + 1}@host pid 4{number} on host", started_at=timezone.now(),
            result={"evaluation": {"accuracy": accuracies[-1], "loss": 0.9 - accuracies[-1] / 2}} if complete else {},
        )  # fmt: skip
    if finished:
        SearchTrial.objects.filter(run=run, number=3).update(
            status=SearchTrial.Status.CANCELLED, log="stopped by the search's time budget at step 10\n"
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.SUCCEEDED,
            progress=1.0,
            evaluation={"accuracy": 0.83, "count": 40, "loss": 0.48, "ece": 0.06, "brier": 0.17,
                        "reward_mean": 0.2, "reward_std": 1.1, "search": {"best_trial": 0, "metric": "accuracy",
                                                                         "value": 0.83},
                        "calibration": [{"confidence": c, "accuracy": a, "count": n}
                                        for c, a, n in ((0.55, 0.6, 12), (0.7, 0.74, 16), (0.9, 0.93, 12))],
                        "length_bias": {"accuracy_when_chosen_shorter": 0.8, "count_chosen_shorter": 18,
                                        "accuracy_when_chosen_longer": 0.86, "count_chosen_longer": 22,
                                        "pearson": 0.08, "spearman": 0.05, "longer_scores_higher": 0.54},
                        "histogram": {"edges": [-2.0, -1.0, 0.0, 1.0, 2.0], "chosen": [2, 6, 14, 18],
                                      "rejected": [15, 14, 8, 3]}},
        )  # fmt: skip
    else:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.RUNNING, attempts=1, progress=0.75
        )
    run.refresh_from_db()
    return run
