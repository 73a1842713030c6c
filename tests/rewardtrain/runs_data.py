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
