"""Import benchmark: ready pairs (shape 2, JSONL) into PostgreSQL through the import service.

Prints pairs/s, CPU time (Python's and the PostgreSQL backend's) and peak memory for several sizes
(each in a fresh process, so peak RSS is the import's own), side by side with Label Studio's figure
measured on this machine: 100,000 comparison tasks in 27-33 s, about 3,000-3,750 per second.

    .venv/bin/python bench/import.py                 # 10,000 and 100,000 pairs, three imports of each
    .venv/bin/python bench/import.py --sizes 1000 --repeats 1    # a quick look

After each import the run times ``search_documents_fill`` on its rows (a task does it in production).

Each size is imported ``--repeats`` times (3), each in a fresh process: the table shows the median run and
the range of pairs/s, since this machine's speed drifts by a quarter from minute to minute.

Uses the database in DATABASE_URL (default postgres://postgres@127.0.0.1:5432/palate_bench, created and
migrated when missing); each run imports into a new project and deletes it afterwards, then compacts the
tables (``bench.common.delete_projects``), so that every run writes into the same compact tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import WORDS, delete_projects, prepare_database  # noqa: E402 (after the path is set)

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench"
LABEL_STUDIO_PAIRS_PER_SECOND = (3_000, 3_750)


def _text(generator: random.Random, words: int) -> str:
    return " ".join(generator.choice(WORDS) for _ in range(words))


def write_file(path: Path, pairs: int, seed: int = 0) -> None:
    """``pairs`` rows over pairs/2 prompts (each prompt in two pairs), responses of 60-200 words."""
    generator = random.Random(seed)
    systems = [f"system-{index}" for index in range(8)]
    with path.open("w", encoding="utf-8") as stream:
        for index in range(pairs):
            prompt_number = index // 2
            prompt_generator = random.Random(prompt_number)
            row = {
                "id": f"pair-{index}",
                "prompt": f"Question {prompt_number}: " + _text(prompt_generator, 30),
                "response_a": _text(generator, generator.randint(60, 200)),
                "response_b": _text(generator, generator.randint(60, 200)),
                "system_a": generator.choice(systems),
                "system_b": generator.choice(systems),
            }
            stream.write(json.dumps(row) + "\n")


def run_one(path: Path) -> dict:
    """Runs in a child process: imports the file into a fresh project and reports time and peak RSS."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    django.setup()
    from annotate.models import Project
    from annotate.services.import_rows import ImportOptions
    from annotate.services.imports import items_import
    from annotate.services.search_documents import search_documents_fill

    delete_projects("bench-")  # an earlier run's, left by a crash: every run starts from compact tables
    project = Project.objects.create(
        name=f"bench {time.time()}", slug=f"bench-{os.getpid()}-{int(time.time())}"
    )
    backend_cpu = _backend_cpu_reader()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        backend_before, python_before = backend_cpu(), time.process_time()
        started = time.perf_counter()
        with path.open("rb") as stream:
            result = items_import(project=project, stream=stream, filename=path.name, options=ImportOptions())
        seconds = time.perf_counter() - started
        python_cpu, backend_after = time.process_time() - python_before, backend_cpu()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # The search documents, built after the import by a task (here in this process, for its figures).
        fill_backend_before, fill_started = backend_cpu(), time.perf_counter()
        documents = search_documents_fill(project_id=project.pk)
        fill_seconds, fill_backend_after = time.perf_counter() - fill_started, backend_cpu()
    finally:
        delete_projects("bench-")
    return {
        "pairs": result.pairs_created,
        "prompts": result.prompts_created,
        "responses": result.responses_created,
        "foreign_keys": result.foreign_keys_checked_by,
        "seconds": seconds,
        "python_cpu": python_cpu,
        "postgres_cpu": None if backend_before is None else backend_after - backend_before,
        "peak_rss_mb": rss_after / 1024,
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "documents": documents,
        "fill_seconds": fill_seconds,
        "fill_postgres_cpu": None
        if fill_backend_before is None
        else fill_backend_after - fill_backend_before,
    }


def _backend_cpu_reader():
    """A function that returns the CPU seconds this connection's PostgreSQL backend has used, or None
    when the server runs elsewhere (its /proc is not ours to read)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float | None:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    return read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="imports per size, each in a fresh process; the table shows the median run and the range",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)

    if arguments.child:
        print(json.dumps(run_one(Path(arguments.child))))
        return

    prepare_database()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in arguments.sizes:
            path = Path(folder) / f"pairs-{size}.jsonl"
            write_file(path, size)
            runs = []
            for _ in range(max(1, arguments.repeats)):
                output = subprocess.run(
                    [sys.executable, __file__, "--child", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                ).stdout
                runs.append(json.loads(output.strip().splitlines()[-1]))
            # This machine's speed drifts by a quarter from minute to minute: one run says little.
            runs.sort(key=lambda run: run["seconds"])
            result = runs[len(runs) // 2]
            result["rates"] = [run["pairs"] / run["seconds"] for run in runs]
            result["file_mb"] = path.stat().st_size / 1e6
            rows.append(result)

    low, high = LABEL_STUDIO_PAIRS_PER_SECOND
    print(f"\nImport of ready pairs (JSONL) into PostgreSQL, one process, {os.cpu_count()} cores")
    header = (
        f"{'pairs':>9} {'file MB':>8} {'prompts':>8} {'responses':>9} {'seconds':>8} {'pairs/s':>9} "
        f"{'range pairs/s':>15} {'Python CPU s':>12} {'PG CPU s':>9} {'peak RSS MB':>12} {'vs Label Studio':>16}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        rate = row["pairs"] / row["seconds"]
        postgres_cpu = "-" if row["postgres_cpu"] is None else f"{row['postgres_cpu']:.2f}"
        print(
            f"{row['pairs']:>9,} {row['file_mb']:>8.1f} {row['prompts']:>8,} {row['responses']:>9,} {row['seconds']:>8.2f} "
            f"{rate:>9,.0f} {min(row['rates']):>7,.0f}-{max(row['rates']):<7,.0f} {row['python_cpu']:>12.2f} {postgres_cpu:>9} {row['peak_rss_mb']:>12.0f} "
            f"{rate / high:>7.1f}-{rate / low:.1f}x"
        )
    repeats = max(1, arguments.repeats)
    print(
        f"Each size imported {repeats} times, each in a fresh process: the row is the median run, the range all runs."
    )
    print("CPU s: the importing process's, and its PostgreSQL backend's when the server runs on this machine")
    print(f"Label Studio (measured on this machine): 100,000 tasks in 27-33 s = {low:,}-{high:,} pairs/s")
    for row in rows:
        fill_cpu = "-" if row["fill_postgres_cpu"] is None else f"{row['fill_postgres_cpu']:.2f}"
        print(
            f"Search documents of the {row['pairs']:,}-pair import (after it, a task): {row['documents']:,} "
            f"built in {row['fill_seconds']:.2f} s, PostgreSQL CPU {fill_cpu} s"
        )
    checked_by = ", ".join(sorted({row["foreign_keys"] for row in rows}))
    print(f"Foreign keys checked by: {checked_by} (see docs/importing.md)")


if __name__ == "__main__":
    main()
