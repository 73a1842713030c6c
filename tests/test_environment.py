"""tests/environment.py: each pytest-xdist worker of a run gets a Redis database and a var/ folder of its own,
although the workers inherit the environment the controller set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = (
    "import json, os, tests.environment;"
    "print(json.dumps({n: os.environ[n] for n in ('CELERY_BROKER_URL', 'PALATE_VAR_DIR', 'PALATE_TEST_CHOSEN')}))"
)


def _loaded(environment: dict[str, str]) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_XDIST", "PALATE_")) and k != "CELERY_BROKER_URL"
    }
    shown = subprocess.run(
        [sys.executable, "-c", READ],
        cwd=ROOT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


def test_workers_started_from_the_controller_s_environment_take_databases_and_folders_of_their_own():
    controller = _loaded({})
    workers = [
        _loaded({**controller, "PYTEST_XDIST_WORKER": f"gw{index}", "PYTEST_XDIST_TESTRUNUID": "run-1"})
        for index in range(3)
    ]
    assert len({worker["CELERY_BROKER_URL"] for worker in workers}) == 3
    assert len({worker["PALATE_VAR_DIR"] for worker in workers}) == 3
    assert workers[1]["PALATE_VAR_DIR"].endswith("test-gw1")


def test_a_broker_the_caller_names_is_the_first_worker_s_and_the_next_ones_take_the_databases_after_it():
    given = {"CELERY_BROKER_URL": "redis://127.0.0.1:6399/7"}
    controller = _loaded(given)
    assert controller["CELERY_BROKER_URL"] == "redis://127.0.0.1:6399/7"
    workers = [
        _loaded({**controller, "PYTEST_XDIST_WORKER": f"gw{index}", "PYTEST_XDIST_TESTRUNUID": "run-1"})
        for index in range(2)
    ]
    assert [worker["CELERY_BROKER_URL"] for worker in workers] == [
        "redis://127.0.0.1:6399/7",
        "redis://127.0.0.1:6399/8",
    ]
