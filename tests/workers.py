"""A real Celery worker process for tests, against the test database and the test run's Redis database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def worker_environment(*, media_root, artifact_root, base_models: str) -> dict[str, str]:
    """The environment of a worker that sees what this test process sees: its database (the test
    database), broker, storage folders and installed base models (``TRAINING_BASE_MODELS``)."""
    database = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"],
        "MEDIA_ROOT": str(media_root),
        "ARTIFACT_ROOT": str(artifact_root),
        "CACHE_URL": "",
        "TRAINING_BASE_MODELS": base_models,
    }


@contextmanager
def celery_worker(
    environment: dict[str, str], *, queues: str = "default,gpu", hostname: str | None = None
) -> Iterator[str]:
    """A solo-pool worker on ``queues`` while the block runs; yields the broker URL. Stopped afterwards and
    the broker database emptied. Several workers at once need a ``hostname`` each (a starting worker takes
    over the jobs that ran under its own name)."""
    from palate.celery import app

    named = ["--hostname", hostname] if hostname else []
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "palate", "worker", "-Q", queues, "--concurrency", "1",
         "--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle",
         *named],
        env=environment, start_new_session=True,
    )  # fmt: skip
    # No wait for the worker to start: the broker holds what the test sends until it consumes.
    try:
        yield environment["CELERY_BROKER_URL"]
    finally:
        exited = worker.poll()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        with app.connection_for_write() as broker:
            broker.default_channel.client.flushdb()
        if exited is not None:
            raise RuntimeError(f"the Celery worker exited while the test ran (status {exited})")
