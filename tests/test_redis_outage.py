"""Redis is not needed to annotate: a web process (gunicorn) and a Celery worker on a Redis of the test's own,
which the test stops while annotators submit through the API. No error reaches them and no judgment is lost,
a lead's pages load, and an export requested during the outage waits as a queued row and runs on the worker
once Redis is back. Run with the cache in files (the default) and in that same Redis (``CACHE_URL``)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import user_token_create
from annotate.models import Export, Judgment, Membership, Project
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import items_import
from rewardtrain.models import RewardModel, TrainingRun
from tests.factories import MembershipFactory, UserFactory
from tests.waiting import wait_for
from tests.workers import celery_worker, worker_environment

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
ANNOTATORS = 3
PAIRS = 400
PAUSE_SECONDS = 0.05  # between an annotator's judgments, so that the pairs last the whole test


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class OwnRedis:
    """A Redis server of this test's own on a free port, keeping nothing on disk: a stop loses its data."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def url(self, database: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _answers(self.port), seconds=10, every=0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Web:
    url: str

    def call(self, method: str, path: str, *, token: str = "", body: dict | None = None, cookie: str = ""):
        """(status, parsed JSON or text); a connection that fails is status 0."""
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Token {token}")
        if cookie:
            request.add_header("Cookie", cookie)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except OSError as error:
            return 0, str(error)
        text = raw.decode(errors="replace")
        return status, json.loads(text) if text and text[0] in "{[" else text


