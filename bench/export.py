"""Export benchmark: judgments in PostgreSQL to a TRL preference dataset (JSONL and Parquet).

For each size, a project is loaded once with COPY (three responses per prompt, every pair of them, three or
four judgments per pair from 50 annotators), then exported in a fresh process by the export service and by a
naive baseline: an ORM loop that builds everything in memory (judgments with their pair, prompt and
responses, a majority vote per pair, a list of rows) and writes JSONL with ``json`` and Parquet with pandas.
Each prints pairs/s and the process's peak RSS, so 10,000 and 1,000,000 judgments show whether memory
stays flat. ``--store s3`` writes the service's files to an S3-compatible object store instead of a local
folder (a moto server on loopback, started here: the multipart uploads of ``palate/storage.py`` over HTTP),
``--store both`` runs the service on each and compares their rates; ``--s3rver`` serves the store with s3rver
(Node.js, objects in a temporary folder) instead of moto, whose own CPU on the same cores is a large share of
an object store run's time.

    .venv/bin/python bench/export.py                          # 10,000 and 1,000,000 judgments
    .venv/bin/python bench/export.py --sizes 10000 100000     # smaller
    .venv/bin/python bench/export.py --baseline-max 100000    # skip the baseline above this size
    .venv/bin/python bench/export.py --store both --baseline-max 0   # local folder against the object store
    .venv/bin/python bench/export.py --store both --baseline-max 0 --s3rver node_modules/.bin/s3rver

Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/palate_bench_export, created and migrated
when missing). Loaded projects are kept between runs (``--reload`` loads them again); files are written
to a temporary folder and deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import WORDS, delete_project, prepare_database  # noqa: E402 (after the path is set)

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_export"
ANNOTATORS = 50
LOAD_CHUNK_PROMPTS = 10_000


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    django.setup()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User and system time of this process, all threads (not PostgreSQL's)."""
    times = os.times()
    return times.user + times.system


def _process_cpu_seconds(pid: int) -> float:
    """User and system time of another process of this machine (the PostgreSQL backend, the store)."""
    from tests.object_store import process_cpu_seconds

    return process_cpu_seconds(pid)


