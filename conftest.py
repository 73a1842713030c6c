"""Test set-up shared by the whole suite.

The suite runs on PostgreSQL and Redis for real. ``make test`` (and so ``.ci/run``) points DATABASE_URL and
CELERY_BROKER_URL at 127.0.0.1 unless they are set; when either cannot be reached the run stops at once
with a message that says which, instead of skipping tests.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from hypothesis import settings as hypothesis_settings

import tests.environment  # noqa: F401  (imported first through -p; named here for readers)

# `pytest --hypothesis-profile=thorough`: the properties that take their number of examples from the profile
# (the importer's) try twenty times as many.
hypothesis_settings.register_profile("thorough", max_examples=2_000)

# The browser fixture for the Playwright tests (Debian Chromium).
pytest_plugins = ["tests.browser"]


def _reachable(url: str, default_port: int) -> tuple[bool, str]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=3):
            return True, f"{host}:{port}"
    except OSError as error:
        return False, f"{host}:{port} ({error})"


def pytest_configure(config):
    problems = []
    for name, port, what in (("DATABASE_URL", 5432, "PostgreSQL"), ("CELERY_BROKER_URL", 6379, "Redis")):
        url = os.environ[name]
        if name == "DATABASE_URL" and not url.startswith(("postgres://", "postgresql://")):
            problems.append(f"DATABASE_URL must point at PostgreSQL for the tests, got {url!r}")
            continue
        ok, where = _reachable(url, port)
        if not ok:
            problems.append(
                f"{what} is not reachable at {where}: start it (see README, 'Running the tests') or set {name}"
            )
    if problems:
        raise pytest.UsageError("the test suite needs its services:\n  " + "\n  ".join(problems))


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher"
    ]  # speed; never in production
    # Every request checks its token (a test deletes tokens behind the cache's back); tests of the cache
    # turn it on themselves.
    settings.USER_TOKEN_CACHE_SECONDS = 0
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(tmp_path)}
    }


class EnqueuedTasks:
    def __init__(self) -> None:
        self.job_ids: list[int] = []

    def delay(self, job_id: int) -> None:
        self.job_ids.append(job_id)


@pytest.fixture
def enqueued(monkeypatch) -> EnqueuedTasks:
    """Stands in for the import task's broker, so that nothing reaches the shared Redis; says which import
    jobs were sent."""
    tasks = EnqueuedTasks()
    monkeypatch.setattr("annotate.tasks.import_job_run_task", tasks)
    return tasks


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real Celery worker (a separate process) on Redis, against this test's database and base models
    (``TRAINING_BASE_MODELS``: request a fixture that installs them before this one).

    The broker is the test run's own Redis database (tests/environment.py). Yields the broker URL; the
    worker is stopped afterwards and the broker database emptied.
    """
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    from palate.celery import app

    broker_url = os.environ["CELERY_BROKER_URL"]
    database = connection.settings_dict
    database_url = f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "CACHE_URL": "",
        "TRAINING_BASE_MODELS": settings.TRAINING_BASE_MODELS,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "palate", "worker", "-Q", "default,gpu", "--concurrency", "1",
         "--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=environment, start_new_session=True,
    )  # fmt: skip
    time.sleep(1.5)
    if worker.poll() is not None:
        raise RuntimeError("the Celery worker did not start")
    try:
        yield broker_url
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        with app.connection_for_write() as broker:
            broker.default_channel.client.flushdb()
