"""Web and workers on "separate machines" that share nothing but PostgreSQL, Redis and an object store.

Every process gets its own empty MEDIA_ROOT, ARTIFACT_ROOT, PALATE_VAR_DIR and scratch folder; the store
is a real S3-compatible server on loopback (moto), the broker a Redis of this test's own. Through the API
of a gunicorn web process: a large import (streamed into the store by the web process, read back by a
worker), an export (written to the store by the worker, downloaded through a signed link), a training run
whose worker is killed in mid-training and resumed by a second worker from the checkpoint in the store,
and scoring by a worker that fetches the model into its own cache. At the end no process has a file left
in its folders but the scoring worker's model cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection

from annotate.models import Membership
from rewardtrain.models import RewardModel, TrainingRun
from tests.factories import MembershipFactory, ProjectFactory
from tests.object_store import CREDENTIALS, REGION, free_port
from tests.rewardtrain.conftest import build_tiny_decoder, marker_rows
from tests.waiting import wait_for

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
ROWS = 200
PADDING = 50_000  # characters of metadata per row: a file of about 10 MB, more than one upload part


@contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout == b"PONG\n", seconds=20)  # fmt: skip
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


class Machine:
    """One "machine": a process with folders of its own, none of them shared."""

    def __init__(self, name: str, root: Path, shared: dict[str, str]) -> None:
        self.name, self.root = name, root / name
        self.folders = {
            "MEDIA_ROOT": self.root / "media",
            "ARTIFACT_ROOT": self.root / "artifacts",
            "PALATE_VAR_DIR": self.root / "var",
            "TRAINING_SCRATCH_DIR": self.root / "scratch",
        }
        for folder in self.folders.values():
            folder.mkdir(parents=True)
        self.environment = {**shared, **{key: str(value) for key, value in self.folders.items()}}
        self.process: subprocess.Popen | None = None

    def start(self, arguments: list[str]) -> Machine:
        self.process = subprocess.Popen(
            arguments, cwd=ROOT, env=self.environment, start_new_session=True, stdout=subprocess.DEVNULL
        )
        return self

    def worker(self) -> Machine:
        return self.start(
            [sys.executable, "-m", "celery", "-A", "palate", "worker", "-Q", "default,gpu", "--pool", "solo",
             "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "WARNING", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "--hostname", f"{self.name}@{self.name}"]
        )  # fmt: skip

    def stop(self, how: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, how)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def files(self, under: str = "") -> list[str]:
        """Every file left under this machine's folders (or one of them), relative to them."""
        return sorted(
            str(path.relative_to(self.root)) for path in (self.root / under).rglob("*") if path.is_file()
        )