@contextmanager
def web_process(environment: dict[str, str]) -> Iterator[Web]:
    """gunicorn serving palate.wsgi with ``environment``, as deployed (one process, four threads)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "palate.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=environment, start_new_session=True,
    )  # fmt: skip
    web = Web(url=f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: process.poll() is not None or web.call("GET", "/login/")[0] == 200, seconds=30)
        if process.poll() is not None:
            raise RuntimeError("the web process did not start")
        yield web
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Annotator:
    token: str
    submitted: list[float] = field(default_factory=list)  # when each accepted submit came back
    errors: list[str] = field(default_factory=list)

    def work(self, web: Web, project_id: int, stop: threading.Event) -> None:
        while not stop.wait(PAUSE_SECONDS):
            status, body = web.call("GET", f"/api/projects/{project_id}/next/", token=self.token)
            if status == 204:
                self.errors.append("ran out of pairs")
                return
            if status != 200:
                self.errors.append(f"next: {status} {body}")
                continue
            status, body = web.call(
                "POST",
                "/api/judgments/",
                token=self.token,
                body={"assignment": body["assignment"], "choice": "left"},
            )
            if status == 201:
                self.submitted.append(time.monotonic())
            else:
                self.errors.append(f"submit: {status} {body}")

    def between(self, start: float, end: float) -> int:
        return sum(start <= moment <= end for moment in self.submitted)


def _project(pairs: int = PAIRS) -> Project:
    project = Project.objects.create(name="Outage", slug="outage", overlap=1, criteria=[], strength_scale=0)
    rows = "".join(
        json.dumps(
            {"prompt": f"Question {index}?", "response_a": f"yes {index}", "response_b": f"no {index}"}
        )
        + "\n"
        for index in range(pairs)
    )
    items_import(
        project=project, stream=io.BytesIO(rows.encode()), filename="pairs.jsonl", options=ImportOptions()
    )
    return project


def test_getting_and_submitting_a_pair_read_no_cache_and_send_no_task(
    settings, django_capture_on_commit_callbacks
):
    """The annotators' two calls with a cache that fails every call (Django's own Redis backend, which ignores
    no error, on a port where nothing listens): neither touches it, nor queues a task."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_free_port()}/0",
        }
    }
    project = _project(pairs=2)
    annotator = UserFactory()
    MembershipFactory(user=annotator, project=project, role=Membership.Role.ANNOTATOR)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user_token_create(user=annotator)[1]}")

    with django_capture_on_commit_callbacks() as callbacks:
        shown = client.get(f"/api/projects/{project.pk}/next/")
        submitted = client.post(
            "/api/judgments/", {"assignment": shown.json()["assignment"], "choice": "left"}, format="json"
        )

    assert (shown.status_code, submitted.status_code) == (200, 201), submitted.content
    assert callbacks == []


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cache", ["files", "redis"])
def test_annotating_goes_on_while_redis_is_down_and_jobs_wait_for_it(cache, settings, tmp_path):
    redis = OwnRedis()
    redis.start()
    project = _project()
    lead = UserFactory(username="lead")
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    annotators = []
    for index in range(ANNOTATORS):
        user = UserFactory(username=f"annotator{index}")
        MembershipFactory(user=user, project=project, role=Membership.Role.ANNOTATOR)
        annotators.append(Annotator(token=user_token_create(user=user)[1]))
    lead_token = user_token_create(user=lead)[1]
    run = TrainingRun.objects.create(
        project=project, base_model="minilm", status=TrainingRun.Status.SUCCEEDED
    )
    model = RewardModel.objects.create(run=run, project=project, version=1, path=f"runs/{run.pk}/model")
    browser = Client()
    browser.force_login(lead)
    lead_cookie = f"sessionid={browser.cookies['sessionid'].value}"

    environment = {
        **worker_environment(
            media_root=settings.MEDIA_ROOT,
            artifact_root=settings.ARTIFACT_ROOT,
            base_models=settings.TRAINING_BASE_MODELS,
        ),
        "CELERY_BROKER_URL": redis.url(0),
        "CACHE_URL": redis.url(1) if cache == "redis" else "",
        "JOB_REAP_SECONDS": "1",
    }
    stop = threading.Event()
    threads = []
    try:
        with (
            celery_worker({**environment, "PALATE_VAR_DIR": str(tmp_path / "worker")}),
            web_process({**environment, "PALATE_VAR_DIR": str(tmp_path / "web")}) as web,
        ):
            threads = [
                threading.Thread(target=annotator.work, args=(web, project.pk, stop), daemon=True)
                for annotator in annotators
            ]
            for thread in threads:
                thread.start()
            wait_for(lambda: all(len(annotator.submitted) >= 3 for annotator in annotators), seconds=20)

            redis.stop()
            stopped_at = time.monotonic()
            asked, judged_before_export = time.monotonic(), sum(len(a.submitted) for a in annotators)
            status, export = web.call(
                "POST", f"/api/projects/{project.pk}/exports/", token=lead_token, body={"formats": ["jsonl"]}
            )
            assert status == 202, export
            assert time.monotonic() - asked < 5  # answered at once, not after the broker's retries
            row = Export.objects.get(pk=export["id"])
            assert row.status == Export.Status.QUEUED and row.enqueued_at is None  # waiting as a row
            for page in ("quality", "leaderboard", "exports"):
                page = f"/projects/{project.slug}/{page}/"
                status, body = web.call("GET", page, cookie=lead_cookie)
                assert status == 200, f"{page}: {status} {str(body)[:2000]}"
            # Scoring needs a worker's answer through Redis: refused at once, not after SCORING_TIMEOUT_SECONDS.
            asked = time.monotonic()
            status, body = web.call(
                "POST",
                f"/api/reward-models/{model.pk}/score/",
                token=lead_token,
                body={"prompt": "?", "responses": ["a"]},
            )
            assert (status, body["error"]["code"]) == (503, "scoring_unavailable"), body
            assert time.monotonic() - asked < 5
            before = [len(annotator.submitted) for annotator in annotators]
            wait_for(
                lambda: all(len(a.submitted) >= n + 5 for a, n in zip(annotators, before, strict=True)),
                seconds=20,
                about=lambda: [annotator.errors[-3:] for annotator in annotators],
            )
            assert Export.objects.get(pk=export["id"]).status == Export.Status.QUEUED

            redis.start()
            restarted_at = time.monotonic()
            before = [len(annotator.submitted) for annotator in annotators]
            wait_for(lambda: all(len(a.submitted) >= n + 3 for a, n in zip(annotators, before, strict=True)))
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

            def export_done():
                status, body = web.call("GET", f"/api/exports/{export['id']}/", token=lead_token)
                return body if status == 200 and body["status"] in {"succeeded", "failed"} else None

            done = wait_for(export_done, seconds=40)
            assert done["status"] == "succeeded", done
    finally:
        stop.set()
        redis.stop()

    assert [annotator.errors for annotator in annotators] == [[]] * ANNOTATORS
    assert all(annotator.between(stopped_at, restarted_at) >= 5 for annotator in annotators)
    submitted = sum(len(annotator.submitted) for annotator in annotators)
    assert Judgment.objects.filter(pair__project=project).count() == submitted
    assert done["counts"]["judgments_counted"] >= judged_before_export
