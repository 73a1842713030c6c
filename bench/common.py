"""What the benchmarks that use PostgreSQL share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Words for synthetic prompts and responses.
WORDS = [
    "the",
    "model",
    "answer",
    "explains",
    "why",
    "a",
    "reward",
    "function",
    "learned",
    "from",
    "human",
    "preferences",
    "can",
    "drift",
    "when",
    "annotators",
    "disagree",
    "about",
    "tone",
    "length",
    "accuracy",
    "and",
    "safety",
    "so",
    "leads",
    "check",
    "agreement",
    "before",
    "training",
]


def prepare_database() -> None:
    """Creates the database named in DATABASE_URL when it is missing, then migrates it."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], check=True, cwd=ROOT
    )


# Children before parents; each statement names the project's rows through the chain above them.
_PROJECT_ROWS = [
    ("annotate_judgmentrevision", "judgment_id IN (SELECT j.id FROM annotate_judgment j JOIN annotate_pair p ON p.id = j.pair_id WHERE p.project_id = %(project)s)"),
    ("annotate_judgment", "pair_id IN (SELECT id FROM annotate_pair WHERE project_id = %(project)s)"),
    ("annotate_assignment", "project_id = %(project)s"),
    ("annotate_pair", "project_id = %(project)s"),
    ("annotate_response", "prompt_id IN (SELECT id FROM annotate_prompt WHERE project_id = %(project)s)"),
    ("annotate_prompt", "project_id = %(project)s"),
    ("annotate_importjob", "project_id = %(project)s"),
    ("annotate_export", "project_id = %(project)s"),
    ("annotate_agreementsnapshot", "project_id = %(project)s"),
    ("annotate_progressday", "project_id = %(project)s"),
    ("annotate_membership", "project_id = %(project)s"),
    ("annotate_projectapitoken", "project_id = %(project)s"),
    ("annotate_project", "id = %(project)s"),
]  # fmt: skip


def delete_project(project_id: int) -> None:
    """Deletes one project and every row under it, in plain SQL (the ORM's cascade would load every row
    into memory first), in one transaction."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for table, condition in _PROJECT_ROWS:
            cursor.execute(f"DELETE FROM {table} WHERE {condition}", {"project": project_id})


def delete_projects(slug_prefix: str) -> int:
    """Deletes the benchmark's projects (those whose slug starts with ``slug_prefix``), then rewrites the
    tables they used, so that every run starts from the same compact tables: a deleted project's rows stay
    behind as dead space until a vacuum, and each run would otherwise write into tables bloated by the
    runs before it (3 GB of dead responses had built up, measured). Only for the benchmarks' own
    databases: VACUUM FULL locks the tables while it rewrites them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM annotate_project WHERE slug LIKE %s", [slug_prefix + "%"])
        projects = [row[0] for row in cursor.fetchall()]
    for project in projects:
        delete_project(project)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM FULL ANALYZE {', '.join(table for table, _ in _PROJECT_ROWS)}")
    return len(projects)
