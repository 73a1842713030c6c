"""Loaded by pytest before Django starts (``-p tests.environment`` in pyproject.toml), so that the
settings module sees the test services: PostgreSQL and Redis on 127.0.0.1 unless set otherwise."""

from __future__ import annotations

import os
import random
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/palate")
# A Redis database of its own per test run (1-15), so that two runs on one machine never take each
# other's tasks; under pytest-xdist each worker of a run takes the next one after the run's first. The
# xdist workers inherit the controller's environment, so what this file chose there (named in
# PALATE_TEST_CHOSEN) is chosen again in each worker; what the caller set is kept.
_chosen = set(filter(None, os.environ.get("PALATE_TEST_CHOSEN", "").split(",")))
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_first = random.Random(os.environ.get("PYTEST_XDIST_TESTRUNUID")).randint(0, 14)


def _choose(name: str, value: str) -> None:
    if name in _chosen or name not in os.environ:
        os.environ[name] = value
        _chosen.add(name)


_choose("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{(_first + int(_worker)) % 15 + 1}")
if "CELERY_BROKER_URL" not in _chosen and int(_worker):
    # A broker the caller named: the xdist workers after the first take the databases after its own.
    _given = urlsplit(os.environ["CELERY_BROKER_URL"])
    _database = (int(_given.path.strip("/") or 0) + int(_worker)) % 16
    os.environ["CELERY_BROKER_URL"] = urlunsplit(_given._replace(path=f"/{_database}"))
_choose("PALATE_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / f"test-gw{_worker}"))
os.environ["PALATE_TEST_CHOSEN"] = ",".join(sorted(_chosen))
