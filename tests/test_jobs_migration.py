"""The job lifecycle's migrations keep every row: a database at the migrations before them, with jobs in every
state, migrates to fields filled from what the rows held."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("annotate", "0001_squashed_initial"),
    ("rewardtrain", "0001_squashed_initial"),
]
AFTER = [("annotate", "0004_export_job_lifecycle"), ("rewardtrain", "0002_job_lifecycle")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def migrated_back(transactional_db):
    """Runs a test on the database as it was before the job lifecycle; leaves it fully migrated again."""
    yield _migrate(BEFORE)
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_existing_jobs_keep_their_data_and_get_attempts_progress_and_an_error_summary(migrated_back):
    old = migrated_back
    project = old.get_model("annotate", "Project").objects.create(name="p", slug="p")
    imports = old.get_model("annotate", "ImportJob").objects
    done = imports.create(
        project=project, filename="a.jsonl", status="succeeded", rows_done=9, counts={"rows": 9}
    )
    failed = imports.create(
        project=project, filename="b.jsonl", status="failed", errors=["b.jsonl, line 2: bad", "line 3: bad"]
    )
    halfway = imports.create(
        project=project, filename="c.jsonl", status="running", bytes_total=1000, bytes_done=250
    )
    waiting = imports.create(project=project, filename="d.jsonl", status="queued", stored_path="/tmp/d.jsonl")
    runs = old.get_model("rewardtrain", "TrainingRun").objects
    run = runs.create(
        project=project,
        base_model="m",
        status="running",
        step=30,
        total_steps=120,
        attempts=2,
        worker="gpu-1",
    )
    model = old.get_model("rewardtrain", "RewardModel").objects.create(
        run=runs.create(
            project=project, base_model="m", status="succeeded", step=5, total_steps=5, attempts=1
        ),
        project=project,
        version=1,
        path="runs/1/model",
    )
    scoring = old.get_model("rewardtrain", "ScoringJob").objects.create(
        project=project, reward_model=model, status="failed", scored=3, total=12, error="OSError: gone"
    )
    exports = old.get_model("annotate", "Export").objects
    exported = exports.create(
        project=project, version=1, status="succeeded", progress=1.0, counts={"pairs_exported": 4},
        files={"train.jsonl": {"path": "exports/1/train.jsonl", "rows": 4}},
    )  # fmt: skip
    export_failed = exports.create(project=project, version=2, status="failed", error="0 pairs satisfy it")
    export_queued = exports.create(project=project, version=3)

    new = _migrate(AFTER)
    imports = new.get_model("annotate", "ImportJob").objects
    assert imports.values_list("status", "attempts", "progress", "error").get(pk=done.pk) == (
        "succeeded", 1, 1.0, "",
    )  # fmt: skip
    assert imports.values_list("attempts", "error", "errors").get(pk=failed.pk) == (
        1, "b.jsonl, line 2: bad", ["b.jsonl, line 2: bad", "line 3: bad"],
    )  # fmt: skip
    assert imports.values_list("status", "attempts", "progress").get(pk=halfway.pk) == ("running", 1, 0.25)
    assert imports.values_list("status", "attempts", "stored_path", "max_attempts").get(pk=waiting.pk) == (
        "queued", 0, "/tmp/d.jsonl", 3,
    )  # fmt: skip
    runs = new.get_model("rewardtrain", "TrainingRun").objects
    assert runs.values_list("attempts", "worker", "progress").get(pk=run.pk) == (2, "gpu-1", 0.25)
    assert runs.get(pk=model.run_id).progress == 1.0
    jobs = new.get_model("rewardtrain", "ScoringJob").objects
    assert jobs.values_list("status", "attempts", "progress", "error", "scored").get(pk=scoring.pk) == (
        "failed", 1, 0.25, "OSError: gone", 3,
    )  # fmt: skip
    exports = new.get_model("annotate", "Export").objects
    assert exports.values_list("status", "attempts", "progress", "counts", "files").get(pk=exported.pk) == (
        "succeeded", 1, 1.0, {"pairs_exported": 4}, {"train.jsonl": {"path": "exports/1/train.jsonl", "rows": 4}},
    )  # fmt: skip
    assert exports.values_list("status", "attempts", "error").get(pk=export_failed.pk) == (
        "failed", 1, "0 pairs satisfy it",
    )  # fmt: skip
    assert exports.values_list("status", "attempts", "max_attempts").get(pk=export_queued.pk) == (
        "queued",
        0,
        3,
    )
