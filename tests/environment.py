"""Loaded by pytest before Django starts (``-p tests.environment`` in pyproject.toml), so that the
settings module sees the test services: PostgreSQL and Redis on 127.0.0.1 unless set otherwise."""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/palate")
# A Redis database of its own per test run (1-15), so that two runs on one machine never take each
# other's tasks.
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{random.randint(1, 15)}")
os.environ.setdefault("PALATE_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))
