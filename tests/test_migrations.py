"""The migrations are one clean set per app (annotate 0001, rewardtrain 0001) that replaces the ones before it.
A database at the last of those (annotate 0010, rewardtrain 0004: tests/fixtures/database_at_0010.sql.gz, the
demo with judgments, leases, jobs of every kind and a reward model) migrates to today's schema with every row
intact."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
DUMP = ROOT / "tests" / "fixtures" / "database_at_0010.sql.gz"
KEPT = [
    "auth_user",
    "annotate_project",
    "annotate_membership",
    "annotate_prompt",
    "annotate_response",
    "annotate_pair",
    "annotate_judgment",
    "annotate_assignment",
    "annotate_export",
    "annotate_importjob",
    "rewardtrain_trainingrun",
    "rewardtrain_rewardmodel",
    "rewardtrain_scoringjob",
]


def _server(dbname: str) -> psycopg.Connection:
    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database["HOST"] or "127.0.0.1",
        port=database["PORT"] or 5432,
        user=database["USER"],
        password=database["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


def _counts(connection: psycopg.Connection) -> dict[str, int]:
    return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in KEPT}


@pytest.fixture
def database_at_0010():
    name = f"{settings.DATABASES['default']['NAME']}_at_0010"
    with _server("postgres") as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}"')
        server.execute(f'CREATE DATABASE "{name}"')
    try:
        with _server(name) as connection:
            connection.execute(gzip.decompress(DUMP.read_bytes()).decode())
        yield name
    finally:
        with _server("postgres") as server:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_at_the_replaced_migrations_upgrades_with_every_row_intact(database_at_0010):
    with _server(database_at_0010) as connection:
        connection.execute("SET search_path TO public")
        before = _counts(connection)
        judgments = connection.execute(
            "SELECT id, pair_id, annotator_id, choice, criteria, rationale FROM annotate_judgment ORDER BY id"
        ).fetchall()
    database = settings.DATABASES["default"]
    url = f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database_at_0010}"
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-4000:]
    with _server(database_at_0010) as connection:
        assert _counts(connection) == before
        assert before["annotate_judgment"] == 510 and before["rewardtrain_scoringjob"] == 1
        assert (
            connection.execute(
                "SELECT id, pair_id, annotator_id, choice, criteria, rationale FROM annotate_judgment ORDER BY id"
            ).fetchall()
            == judgments
        )
        applied = {
            (app, name)
            for app, name in connection.execute("SELECT app, name FROM django_migrations").fetchall()
        }
        assert {("annotate", "0001_squashed_initial"), ("rewardtrain", "0001_squashed_initial")} <= applied
        # What the later migrations derive from the rows: progress days from the submitted leases, the jobs'
        # attempts, and the workspace functions.
        submitted = connection.execute(
            "SELECT count(*) FROM annotate_assignment WHERE status = 'submitted'"
        ).fetchone()[0]
        assert (
            connection.execute("SELECT sum(submitted) FROM annotate_progressday").fetchone()[0]
            == submitted
            > 0
        )
        assert connection.execute(
            "SELECT count(*) FROM rewardtrain_trainingrun WHERE status <> 'queued' AND attempts = 0"
        ).fetchone() == (0,)
        assert connection.execute("SELECT to_regproc('palate_pair_next') IS NOT NULL").fetchone() == (True,)