def _backend_pid() -> int:
    """The PostgreSQL backend serving this process's connection (the export reads through it alone)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _slug(judgments: int) -> str:
    return f"bench-export-{judgments}"


# Loading ------------------------------------------------------------------------------------------------------


def load(judgments: int, seed: int = 0) -> dict:
    """Loads a project with about ``judgments`` judgments (pairs = judgments * 3 / 10) through COPY."""
    _setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from annotate.models import Judgment, Pair, Project, Prompt, Response
    from annotate.services.import_storage import bulk_insert

    existing = Project.objects.filter(slug=_slug(judgments)).first()
    if existing is not None:
        delete_project(existing.pk)
    project = Project.objects.create(
        name=f"Export benchmark {judgments:,}", slug=_slug(judgments), strength_scale=3
    )
    users = [
        get_user_model().objects.get_or_create(username=f"bench-annotator-{index}")[0].pk
        for index in range(ANNOTATORS)
    ]
    generator = np.random.default_rng(seed)
    words = np.array(WORDS)
    pool = [
        " ".join(words[generator.integers(0, len(words), generator.integers(40, 120))]) for _ in range(5_000)
    ]
    pair_count = judgments * 3 // 10
    prompt_count = pair_count // 3
    now = timezone.now()
    started = time.perf_counter()
    made = 0
    for first in range(0, prompt_count, LOAD_CHUNK_PROMPTS):
        count = min(LOAD_CHUNK_PROMPTS, prompt_count - first)
        with transaction.atomic():
            prompt_ids = bulk_insert(
                Prompt,
                ["project_id", "external_id", "content", "messages", "category", "metadata", "fingerprint", "created_at"],
                [
                    (project.pk, f"q{first + index}", f"Question {first + index}: {pool[(first + index) % len(pool)][:200]}", None,
                     ("coding", "writing", "math")[(first + index) % 3], {}, f"{first + index:040d}", now)
                    for index in range(count)
                ],
            )  # fmt: skip
            choices = generator.integers(0, len(pool), 3 * count)
            response_ids = bulk_insert(
                Response,
                ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
                [
                    (prompt_id, f"r{side}", f"system-{(index + side) % 8}", pool[choices[3 * index + side]], {}, f"{3 * (first + index) + side:040d}", now)
                    for index, prompt_id in enumerate(prompt_ids)
                    for side in range(3)
                ],
            )  # fmt: skip
            pair_rows = [
                (
                    project.pk,
                    prompt_id,
                    response_ids[3 * index + one],
                    response_ids[3 * index + two],
                    "",
                    False,
                    "",
                    now,
                )
                for index, prompt_id in enumerate(prompt_ids)
                for one, two in ((0, 1), (0, 2), (1, 2))
            ]
            pair_ids = bulk_insert(
                Pair,
                [
                    "project_id",
                    "prompt_id",
                    "response_a_id",
                    "response_b_id",
                    "external_id",
                    "is_gold",
                    "gold_choice",
                    "created_at",
                ],
                pair_rows,
            )
            votes = []
            leaning = generator.random(len(pair_ids))
            for position, pair_id in enumerate(pair_ids):
                number = made + position
                voters = generator.choice(ANNOTATORS, 4 if number % 3 == 0 else 3, replace=False)
                for annotator in voters:
                    draw = generator.random()
                    choice = (
                        "tie" if draw < 0.08 else ("a" if draw < 0.08 + 0.92 * leaning[position] else "b")
                    )
                    strength = None if choice == "tie" else int(generator.integers(1, 4))
                    votes.append(
                        (
                            pair_id,
                            users[annotator],
                            "human",
                            choice,
                            strength,
                            {},
                            "",
                            bool(draw > 0.5),
                            20_000,
                            now,
                            now,
                        )
                    )
            bulk_insert(
                Judgment,
                ["pair_id", "annotator_id", "origin", "choice", "strength", "criteria", "rationale", "shown_swapped", "duration_ms", "created_at", "updated_at"],
                votes,
            )  # fmt: skip
            made += len(pair_ids)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE annotate_judgment; ANALYZE annotate_pair; ANALYZE annotate_response; ANALYZE annotate_prompt"
        )
    return {
        "seconds": time.perf_counter() - started,
        "judgments": Judgment.objects.filter(pair__project=project).count(),
    }


# The two exports ---------------------------------------------------------------------------------------------


def export_service(judgments: int) -> dict:
    """The export service, JSONL and Parquet at once."""
    _setup()
    from annotate.models import Export, Project
    from annotate.services.exports import export_create, export_run

    project = Project.objects.get(slug=_slug(judgments))
    backend = _backend_pid()
    cpu, database_cpu = _cpu_seconds(), _process_cpu_seconds(backend)
    started = time.perf_counter()
    export = export_create(
        project=project, policy={"split": 0.9}, formats=["jsonl", "parquet"], created_by=None, enqueue=False
    )
    export = export_run(export_id=export.pk)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    database_cpu = _process_cpu_seconds(backend) - database_cpu
    if export.status != Export.Status.SUCCEEDED:
        raise SystemExit(export.error)
    return {
        "seconds": seconds,
        "cpu": cpu,
        "database_cpu": database_cpu,
        "pairs": export.counts["pairs_considered"],
        "rows": export.counts["pairs_exported"],
        "peak_rss_mb": _peak_rss_mb(),
        "mb": sum(record["bytes"] for record in export.files.values()) / 1e6,
    }


def export_naive(judgments: int) -> dict:
    """What a first version often looks like: every judgment with its pair, prompt and responses as model
    instances in one list, a Counter per pair, every row in a list, then json and pandas."""
    _setup()
    from collections import Counter, defaultdict

    import pandas as pd
    from django.conf import settings

    from annotate.models import Judgment, Project

    project = Project.objects.get(slug=_slug(judgments))
    folder = Path(settings.ARTIFACT_ROOT) / "naive"
    folder.mkdir(parents=True, exist_ok=True)
    cpu = _cpu_seconds()
    started = time.perf_counter()
    judgments_list = list(
        Judgment.objects.filter(pair__project=project, origin="human", pair__is_gold=False).select_related(
            "pair__prompt", "pair__response_a", "pair__response_b"
        )
    )
    votes: dict[int, Counter] = defaultdict(Counter)
    pairs = {}
    for judgment in judgments_list:
        votes[judgment.pair_id][judgment.choice] += 1
        pairs[judgment.pair_id] = judgment.pair
    rows = []
    for pair_id, counter in sorted(votes.items()):
        (winner, top), *rest = counter.most_common()
        if winner not in ("a", "b") or (rest and rest[0][1] == top):
            continue
        pair = pairs[pair_id]
        chosen, rejected = (
            (pair.response_a, pair.response_b) if winner == "a" else (pair.response_b, pair.response_a)
        )
        total = sum(counter.values())
        rows.append(
            {
                "prompt": pair.prompt.content,
                "chosen": chosen.content,
                "rejected": rejected.content,
                "vote_share": (counter[winner] + 0.5 * counter["tie"]) / total,
                "n_votes": total,
                "agreement": top / total,
                "system_chosen": chosen.system,
                "system_rejected": rejected.system,
                "prompt_id": pair.prompt.external_id,
                "pair_id": pair_id,
            }
        )
    with (folder / "train.jsonl").open("w") as stream:
        for row in rows:
            stream.write(json.dumps(row) + "\n")
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu_seconds() - cpu,
        "pairs": len(votes),
        "rows": len(rows),
        "peak_rss_mb": _peak_rss_mb(),
    }


# Orchestration ------------------------------------------------------------------------------------------------


def loaded(judgments: int) -> bool:
    _setup()
    from annotate.models import Judgment, Project

    project = Project.objects.filter(slug=_slug(judgments)).first()
    return project is not None and Judgment.objects.filter(pair__project=project).exists()


@contextmanager
def _object_store(env: dict, s3rver: str | None) -> Iterator[tuple[dict, object]]:
    """An S3-compatible server on loopback with a bucket (moto, or s3rver when its executable is given), and
    ``env`` pointing the stores at it."""
    from tests.object_store import REGION, moto_server, s3rver_server

    with ExitStack() as stack:
        if s3rver:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="palate-bench-s3rver-")))
            store = stack.enter_context(s3rver_server(s3rver, folder))
        else:
            store = stack.enter_context(moto_server())
        bucket = store.bucket("palate-bench-export")
        yield (
            {
                **env,
                **store.environment(),
                "STORAGE_S3_BUCKET": bucket,
                "STORAGE_S3_ENDPOINT_URL": store.endpoint_url,
                "STORAGE_S3_REGION": REGION,
            },
            store,
        )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _compare_stores(size: int, rows: list[tuple[str, dict]]) -> None:
    """Each round's object store rate over its local rate (the runs are taken in turn, so a round's two
    runs saw about the same load), the median rates, and the store server's share of the S3 runs' time."""
    local = [row for name, row in rows if name == "service (local)"]
    remote = [row for name, row in rows if name == "service (s3)"]
    ratios = [near["seconds"] / far["seconds"] for near, far in zip(local, remote, strict=True)]
    local_rate = _median([row["pairs"] / row["seconds"] for row in local])
    remote_rate = _median([row["pairs"] / row["seconds"] for row in remote])
    server_share = _median([row["store_cpu"] / row["seconds"] for row in remote])
    palate = [
        (near["cpu"] + near["database_cpu"]) / (far["cpu"] + far["database_cpu"])
        for near, far in zip(local, remote, strict=True)
    ]
    print(
        f"{size:,} judgments: object store / local rate per round {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median rates {remote_rate:,.0f} / {local_rate:,.0f} pairs/s = {remote_rate / local_rate:.2f}; peak RSS "
        f"{max(row['peak_rss_mb'] for row in remote):.0f} / {max(row['peak_rss_mb'] for row in local):.0f} MB; "
        f"the store server's CPU is {server_share:.0%} of an object store run's time; Palate's CPU (exporter "
        f"and its PostgreSQL backend) local / object store per round {', '.join(f'{r:.2f}' for r in palate)}"
    )


def _empty_bucket(server: Any, bucket: str) -> None:
    client = server.client()
    for key in server.keys(bucket):
        client.delete_object(Bucket=bucket, Key=key)


def child(mode: str, size: int, env: dict) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(size)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="judgments per project"
    )
    parser.add_argument(
        "--baseline-max", type=int, default=10_000_000, help="run the naive baseline up to this size"
    )
    parser.add_argument("--reload", action="store_true", help="load the projects again even when present")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of the service per size and store, alternating"
    )
    parser.add_argument(
        "--store",
        choices=["local", "s3", "both"],
        default="local",
        help="where the service writes: a local folder, an S3-compatible store (moto on loopback), or each",
    )
    parser.add_argument(
        "--s3rver",
        metavar="EXECUTABLE",
        help="run the object store with s3rver, a Node.js server (npm install s3rver@3; give the path of its "
        "executable, such as node_modules/.bin/s3rver) instead of moto, a Python one",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)

    if arguments.child:
        mode, size = arguments.child[0], int(arguments.child[1])
        result = {
            "load": load,
            "service": export_service,
            "naive": export_naive,
            "loaded": lambda n: {"loaded": loaded(n)},
        }[mode](size)
        print(json.dumps(result))
        return

    prepare_database()
    artifacts = Path(tempfile.mkdtemp(prefix="palate-bench-export-"))
    env = {**os.environ, "ARTIFACT_ROOT": str(artifacts), "PALATE_VAR_DIR": str(artifacts / "var")}
    stores = ["local", "s3"] if arguments.store == "both" else [arguments.store]
    results = []
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, artifacts, ignore_errors=True)
        s3_env, server = (
            cleanup.enter_context(_object_store(env, arguments.s3rver)) if "s3" in stores else (None, None)
        )
        for size in arguments.sizes:
            if arguments.reload or not child("loaded", size, env)["loaded"]:
                print(f"loading {size:,} judgments ...", flush=True)
                load_result = child("load", size, env)
                print(f"  loaded in {load_result['seconds']:.1f} s", flush=True)
            for _ in range(arguments.rounds):
                for store in stores:
                    store_cpu = server.cpu_seconds() if store == "s3" else 0.0
                    service = child("service", size, s3_env if store == "s3" else env)
                    service["store_cpu"] = server.cpu_seconds() - store_cpu if store == "s3" else 0.0
                    print(f"  service ({store}): {service['seconds']:.2f} s", flush=True)
                    shutil.rmtree(artifacts / "exports", ignore_errors=True)
                    if store == "s3":  # each round starts from an empty store, as each local one does
                        _empty_bucket(server, s3_env["STORAGE_S3_BUCKET"])
                    results.append((size, f"service ({store})" if len(stores) > 1 else "service", service))
            naive = child("naive", size, env) if size <= arguments.baseline_max else None
            if naive:
                print(f"  naive:   {naive['seconds']:.2f} s", flush=True)
                results.append((size, "naive", naive))
            shutil.rmtree(artifacts / "naive", ignore_errors=True)

    load_average = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"\nExport to JSONL + Parquet from PostgreSQL, one process each, {os.cpu_count()} cores, load average {load_average}"
    )
    header = (
        f"{'judgments':>10} {'pairs':>8} {'rows':>8} {'method':<16} {'seconds':>8} {'CPU s':>6} {'pairs/s':>9} "
        f"{'DB CPU s':>8} {'peak RSS MB':>12} {'MB written':>10} {'store CPU s':>11} {'vs first':>9}"
    )
    print(header)
    print("-" * len(header))
    for size in arguments.sizes:
        rows = [(name, row) for at, name, row in results if at == size]
        first = rows[0][1]
        for name, row in rows:
            rate = row["pairs"] / row["seconds"]
            ratio = f"{first['seconds'] / row['seconds']:.2f}x"
            print(
                f"{size:>10,} {row['pairs']:>8,} {row['rows']:>8,} {name:<16} {row['seconds']:>8.2f} {row['cpu']:>6.1f} "
                f"{rate:>9,.0f} {row.get('database_cpu', 0):>8.1f} {row['peak_rss_mb']:>12.0f} {row.get('mb', 0):>10.1f} {row.get('store_cpu', 0):>11.1f} "
                f"{ratio:>9}"
            )
    if len(stores) > 1:
        for size in arguments.sizes:
            _compare_stores(size, [(name, row) for at, name, row in results if at == size])
    print(
        "pairs/s counts the pairs read and labelled; CPU s is the exporting process's own (all its threads, not "
        "PostgreSQL's or the object store's); DB CPU s is its PostgreSQL backend's; store CPU s is the object "
        "store server's; vs first is the first row's time over this row's (the rate as a share of the first's)."
    )


if __name__ == "__main__":
    main()
