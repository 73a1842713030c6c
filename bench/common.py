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