def _upload() -> bytes:
    rows = marker_rows(ROWS, seed=7)
    lines = [
        json.dumps({**row, "id": f"q{index}", "metadata": {"padding": "x" * PADDING}})
        for index, row in enumerate(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _poll(session: requests.Session, url: str, *, seconds: float = 180) -> dict:
    """The job at ``url`` once it has ended."""

    def ended() -> dict | None:
        body = session.get(url).json()
        return body if body["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_for(ended, seconds=seconds, about=lambda: session.get(url).json())


def test_web_and_workers_that_share_no_disk_import_export_train_resume_and_score(object_store, tmp_path):
    started = time.monotonic()
    tiny_decoder = build_tiny_decoder(tmp_path / "tiny-decoder")  # the base model every worker has
    bucket = object_store.bucket("palate-scale-out")
    project = ProjectFactory()
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    from accounts.services import user_token_create

    _, token = user_token_create(user=lead)
    database = connection.settings_dict
    port = free_port()
    with redis_server() as broker:
        shared = {
            **os.environ,
            **CREDENTIALS,
            "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
            "CELERY_BROKER_URL": broker,
            "CACHE_URL": "",
            "STORAGE_S3_BUCKET": bucket,
            "STORAGE_S3_ENDPOINT_URL": object_store.endpoint_url,
            "STORAGE_S3_REGION": REGION,
            "STORAGE_S3_PREFIX": "palate",
            "TRAINING_BASE_MODELS": f"tiny-decoder={tiny_decoder}",
            "PALATE_DEVICE": "cpu",
            "IMPORT_ASYNC_THRESHOLD_BYTES": "65536",
            "JOB_HEARTBEAT_SECONDS": "1",
            "JOB_REAP_SECONDS": "2",
            # One thread each: the test's processes share the machine's cores.
            "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        machines = {name: Machine(name, tmp_path, shared) for name in ("web", "worker-1", "worker-2")}
        web = machines["web"].start(
            [sys.executable, "-m", "gunicorn", "palate.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--threads", "4", "--log-level", "warning"]
        )  # fmt: skip
        first = machines["worker-1"].worker()
        try:
            api = requests.Session()
            api.headers["Authorization"] = f"Token {token}"
            base = f"http://127.0.0.1:{port}/api"
            wait_for(lambda: _answers(api, f"{base}/projects/"), seconds=60)

            # Import: the web process streams the upload into the store, a worker reads it back.
            content = _upload()
            answer = api.post(
                f"{base}/projects/{project.pk}/imports/",
                files={"file": ("preferences.jsonl", io.BytesIO(content))},
                data={"label_as": "judgment"},
            )
            assert answer.status_code == 202, answer.text
            job = _poll(api, f"{base}/imports/{answer.json()['id']}/")
            assert job["status"] == "succeeded", job
            assert (
                job["counts"]["pairs_created"] == ROWS and object_store.keys(bucket, "palate/imports/") == []
            )

            # Export: written to the store by the worker; the download is a link to the store.
            answer = api.post(
                f"{base}/projects/{project.pk}/exports/",
                json={"policy": {"include_imported": True, "split": 0.9}, "formats": ["jsonl", "parquet"]},
            )
            assert answer.status_code == 202, answer.text
            export = _poll(api, f"{base}/exports/{answer.json()['id']}/")
            assert export["status"] == "succeeded", export
            link = api.get(
                f"{base}/exports/{export['id']}/download/?split=train&format=jsonl", allow_redirects=False
            )
            assert link.status_code == 302 and link.headers["Location"].startswith(object_store.endpoint_url)
            downloaded = requests.get(link.headers["Location"]).content
            assert hashlib.sha256(downloaded).hexdigest() == export["files"]["train.jsonl"]["sha256"]
            assert len(downloaded.splitlines()) == export["counts"]["rows"]["train"]

            # Training: the first worker dies in mid-training; the second, on an empty disk, resumes.
            hyperparameters = {"learning_rate": 0.003, "batch_size": 4, "num_epochs": 2, "max_length": 64,
                               "eval_steps": 0, "save_steps": 10, "warmup_ratio": 0.0}  # fmt: skip
            answer = api.post(
                f"{base}/projects/{project.pk}/training-runs/",
                json={"base_model": "tiny-decoder", "export": export["id"], "hyperparameters": hyperparameters,
                      "allow_below_target": True},
            )  # fmt: skip
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["id"]
            checkpoints = f"palate/runs/{run_id}/checkpoints/"
            wait_for(lambda: any(key.endswith("trainer_state.json") for key in object_store.keys(bucket, checkpoints)), seconds=180)  # fmt: skip
            first.stop(signal.SIGKILL)
            killed = TrainingRun.objects.get(pk=run_id)
            assert killed.status == TrainingRun.Status.RUNNING and killed.step < killed.total_steps
            second = machines["worker-2"].worker()
            run = _poll(api, f"{base}/training-runs/{run_id}/", seconds=300)
            assert run["status"] == "succeeded", run
            run = TrainingRun.objects.get(pk=run_id)
            assert run.attempts == 2 and "resuming from the checkpoint of step" in run.log
            model = RewardModel.objects.get(run=run)
            assert object_store.keys(bucket, f"palate/{model.path}/")  # the model is in the store

            # Scoring: the second worker fetches the model into its cache and scores.
            answer = api.post(
                f"{base}/reward-models/{model.pk}/score/",
                json={
                    "prompt": "Tell me about it ",
                    "responses": ["an excellent answer", "a terrible answer"],
                },
            )
            assert answer.status_code == 200, answer.text
            scores = [row["raw"] for row in answer.json()["scores"]]
            assert len(scores) == 2 and all(isinstance(score, float) for score in scores)

            # The killed worker's scratch folder goes when a worker starts again on its machine.
            second.stop()
            restarted = machines["worker-1"].worker()
            wait_for(lambda: not machines["worker-1"].files("scratch"), seconds=60)
            restarted.stop()
        finally:
            for machine in machines.values():
                machine.stop(signal.SIGKILL)
        web.stop()
    for name, machine in machines.items():
        left = [path for path in machine.files() if not path.startswith(("var/cache/", "var/model-cache/"))]
        assert left == [], (name, left)
    assert [path for path in machines["worker-2"].files() if path.startswith("var/model-cache/")], (
        "no model cached"
    )
    print(f"scale-out test: {time.monotonic() - started:.1f} s")


def _answers(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
