"""Loaded by pytest before Django starts (``-p tests.environment`` in pyproject.toml), so that the
settings module sees the test services: PostgreSQL and Redis on 127.0.0.1 unless set otherwise."""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/palate")
# A Redis database of its own per test run (1-15), so that two runs on one machine never take each
# other's tasks; under pytest-xdist each worker of a run takes the next one after the run's first.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_first = random.Random(os.environ.get("PYTEST_XDIST_TESTRUNUID")).randint(0, 14)
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{(_first + int(_worker)) % 15 + 1}")
os.environ.setdefault(
    "PALATE_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / f"test-gw{_worker}")
)
