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

# The browser fixture for the Playwright tests (Debian Chromium); the S3-compatible server (moto).
pytest_plugins = ["tests.browser", "tests.object_store"]


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
                f"{what} is not reachable at {where}: start it (see docs/development.md, 'Running the tests') or set {name}"
            )
    if problems:
        raise pytest.UsageError("the test suite needs its services:\n  " + "\n  ".join(problems))


def pytest_collection_modifyitems(config, items):
    # The longest tests (real workers, then the browser's) first: under xdist, one that started last would
    # hold the end of the run while the other workers wait.
    items.sort(
        key=lambda item: (
            not item.get_closest_marker("celery_worker"),
            not item.get_closest_marker("browser"),
        )
    )


_SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def terminal_summary(pytestconfig) -> list[str]:
    """Lines a test adds here are shown at the end of the run (the API fuzzing's number of cases)."""
    return pytestconfig.stash.setdefault(_SUMMARY, [])


def pytest_sessionfinish(session):
    # Under pytest-xdist a worker's lines go to the controller, which prints the summary.
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["palate_summary"] = session.config.stash.get(_SUMMARY, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    node.config.stash.setdefault(_SUMMARY, []).extend(
        getattr(node, "workeroutput", {}).get("palate_summary", [])
    )


def pytest_terminal_summary(terminalreporter, config):
    for line in config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(line)


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
    from tests.workers import celery_worker, worker_environment

    environment = worker_environment(
        media_root=settings.MEDIA_ROOT,
        artifact_root=settings.ARTIFACT_ROOT,
        base_models=settings.TRAINING_BASE_MODELS,
    )
    with celery_worker(environment) as broker_url:
        yield broker_url
