"""Annotation load benchmark: simulated annotators looping next → submit over HTTP against gunicorn and
PostgreSQL, on a 100,000-pair and a 1,000-pair project, to show that cost does not grow with size.

Reference (Label Studio 1.23.2, measured on this machine with PostgreSQL and the same loop): 1,000 tasks ×
10 annotators gives 9-10 judgments/s with next-task p95 of 0.6-0.7 s; 100,000 tasks × 10 annotators gives
1.3-4.5 judgments/s with next-task p50 of 1.3-6.8 s.

    .venv/bin/python bench/annotate_load.py                      # 50 annotators, 20 s per project
    .venv/bin/python bench/annotate_load.py --annotators 10 --seconds 10 --sizes 1000
    .venv/bin/python bench/annotate_load.py --pace 4 --history 30000   # as late in a large project

Uses its own database (default postgres://postgres@127.0.0.1:5432/palate_bench_load, created and
migrated when missing) and starts gunicorn itself on a free port. After each run it checks the invariants:
no pair above its overlap, no (pair, annotator) twice, every accepted submit stored and counted once on
its annotator's progress line; then it deletes the project and compacts the tables, so that each run
starts from the same empty tables. Before each run the same loop warms the server up for 3 s against a
separate project (see WARM_UP_SECONDS).

BENCH_GUNICORN_EXTRA adds gunicorn options, e.g. server-side request times:
    BENCH_GUNICORN_EXTRA='--access-logfile /tmp/access.log --access-logformat %(U)s|%(s)s|%(D)s'
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import delete_projects, prepare_database  # noqa: E402 (after the path is set)

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_load"
# Freshly started gunicorn workers run slow for their first seconds (bench/README.md); a server runs for
# days, so the same loop first runs for a few seconds against a project of its own, and the clock starts after.
WARM_UP_PAIRS = 2_000
WARM_UP_SECONDS = 3.0
BENCH_SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _setup_django() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    django.setup()


def make_project(size: int, overlap: int, annotators: int, history: int = 0) -> tuple[int, list[str]]:
    """A project of ``size`` ready pairs (imported through the import service) and annotators with tokens,
    each with ``history`` leases they submitted two days ago (see ``add_history``)."""
    from django.contrib.auth import get_user_model

    from accounts.services import user_token_create
    from annotate.models import Membership, Project
    from annotate.services.import_rows import ImportOptions
    from annotate.services.imports import items_import

    slug = f"load-{size}-{uuid.uuid4().hex[:6]}"
    project = Project.objects.create(
        name=slug, slug=slug, overlap=overlap, criteria=[], strength_scale=0, rationale="optional"
    )
    generator = random.Random(size)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as stream:
        for index in range(size):
            stream.write(
                json.dumps(
                    {
                        "id": f"p{index}",
                        "prompt": f"Prompt {index // 2}: which answer is better?",
                        "response_a": f"Answer A to {index}: " + "lorem ipsum " * generator.randint(20, 80),
                        "response_b": f"Answer B to {index}: "
                        + "dolor sit amet " * generator.randint(20, 80),
                        "system_a": f"system-{generator.randint(0, 7)}",
                        "system_b": f"system-{generator.randint(0, 7)}",
                    }
                )
                + "\n"
            )
    with open(stream.name, "rb") as source:
        items_import(project=project, stream=source, filename="load.jsonl", options=ImportOptions())
    os.unlink(stream.name)
    tokens = []
    User = get_user_model()
    for index in range(annotators):
        user, _ = User.objects.get_or_create(username=f"load-annotator-{index}")
        Membership.objects.get_or_create(
            user=user, project=project, defaults={"role": Membership.Role.ANNOTATOR}
        )
        tokens.append(user_token_create(user=user)[1])
    if history:
        add_history(project.pk, history)
    return project.pk, tokens


def add_history(project_id: int, history: int) -> None:
    """Gives each annotator of the project ``history`` leases submitted two days ago, as late in a large
    project (100,000 pairs × overlap 3 over ten annotators is 30,000 judgments each). Only the leases are
    written, on the project's pairs in turn, without judgments: the pairs stay open to claims, and what
    grows is what an annotator's requests read about their own past (their progress line)."""
    from django.conf import settings
    from django.db import connection

    from annotate.models import Pair

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH numbered AS (
                SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM annotate_pair
                WHERE project_id = %(project)s)
            INSERT INTO annotate_assignment
                (project_id, pair_id, annotator_id, shown_swapped, status, skip_reason, created_at, expires_at,
                 closed_at)
            SELECT %(project)s, numbered.id, m.user_id, false, 'submitted', '', %(then)s, %(then)s,
                   %(then)s + g.n * interval '1 second'
            FROM annotate_membership m
            CROSS JOIN generate_series(0, %(history)s - 1) AS g(n)
            JOIN numbered ON numbered.n = g.n %% %(pairs)s
            WHERE m.project_id = %(project)s
            """,
            {
                "project": project_id,
                "history": history,
                "pairs": Pair.objects.filter(project_id=project_id).count(),
                "then": datetime.now(UTC) - timedelta(days=2),
            },
        )
        # The progress line's days, as the submits of those leases would have recomputed them.
        cursor.execute(
            """
            INSERT INTO annotate_progressday (project_id, annotator_id, day, submitted)
            SELECT project_id, annotator_id, (closed_at AT TIME ZONE %s)::date, count(*)
            FROM annotate_assignment WHERE project_id = %s AND status = 'submitted'
            GROUP BY 1, 2, 3
            """,
            [settings.TIME_ZONE, project_id],
        )
        cursor.execute("ANALYZE annotate_assignment")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(port: int, workers: int, threads: int) -> subprocess.Popen:
    environment = {**os.environ, "DEBUG": "False", "SECRET_KEY": BENCH_SECRET, "ALLOWED_HOSTS": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "palate.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--worker-class", "gthread", "--threads", str(threads), "--preload", "--log-level", "warning", *os.environ.get("BENCH_GUNICORN_EXTRA", "").split()],
        cwd=ROOT, env=environment, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            # Warm every worker (and its first connection to PostgreSQL) before the clock starts.
            for _ in range(workers * threads):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", "/api/schema/")
                connection.getresponse().read()
                connection.close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


class KeepAliveClient:
    """HTTP/1.1 over one keep-alive connection, doing as little as a client can: the load generator runs on
    the same 2 cores as the server it measures, and with http.client it took 0.8-1.1 ms of CPU per judgment
    (0.4 ms with this). Answers must carry a Content-Length (Django's CommonMiddleware sets it); a
    connection the server closed between requests is opened again and the request sent once more (both
    requests are safe to repeat: "next" returns the live lease, "submit" carries an idempotency key)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _connect(self) -> socket.socket:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        return self.sock

    def request(self, method: str, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
        message = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n".encode()
            + headers
            + b"\r\n"
            + body
        )
        for attempt in (1, 2):
            sock = self.sock or self._connect()
            try:
                sock.sendall(message)
                return self._response(sock)
            except (ConnectionError, EOFError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            received = sock.recv(65536)
            if not received:
                raise EOFError("the server closed the connection")
            self.buffer += received
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = None
        closing = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                closing = value.strip().lower() == b"close"
        status = int(head[9:12])
        if length is None:
            if status not in (204, 304):
                raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
            length = 0
        while len(rest) < length:
            received = sock.recv(65536)
            if not received:
                raise EOFError("the server closed the connection mid-answer")
            rest += received
        self.buffer = rest[length:]
        if closing:  # the server closes after this answer (gunicorn's sync workers do): so do we
            self.close()
        return status, rest[:length]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""


class Annotator(threading.Thread):
    """One simulated annotator: next → submit in a loop over a keep-alive connection."""

    def __init__(
        self,
        port: int,
        project_id: int,
        token: str,
        stop_at: float,
        ran_out: threading.Event,
        pace: float = 0.0,
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.project_id, self.token, self.stop_at = port, project_id, token, stop_at
        # Set by the first annotator told that nothing is left: the others stop too, so that the figures
        # cover only the time when the project still had work for everyone.
        self.ran_out = ran_out
        self.pace = pace  # judgments per second this annotator aims at (0: as fast as the server answers)
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.accepted: list[int] = []
        self.errors: list[str] = []
        self.finished_early = False

    def _request(
        self, client: KeepAliveClient, method: str, path: str, body: dict | None = None, key: str = ""
    ):
        headers = self.headers + (f"Idempotency-Key: {key}\r\n".encode() if key else b"")
        return client.request(method, path, headers, json.dumps(body).encode() if body is not None else b"")

    def run(self) -> None:
        connection = KeepAliveClient(self.port)
        self.headers = f"Authorization: Token {self.token}\r\nContent-Type: application/json\r\n".encode()
        generator = random.Random(self.token)
        # A paced annotator starts a cycle every 1/pace s (from a random phase, so that annotators do not
        # arrive together) and reads in between; when the server is slower than the pace it just goes on.
        cycle_start = time.perf_counter() + (generator.random() / self.pace if self.pace else 0.0)
        while time.perf_counter() < self.stop_at and not self.ran_out.is_set():
            if self.pace:
                time.sleep(max(0.0, cycle_start - time.perf_counter()))
                cycle_start = max(time.perf_counter(), cycle_start + 1 / self.pace)
            started = time.perf_counter()
            status, body = self._request(connection, "GET", f"/api/projects/{self.project_id}/next/")
            self.next_ms.append((time.perf_counter() - started) * 1000)
            if status == 204:
                self.finished_early = True
                self.ran_out.set()
                return
            if status != 200:
                self.errors.append(f"next {status}: {body[:200]!r}")
                continue
            assignment = json.loads(body)["assignment"]
            started = time.perf_counter()
            status, body = self._request(
                connection,
                "POST",
                "/api/judgments/",
                {
                    "assignment": assignment,
                    "choice": generator.choice(["left", "right", "tie"]),
                    "duration_ms": 1000,
                },
                key=uuid.uuid4().hex,
            )
            self.submit_ms.append((time.perf_counter() - started) * 1000)
            if status == 201:
                self.accepted.append(json.loads(body)["id"])
            else:
                self.errors.append(f"submit {status}: {body[:200]!r}")
        connection.close()


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def check_invariants(project_id: int, accepted: list[int], overlap: int, history: int = 0) -> list[str]:
    from django.db.models import Count, Sum

    from annotate.models import Judgment, Membership, ProgressDay

    problems = []
    judgments = Judgment.objects.filter(pair__project_id=project_id)
    over = judgments.values("pair_id").annotate(n=Count("id")).filter(n__gt=overlap).count()
    if over:
        problems.append(f"{over} pairs above overlap {overlap}")
    duplicated = judgments.values("pair_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1).count()
    if duplicated:
        problems.append(f"{duplicated} (pair, annotator) duplicates")
    stored = set(judgments.values_list("id", flat=True))
    missing = [judgment_id for judgment_id in accepted if judgment_id not in stored]
    if missing or len(accepted) != len(set(accepted)):
        problems.append(f"{len(missing)} accepted submits missing")
    if judgments.count() != len(accepted):
        problems.append(f"{judgments.count()} judgments stored for {len(accepted)} accepted submits")
    members = Membership.objects.filter(project_id=project_id).count()
    days = ProgressDay.objects.filter(project_id=project_id)
    counted = (days.aggregate(total=Sum("submitted"))["total"] or 0) - history * members
    if counted != len(accepted):
        problems.append(f"the progress lines count {counted} judgments for {len(accepted)} accepted submits")
    return problems


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU of each of these processes (all their threads) so far, from /proc."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since it was listed
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent in between, counting processes that started in between (database connections do)."""
    return sum(spent - before.get(pid, 0.0) for pid, spent in after.items())


def _server_pids(server_pid: int) -> tuple[list[int], list[int]]:
    """gunicorn's processes, and the PostgreSQL backends connected to the benchmark's database."""
    from django.db import connection

    web = [server_pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server_pid:
                web.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        database = [row[0] for row in cursor.fetchall()]
    return web, database


def run_load(
    port: int, project_id: int, tokens: list[str], seconds: float, server_pid: int, pace: float = 0.0
) -> dict:
    stop_at = time.perf_counter() + seconds
    ran_out = threading.Event()
    threads = [Annotator(port, project_id, token, stop_at, ran_out, pace) for token in tokens]
    cpu_before = [_cpu_seconds(pids) for pids in _server_pids(server_pid)]
    client_before = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = [_cpu_seconds(pids) for pids in _server_pids(server_pid)]
    cpu_spent = [_cpu_spent(before, after) for before, after in zip(cpu_before, cpu_after, strict=True)]
    cpu_spent.append(time.process_time() - client_before)
    next_ms = [value for thread in threads for value in thread.next_ms]
    submit_ms = [value for thread in threads for value in thread.submit_ms]
    accepted = [value for thread in threads for value in thread.accepted]
    errors = [value for thread in threads for value in thread.errors]
    return {
        "elapsed": elapsed,
        "judgments": len(accepted),
        "rate": len(accepted) / elapsed,
        "next": [_percentile(next_ms, share) for share in (0.5, 0.95, 0.99)],
        "submit": [_percentile(submit_ms, share) for share in (0.5, 0.95, 0.99)],
        "accepted": accepted,
        "errors": errors,
        "exhausted": sum(thread.finished_early for thread in threads),
        # CPU per accepted judgment (ms): gunicorn, PostgreSQL, this load generator.
        "cpu_ms": [spent * 1000 / max(1, len(accepted)) for spent in cpu_spent],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="leases each annotator submitted earlier in the project (e.g. 30000, as late in a large project)",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="judgments per second each annotator aims at, reading in between (default 0: no pause at all)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per gunicorn worker (2 × 4 as in docker-compose.yml)"
    )
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    os.environ["DEBUG"] = "False"
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET)
    prepare_database()
    _setup_django()
    delete_projects("load-")  # an earlier run's, left by a crash: every run starts from compact tables

    results = []
    for size in arguments.sizes:
        started = time.perf_counter()
        project_id, tokens = make_project(size, arguments.overlap, arguments.annotators, arguments.history)
        history = (
            f", each annotator with {arguments.history:,} earlier judgments" if arguments.history else ""
        )
        print(
            f"project of {size:,} pairs{history} ready in {time.perf_counter() - started:.1f} s", flush=True
        )
        warm_up_project, _ = make_project(WARM_UP_PAIRS, arguments.overlap, arguments.annotators)
        port = _free_port()
        server = start_gunicorn(port, arguments.workers, arguments.threads)
        try:
            warm_up = run_load(port, warm_up_project, tokens, WARM_UP_SECONDS, server.pid, arguments.pace)
            print(
                f"warm-up: {warm_up['judgments']:,} judgments in {WARM_UP_SECONDS:g} s on a project of its own",
                flush=True,
            )
            result = run_load(port, project_id, tokens, arguments.seconds, server.pid, arguments.pace)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        result["size"] = size
        result["problems"] = check_invariants(
            project_id, result["accepted"], arguments.overlap, arguments.history
        )
        delete_projects("load-")
        results.append(result)

    pace = f", each at most {arguments.pace:g} judgments/s" if arguments.pace else ", no pause between items"
    print(
        f"\n{arguments.annotators} annotators{pace}, looping next → submit over HTTP, gunicorn ({arguments.workers} workers × {arguments.threads} threads) "
        f"+ PostgreSQL, {os.cpu_count()} cores, {arguments.seconds:.0f} s per project after a {WARM_UP_SECONDS:g} s warm-up"
    )
    header = (
        f"{'pairs':>8} {'judgments':>9} {'judg/s':>7} {'next p50':>9} {'p95':>7} {'p99':>7} "
        f"{'submit p50':>10} {'p95':>7} {'p99':>7} {'errors':>6} {'CPU/judgment web+db+client':>27}  invariants"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        next_p, submit_p = result["next"], result["submit"]
        verdict = "ok" if not result["problems"] else "; ".join(result["problems"])
        print(
            f"{result['size']:>8,} {result['judgments']:>9,} {result['rate']:>7.0f} {next_p[0]:>7.1f}ms {next_p[1]:>5.1f}ms "
            f"{next_p[2]:>5.1f}ms {submit_p[0]:>8.1f}ms {submit_p[1]:>5.1f}ms {submit_p[2]:>5.1f}ms {len(result['errors']):>6} "
            f"{'{:.1f} + {:.1f} + {:.1f} ms'.format(*result['cpu_ms']):>27}  {verdict}"
        )
        if result["exhausted"]:
            print(f"    the project ran out of pairs after {result['elapsed']:.1f} s: the run stopped there")
        for error in result["errors"][:3]:
            print(f"    e.g. {error}")
    print(
        "Label Studio 1.23.2, same machine, 10 annotators: 1,000 tasks 9-10 judgments/s (next p95 0.6-0.7 s);"
    )
    print("  100,000 tasks 1.3-4.5 judgments/s (next p50 1.3-6.8 s)")
    if any(result["problems"] for result in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
