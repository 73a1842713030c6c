"""``make run`` from scratch, as a newcomer runs it: its own data directory, a free port, and no PostgreSQL or
Redis to lean on. The site must serve the demo, take an annotator's judgment, and train a reward model on
the CPU through its own worker; a SIGTERM must stop web, worker, beat and the embedded PostgreSQL within 10 s.

The run happens in a network namespace of its own (``unshare --net``, as root, with only ``lo`` up), where
the machine's PostgreSQL and Redis cannot be reached over TCP; the test's HTTP calls enter that namespace
from a thread of their own. Where no namespace can be made (not root, or no ``unshare``/``ip``), the run
falls back to the machine's network with DATABASE_URL, CELERY_BROKER_URL and CACHE_URL unset, which
still keeps it off any server: with them unset nothing in Palate names one.

The subprocess must not install anything: ``scripts/venv.sh`` accepts the stamp that ``make test`` leaves.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from palate.embedded_db import cluster_directory, embedded_db_stop
from tests.rewardtrain.conftest import build_tiny_decoder
from tests.rewardtrain.runs_data import FAST

ROOT = Path(__file__).resolve().parent.parent
CLONE_NEWNET = 0x40000000
DEMO_PASSWORD = "palate-demo"


def _namespace_available() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _enter_network_namespace(pid: int) -> None:
    """setns(2) for the calling thread only: the sockets it opens afterwards live in ``pid``'s namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/proc/{pid}/ns/net") as namespace:
        if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into the network namespace of {pid}: {os.strerror(error)}")


class Site:
    """HTTP calls to the running site, made from one thread (inside the run's namespace when it has one)."""

    def __init__(self, base: str, namespace_pid: int | None):
        self.base = base
        initializer = (lambda: _enter_network_namespace(namespace_pid)) if namespace_pid else None
        self.thread = ThreadPoolExecutor(max_workers=1, initializer=initializer)
        self.browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def _call(self, method: str, path: str, body: dict | bytes | None, headers: dict) -> tuple[int, bytes]:
        if isinstance(body, dict):
            body, headers = json.dumps(body).encode(), {**headers, "Content-Type": "application/json"}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with self.browser.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except urllib.error.URLError as error:  # not listening (yet)
            return 0, str(error).encode()

    def call(
        self, method: str, path: str, body=None, token: str | None = None, **headers
    ) -> tuple[int, bytes]:
        if token:
            headers["Authorization"] = f"Token {token}"
        return self.thread.submit(self._call, method, path, body, headers).result()

    def json(self, method: str, path: str, body=None, *, token: str, expect: int = 200):
        status, content = self.call(method, path, body, token=token)
        assert status == expect, (method, path, status, content[:2000])
        return json.loads(content) if content else None

    def token(self, username: str) -> str:
        return self.json(
            "POST", "/api/auth/token/", {"username": username, "password": DEMO_PASSWORD}, token=""
        )["token"]

    def reaches(self, port: int) -> bool:
        try:
            self.thread.submit(socket.create_connection, ("127.0.0.1", port), 2).result().close()
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.thread.shutdown(wait=False)


def _job_finished(site: Site, path: str, *, token: str, seconds: float) -> dict:
    """Polls a job (an export, a training run) until it is neither queued nor running."""
    deadline = time.monotonic() + seconds
    while (job := site.json("GET", path, token=token))["status"] in {"queued", "running"}:
        assert time.monotonic() < deadline, f"{path} still {job['status']} after {seconds:.0f} s"
        time.sleep(0.5)
    return job


def _postmaster_pid(var_dir: Path) -> int | None:
    pid_file = cluster_directory(var_dir) / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.celery_worker
