"""Claim cost as one annotator's own work grows, against the single scan that claims made before.

An annotator working alone in a depth-first project leaves every pair they judge open (it waits for the
other judgments of its overlap), and those pairs head the fill order. A claim that scans the open pairs in
that order steps over each of them; Palate's claim looks at a window of the order, then at the pairs nobody
started, then at the rest (``palate_pair_claim`` in ``annotate/sql/workspace_v3.sql``).

The annotator judges pairs through the services (next → submit, as the API calls them). Every 250
judgments the tables are analysed, as autovacuum would. At each step the table gives the median of:
"next" (the whole call), Palate's search (``palate_pair_claim``, whose row lock is released at once), and
the scan over every open pair in the fill order (the claim before), as a plain SELECT.

    .venv/bin/python bench/claim_growth.py                          # 6,000 judgments, 20,000 pairs
    .venv/bin/python bench/claim_growth.py --judgments 20000 --pairs 50000 --order breadth_first

Uses the database of bench/annotate_load.py (its own, created and migrated when missing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.annotate_load import BENCH_SECRET, DEFAULT_DATABASE, _setup_django, make_project  # noqa: E402
from bench.common import delete_projects, prepare_database  # noqa: E402

# The claim before the reaches: one scan over every open pair in the fill order.
SCANS = {
    "depth_first": """
        SELECT p.id FROM annotate_pair p
        WHERE p.project_id = %(project)s AND NOT p.is_gold AND p.slots_taken < 3
          AND palate_pair_open_to(p.id, %(user)s, %(project)s)
        ORDER BY p.slots_taken DESC, p.id LIMIT 1
    """,
    "breadth_first": """
        SELECT p.id FROM annotate_pair p
        WHERE p.project_id = %(project)s AND NOT p.is_gold AND p.slots_taken < 3
          AND palate_pair_open_to(p.id, %(user)s, %(project)s)
        ORDER BY p.slots_taken, p.id LIMIT 1
    """,
}
SEARCH = "SELECT palate_pair_claim(%(order)s, %(project)s, %(user)s, false, 3)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--judgments", type=int, default=6_000)
    parser.add_argument("--step", type=int, default=1_000, help="judgments per line of the table")
    parser.add_argument("--order", choices=sorted(SCANS), default="depth_first")
    arguments = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE)
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET)
    prepare_database()
    _setup_django()
    delete_projects("load-")

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotate.models import Project
    from annotate.services.assignment import pair_next_shown
    from annotate.services.judgments import JudgmentInput, judgment_submit

    project_id, _ = make_project(arguments.pairs, 3, 1)
    Project.objects.filter(pk=project_id).update(assignment_order=arguments.order)
    annotator = get_user_model().objects.get(username="load-annotator-0")
    parameters = {"order": arguments.order, "project": project_id, "user": annotator.pk}

    def timed_search(statement: str) -> float:
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            cursor.fetchone()
        return time.perf_counter() - started

    print(
        f"one annotator alone, {arguments.order}, overlap 3, {arguments.pairs:,} pairs; medians over each "
        f"{arguments.step:,} judgments"
    )
    header = f"{'judged':>8} {'next':>9} {'search (Palate)':>16} {'scan (before)':>14} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    nexts: list[float] = []
    searches: list[float] = []
    scans: list[float] = []
    for judged in range(1, arguments.judgments + 1):
        searches.append(timed_search(SEARCH))
        scans.append(timed_search(SCANS[arguments.order]))
        started = time.perf_counter()
        shown = pair_next_shown(project_id=project_id, annotator=annotator)
        nexts.append(time.perf_counter() - started)
        judgment_submit(
            assignment_id=shown.assignment.pk,
            annotator=annotator,
            data=JudgmentInput(choice="left"),
            idempotency_key=f"claim-growth-{judged}",
        )
        if judged % 250 == 0:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE annotate_judgment, annotate_assignment, annotate_pair")
        if judged % arguments.step == 0:
            search, scan = statistics.median(searches), statistics.median(scans)
            print(
                f"{judged:>8,} {statistics.median(nexts) * 1000:>7.2f}ms {search * 1000:>14.2f}ms "
                f"{scan * 1000:>12.2f}ms {scan / search:>6.1f}×",
                flush=True,
            )
            nexts, searches, scans = [], [], []
    delete_projects("load-")


if __name__ == "__main__":
    main()
