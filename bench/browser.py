"""Data browser benchmark: filtered and searched pages of pairs in a 1,000,000-pair project.

Loads the project once with COPY (``bulk_insert``, as bench/export.py does): 333,334 prompts in four
categories, three responses each from eight systems, every couple of them a pair (1,000,000 pairs), 1% of
them gold, and three or four judgments by 50 annotators on the first 100,000 pairs (as a depth-first
project a tenth of the way through). The texts mix the benchmarks' common words (in nearly every
document) with made-up words of three syllables (each in about one document in a thousand) and four
syllables (one in ten thousand), so that searches of every selectivity are measured. Then it asks the
pairs page (Django's test client, in this process, logged in as the lead) for each combination of filters
and search below, several times, and prints p50 and p95 per combination.

    .venv/bin/python bench/browser.py                   # loads once (about 4 minutes), then measures
    .venv/bin/python bench/browser.py --repeats 40      # more requests per combination
    .venv/bin/python bench/browser.py --reload          # loads the project again

Uses its own database (default postgres://postgres@127.0.0.1:5432/palate_bench_browser, created and
migrated when missing); the project is kept between runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import WORDS, delete_project, prepare_database  # noqa: E402 (after the path is set)

DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_browser"
SLUG = "bench-browser"
PAIRS = 1_000_000
JUDGED_PAIRS = 100_000
ANNOTATORS = 50
CHUNK_PROMPTS = 10_000
CATEGORIES = ("coding", "writing", "math", "chat")
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu")
TARGET_P95_MS = 100
BENCH_SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _setup() -> None:
    import django

    # As in production: DEBUG off (no query log kept, no debug pages).
    os.environ.update(DEBUG="False", SECRET_KEY=BENCH_SECRET, ALLOWED_HOSTS="testserver")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    django.setup()


def made_up_word(number: int, syllables: int) -> str:
    """The ``number``-th word of ``syllables`` syllables: 10**syllables of them, each a distinct lexeme."""
    return "".join(SYLLABLES[(number // 10**place) % 10] for place in range(syllables))


def load(seed: int = 0) -> dict:
    """Loads the project (deleting an earlier one), returns how long it took."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from annotate.models import Judgment, Membership, Pair, Project, Prompt, Response
    from annotate.services.import_storage import bulk_insert
    from annotate.services.search_documents import search_documents_fill

    existing = Project.objects.filter(slug=SLUG).first()
    if existing is not None:
        delete_project(existing.pk)
    project = Project.objects.create(name="Data browser benchmark", slug=SLUG, overlap=3, strength_scale=3)
    User = get_user_model()
    lead, _ = User.objects.get_or_create(username="bench-browser-lead")
    Membership.objects.create(user=lead, project=project, role=Membership.Role.LEAD)
    users = []
    for index in range(ANNOTATORS):
        user, _ = User.objects.get_or_create(username=f"bench-annotator-{index}")
        Membership.objects.create(user=user, project=project, role=Membership.Role.ANNOTATOR)
        users.append(user.pk)
    generator = np.random.default_rng(seed)
    words = np.array(WORDS)
    pool = [
        " ".join(words[generator.integers(0, len(words), generator.integers(40, 120))]) for _ in range(5_000)
    ]
    prompt_count = -(-PAIRS // 3)
    now = timezone.now()
    started = time.perf_counter()
    made = 0
    for first in range(0, prompt_count, CHUNK_PROMPTS):
        count = min(CHUNK_PROMPTS, prompt_count - first)
        rare = generator.integers(0, 10_000, 4 * count)
        medium = generator.integers(0, 1_000, 4 * count)
        texts = generator.integers(0, len(pool), 4 * count)
        with transaction.atomic():
            prompt_ids = bulk_insert(
                Prompt,
                ["project_id", "external_id", "content", "messages", "category", "metadata", "fingerprint", "created_at"],
                [
                    (project.pk, f"q{first + index}",
                     f"Question {first + index}: {pool[texts[4 * index]][:200]} {made_up_word(int(medium[4 * index]), 3)} {made_up_word(int(rare[4 * index]), 4)}",
                     None, CATEGORIES[(first + index) % len(CATEGORIES)], {}, f"{first + index:040d}", now)
                    for index in range(count)
                ],
            )  # fmt: skip
            response_ids = bulk_insert(
                Response,
                ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
                [
                    (prompt_id, f"r{side}", f"system-{(index + side) % 8}",
                     f"{pool[texts[4 * index + side + 1]]} {made_up_word(int(medium[4 * index + side + 1]), 3)} {made_up_word(int(rare[4 * index + side + 1]), 4)}",
                     {}, f"{3 * (first + index) + side:040d}", now)
                    for index, prompt_id in enumerate(prompt_ids)
                    for side in range(3)
                ],
            )  # fmt: skip
            couples = [
                (prompt_id, response_ids[3 * index + one], response_ids[3 * index + two])
                for index, prompt_id in enumerate(prompt_ids)
                for one, two in ((0, 1), (0, 2), (1, 2))
            ][: PAIRS - made]
            voters = [
                generator.choice(ANNOTATORS, 4 if (made + position) % 3 == 0 else 3, replace=False)
                if made + position < JUDGED_PAIRS
                else ()
                for position in range(len(couples))
            ]
            gold = [(made + position) % 100 == 50 for position in range(len(couples))]
            pair_ids = bulk_insert(
                Pair,
                ["project_id", "prompt_id", "response_a_id", "response_b_id", "external_id", "is_gold",
                 "gold_choice", "judgment_count", "slots_taken", "priority", "created_at"],
                [
                    (project.pk, prompt_id, a, b, f"pair-{made + position}", gold[position],
                     "a" if gold[position] else "", len(voters[position]), len(voters[position]), 0.0, now)
                    for position, (prompt_id, a, b) in enumerate(couples)
                ],
            )  # fmt: skip
            votes = []
            leaning = generator.random(len(pair_ids))
            for position, pair_id in enumerate(pair_ids):
                for annotator in voters[position]:
                    draw = generator.random()
                    choice = (
                        "tie" if draw < 0.08 else ("a" if draw < 0.08 + 0.92 * leaning[position] else "b")
                    )
                    strength = None if choice == "tie" else int(generator.integers(1, 4))
                    votes.append(
                        (pair_id, users[annotator], "human", choice, strength, {}, "", bool(draw > 0.5), 20_000, now, now)
                    )  # fmt: skip
            bulk_insert(
                Judgment,
                ["pair_id", "annotator_id", "origin", "choice", "strength", "criteria", "rationale", "shown_swapped", "duration_ms", "created_at", "updated_at"],
                votes,
            )  # fmt: skip
            made += len(pair_ids)
        print(f"  {made:,} pairs", file=sys.stderr, flush=True)
    # As after an import: the search documents are built once the rows are in.
    filled = time.perf_counter()
    search_documents_fill(project_id=project.pk)
    print(f"  search documents built in {time.perf_counter() - filled:.0f} s", file=sys.stderr, flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE annotate_judgment; ANALYZE annotate_pair; ANALYZE annotate_response; ANALYZE annotate_prompt"
        )
    return {"seconds": time.perf_counter() - started, "pairs": made}


def combinations() -> list[tuple[str, dict]]:
    """What a lead asks the page for: (label, query string)."""
    return [
        ("first page, no filter", {}),
        ("deep page (after pair 900,000)", {"after": "__deep__"}),
        ("status=complete", {"status": "complete"}),
        ("status=unjudged", {"status": "unjudged"}),
        ("gold=yes", {"gold": "yes"}),
        ("category=math + system=system-3", {"category": "math", "system": "system-3"}),
        ("contested=yes", {"contested": "yes"}),
        ("agreement=split", {"agreement": "split"}),
        ("agreement=unanimous + category=coding", {"agreement": "unanimous", "category": "coding"}),
        ("annotator=bench-annotator-7", {"annotator": "bench-annotator-7"}),
        ("q=common word (reward)", {"q": "reward"}),
        ("q=word in 1 of 1,000 texts", {"q": made_up_word(123, 3)}),
        ("q=word in 1 of 10,000 texts", {"q": made_up_word(4321, 4)}),
        ("q=missing word", {"q": "zzyzx"}),
        ("q=websearch phrase + exclusion", {"q": '"human preferences" -safety'}),
        ("q=rare word OR rare word", {"q": f"{made_up_word(11, 4)} or {made_up_word(22, 4)}"}),
        ("q=common + contested=yes", {"q": "reward", "contested": "yes"}),
        ("q=1/1,000 word + system=system-5", {"q": made_up_word(321, 3), "system": "system-5"}),
        ("q=1/1,000 word + status=complete", {"q": made_up_word(456, 3), "status": "complete"}),
    ]


def measure(repeats: int) -> list[dict]:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from annotate.models import Pair, Project

    project = Project.objects.get(slug=SLUG)
    client = Client()
    client.force_login(project.memberships.get(role="lead").user)
    url = reverse("project-pairs", args=[project.slug])
    deep = Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True)[900_000]
    rows = []
    cache.delete_many([f"palate:pair-filter-options:{project.pk}:{project.created_at.timestamp()}"])
    started = time.perf_counter()
    client.get(url)
    cold = (time.perf_counter() - started) * 1000
    for label, query in combinations():
        query = {key: (str(deep) if value == "__deep__" else value) for key, value in query.items()}
        address = f"{url}?{urlencode(query)}" if query else url
        times, cpu = [], []
        client.get(address)  # the first request plans the statements and reads the pages into memory
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as queries:
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(address)
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - cpu_started) * 1000)
            assert response.status_code == 200, (label, response.status_code)
        shown = response.content.decode().count('class="cell-title pair-name"')
        rows.append(
            {
                "label": label,
                "p50": statistics.median(times),
                "p95": statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0],
                "cpu": statistics.median(cpu),
                "sql": sum(float(statement["time"]) for statement in queries.captured_queries) * 1000,
                "rows": shown,
                "queries": len(queries),
            }
        )
        print(f"  {label}: p95 {rows[-1]['p95']:.0f} ms", file=sys.stderr, flush=True)
    return rows, cold


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per combination")
    parser.add_argument("--reload", action="store_true", help="load the project again")
    parser.add_argument("--load-only", action="store_true", help="load (when needed) and measure nothing")
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    prepare_database()
    _setup()
    from annotate.models import Pair, Project

    project = Project.objects.filter(slug=SLUG).first()
    if arguments.reload or project is None or Pair.objects.filter(project=project).count() != PAIRS:
        print("loading the project…", file=sys.stderr, flush=True)
        loaded = load()
        print(f"loaded {loaded['pairs']:,} pairs with COPY in {loaded['seconds']:.0f} s", file=sys.stderr)
    if arguments.load_only:
        return
    load_before = os.getloadavg()[0]
    rows, cold = measure(arguments.repeats)
    print(
        f"\nData browser, {PAIRS:,} pairs ({JUDGED_PAIRS:,} judged), {arguments.repeats} requests each, "
        f"{os.cpu_count()} cores, load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after"
    )
    header = f"{'filters and search':<40} {'p50 ms':>7} {'p95 ms':>7} {'CPU ms':>7} {'SQL ms':>7} {'rows':>5} {'queries':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['label']:<40} {row['p50']:>7.1f} {row['p95']:>7.1f} {row['cpu']:>7.1f} {row['sql']:>7.1f} "
            f"{row['rows']:>5} {row['queries']:>8}"
        )
    worst = max(row["p95"] for row in rows)
    print(f"Worst p95 {worst:.0f} ms (target under {TARGET_P95_MS} ms)")
    print("CPU ms: this process's per request (Django, the page, the test client; median)")
    print("SQL ms: the last request's queries, as this process waited for them")
    print(
        f"First request with the filter suggestions not cached: {cold:.0f} ms (then cached for ten minutes)"
    )


if __name__ == "__main__":
    main()