def test_make_run_serves_the_demo_takes_judgments_trains_on_the_cpu_and_stops_everything_on_sigterm(
    tmp_path,
):
    isolated = _namespace_available()
    # A short folder: the server's Unix socket lives under it, and socket paths are limited to ~100 bytes.
    work = Path(tempfile.mkdtemp(prefix="palate-run-"))
    var_dir = work / "var"
    port = _free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "CELERY_RESULT_BACKEND", "MEDIA_ROOT",
                "ARTIFACT_ROOT", "STATIC_ROOT"}
    }  # fmt: skip
    # The operator installs a base model: a two-layer decoder built below, while make run starts (so training
    # needs no download), listed by name for web and worker.
    tiny_decoder = work / "tiny-decoder"
    environment.update(
        PALATE_VAR_DIR=str(var_dir), HOST="127.0.0.1", PORT=str(port), PALATE_DEVICE="cpu",
        HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRAINING_BASE_MODELS=f"tiny-decoder={tiny_decoder}",
    )  # fmt: skip
    command = ["make", "run"]
    if isolated:
        command = ["unshare", "--net", "sh", "-c", "ip link set lo up && exec make run"]
    log_path = tmp_path / "make-run.log"
    site = None
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    output = lambda: log_path.read_text(errors="replace")  # noqa: E731
    try:
        build_tiny_decoder(tiny_decoder)

        site = Site(f"http://127.0.0.1:{port}", process.pid if isolated else None)
        deadline = time.monotonic() + 150
        while "Palate is running" not in output() or (login := site.call("GET", "/login/"))[0] != 200:
            assert process.poll() is None, f"make run exited with {process.returncode}:\n{output()}"
            assert time.monotonic() < deadline, f"make run is not serving after 150 s:\n{output()}"
            time.sleep(0.5)
        assert "==> installing" not in output(), (
            "make run installed packages: the venv stamp was not accepted"
        )

        if isolated:  # the machine's PostgreSQL and Redis are out of reach in here
            assert not site.reaches(5432) and not site.reaches(6379)

        # The demo, in the browser's terms: the login page, then the lead's view of the demo project.
        csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', login[1]).group(1).decode()
        form = f"csrfmiddlewaretoken={csrf}&username=lead&password={DEMO_PASSWORD}".encode()
        status, page = site.call("POST", "/login/", form, Referer=f"{site.base}/login/",
                                 **{"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert status == 200 and b"Assistant answers (demo)" in page, page[:2000]
        status, page = site.call("GET", "/projects/demo/")
        assert status == 200 and b"Assistant answers (demo)" in page

        # Annotating: alice takes the next pair and judges it.
        alice = site.token("alice")
        projects = site.json("GET", "/api/projects/", token=alice)
        projects = projects["results"] if isinstance(projects, dict) else projects
        project_id = next(project["id"] for project in projects if project["slug"] == "demo")
        shown = site.json("GET", f"/api/projects/{project_id}/next/", token=alice)
        judgment = site.json(
            "POST",
            "/api/judgments/",
            {"assignment": shown["assignment"], "choice": "left", "strength": 2,
             "criteria": {"helpfulness": "left", "safety": "tie"}},
            token=alice,
            expect=201,
        )  # fmt: skip
        assert judgment["pair"] == shown["pair"] and judgment["choice"] == "left"

        # Training on the CPU: the engineer exports the demo's judgments and trains the tiny decoder on them.
        engineer = site.token("engineer")
        export = site.json(
            "POST", f"/api/projects/{project_id}/exports/", {"formats": ["jsonl"]}, token=engineer, expect=202
        )
        export = _job_finished(site, f"/api/exports/{export['id']}/", token=engineer, seconds=60)
        assert export["status"] == "succeeded", export
        run = site.json(
            "POST",
            f"/api/projects/{project_id}/training-runs/",
            {"base_model": "tiny-decoder", "export": export["id"], "hyperparameters": FAST, "allow_below_target": True},
            token=engineer,
            expect=202,
        )  # fmt: skip
        run = _job_finished(site, f"/api/training-runs/{run['id']}/", token=engineer, seconds=120)
        assert run["status"] == "succeeded", run["error"] + run["traceback"]
        assert run["step"] == run["total_steps"] > 0
        # A long run is under way when the SIGTERM comes: a warm shutdown alone would wait for it to end.
        long_run = site.json(
            "POST",
            f"/api/projects/{project_id}/training-runs/",
            {"base_model": "tiny-decoder", "export": export["id"], "allow_below_target": True,
             "hyperparameters": {**FAST, "num_epochs": 100}},
            token=engineer,
            expect=202,
        )  # fmt: skip
        long_run_path = f"/api/training-runs/{long_run['id']}/"
        deadline = time.monotonic() + 60
        while (state := site.json("GET", long_run_path, token=engineer))["step"] < 1:
            assert state["status"] in {"queued", "running"} and time.monotonic() < deadline, state
            time.sleep(0.2)

        # SIGTERM to make alone, as a service manager or `docker stop` sends it, stops all of it within 10 s,
        # the database server included, training run or not. Ctrl-C's SIGINT to the whole process group goes
        # through the same trap in run.sh.
        postmaster = _postmaster_pid(var_dir)
        assert postmaster is not None and _alive(postmaster)
        deadline = time.monotonic() + 10
        process.send_signal(signal.SIGTERM)
        # make forwards the signal to run.sh, waits for it (which exits 0), then dies of the signal itself.
        assert process.wait(timeout=30) in {0, -signal.SIGTERM}, output()
        assert time.monotonic() < deadline, f"make run took over 10 s to stop:\n{output()}"
        assert "==> stopping PostgreSQL" in output() and "==> stopped" in output()
        assert _postmaster_pid(var_dir) is None
        # pg_ctl returns once the pid file is gone, a moment before the process ends.
        while _alive(postmaster):
            assert time.monotonic() < deadline, "the database server still runs 10 s after the SIGTERM"
            time.sleep(0.1)
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)
    finally:
        if site is not None:
            site.close()
        with contextlib.suppress(ProcessLookupError):  # whatever of make run's process group is left
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        embedded_db_stop(var_dir=var_dir)  # the server runs in a session of its own
        shutil.rmtree(work, ignore_errors=True)
