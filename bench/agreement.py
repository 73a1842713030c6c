"""Benchmark annotate.stats.agreement against the `krippendorff` package on a million judgments.

Run from the repository root: ``.venv/bin/python bench/agreement.py``. It builds 100,000 pairs judged by 8 to
12 annotators each (about 1,000,000 judgments) drawn from a pool of 200, so the coders x units reliability
matrix is about 95% missing; a nominal variant with 4 categories and an interval variant on -3..+3. Both
libraries get the same data, ours in long form and `krippendorff` as the reliability matrix it needs (building
that matrix is not timed). Values must agree to 1e-9; times are the best of a few repeats.

``--snapshot`` runs the second part instead: the whole quality-dashboard snapshot
(``agreement_snapshot_compute``) end to end from PostgreSQL, on a project of 100,000 pairs with the same ~1M
judgments (strength 1..3, two criteria, 2% gold pairs, four locales, 60 days). The project is loaded once
through COPY into its own database (``DATABASE_URL``, default
postgres://postgres@127.0.0.1:5432/palate_bench_q, created and migrated when missing) and reused by later
runs; ``--reload`` loads it again. Goal: the whole snapshot under 10 s.

    .venv/bin/python bench/agreement.py                # alpha, bootstrap and kappa vs krippendorff
    .venv/bin/python bench/agreement.py --snapshot     # the whole snapshot from PostgreSQL
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import krippendorff
from sklearn.metrics import cohen_kappa_score

from annotate.stats import agreement
from bench.common import prepare_database

ROOT = Path(__file__).resolve().parent.parent
PAIRS = 100_000
ANNOTATOR_POOL = 200
FEWEST_PER_PAIR = 8
MOST_PER_PAIR = 12
NOMINAL_CATEGORIES = 4
INTERVAL_LOW, INTERVAL_HIGH = -3, 3
BOOTSTRAP_ROUNDS = 1000
REPEATS = 3
SEED = 20240611
SNAPSHOT_DATABASE = "postgres://postgres@127.0.0.1:5432/palate_bench_q"
SNAPSHOT_SLUG = "bench-agreement-snapshot"
SNAPSHOT_REPEATS = 3


def best_time(call: Callable[[], object], repeats: int = REPEATS) -> tuple[float, object]:
    """Fastest wall time over ``repeats`` calls, and the last result."""
    fastest = float("inf")
    result: object = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


def simulated_judgments(
    generator: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Units and coders for ~1M judgments, plus nominal and interval values with imperfect agreement."""
    per_pair = generator.integers(FEWEST_PER_PAIR, MOST_PER_PAIR + 1, size=PAIRS)
    # Each pair gets distinct annotators: the first per_pair columns of a random ranking of the pool.
    ranking = np.argsort(generator.random((PAIRS, ANNOTATOR_POOL)), axis=1)[:, :MOST_PER_PAIR]
    chosen = np.arange(MOST_PER_PAIR)[None, :] < per_pair[:, None]
    units = np.broadcast_to(np.arange(PAIRS)[:, None], chosen.shape)[chosen].astype(np.int64)
    coders = ranking[chosen].astype(np.int64)
    shuffle = generator.permutation(units.size)
    units, coders = units[shuffle], coders[shuffle]

    # Nominal: the pair's "true" label, kept by an annotator with a skill-dependent probability.
    truth = generator.integers(0, NOMINAL_CATEGORIES, size=PAIRS)
    skill = generator.uniform(0.5, 0.9, size=ANNOTATOR_POOL)
    keeps_truth = generator.random(units.size) < skill[coders]
    nominal = np.where(keeps_truth, truth[units], generator.integers(0, NOMINAL_CATEGORIES, size=units.size))

    # Interval: a latent preference strength plus annotator bias and noise, rounded onto -3..+3.
    strength = generator.normal(0.0, 1.5, size=PAIRS)
    bias = generator.normal(0.0, 0.3, size=ANNOTATOR_POOL)
    noisy = strength[units] + bias[coders] + generator.normal(0.0, 1.0, size=units.size)
    interval = np.clip(np.rint(noisy), INTERVAL_LOW, INTERVAL_HIGH)
    return units, coders, nominal.astype(np.float64), interval


def reliability_matrix(units: np.ndarray, coders: np.ndarray, values: np.ndarray) -> np.ndarray:
    matrix = np.full((ANNOTATOR_POOL, PAIRS), np.nan)
    matrix[coders, units] = values
    return matrix


def main() -> None:
    generator = np.random.default_rng(SEED)
    units, coders, nominal, interval = simulated_judgments(generator)
    print(
        f"{units.size:,} judgments on {PAIRS:,} pairs by a pool of {ANNOTATOR_POOL} annotators "
        f"({FEWEST_PER_PAIR}-{MOST_PER_PAIR} per pair); numpy {np.__version__}, krippendorff "
        f"{version('krippendorff')}\n"
    )
    rows: list[tuple[str, float, float | None, str]] = []

    for label, values, level in (
        ("alpha nominal", nominal, "nominal"),
        ("alpha ordinal", interval, "ordinal"),
        ("alpha interval", interval, "interval"),
    ):
        ours_seconds, ours = best_time(
            lambda values=values, level=level: agreement.krippendorff_alpha(
                units=units, coders=coders, values=values, level=level
            )
        )
        matrix = reliability_matrix(units, coders, values)
        theirs_seconds, theirs = best_time(
            lambda matrix=matrix, level=level: krippendorff.alpha(
                reliability_data=matrix, level_of_measurement=level
            )
        )
        assert abs(ours - float(theirs)) < 1e-9, (label, ours, theirs)
        rows.append((label, ours_seconds, theirs_seconds, f"{ours:.9f} / {float(theirs):.9f}"))

    for label, values, level in (
        ("bootstrap CI nominal", nominal, "nominal"),
        ("bootstrap CI interval", interval, "interval"),
    ):
        bootstrap_seconds, bootstrap = best_time(
            lambda values=values, level=level: agreement.krippendorff_alpha_bootstrap(
                units=units, coders=coders, values=values, level=level, rounds=BOOTSTRAP_ROUNDS, seed=SEED
            ),
            repeats=1,
        )
        assert bootstrap.low <= bootstrap.estimate <= bootstrap.high
        rows.append(
            (
                f"{label} ({BOOTSTRAP_ROUNDS} rounds)",
                bootstrap_seconds,
                None,
                f"{bootstrap.estimate:.4f} [{bootstrap.low:.4f}, {bootstrap.high:.4f}]",
            )
        )

    kappa_seconds, pairwise = best_time(
        lambda: agreement.cohen_kappa_matrix(units=units, coders=coders, values=nominal, min_shared=10)
    )
    kappa = pairwise.kappa
    # Spot-check a few coder pairs against scikit-learn on their shared units.
    order = np.lexsort((units, coders))
    for first, second in ((0, 1), (17, 42), (198, 199)):
        first_rows = order[coders[order] == first]
        second_rows = order[coders[order] == second]
        shared, first_at, second_at = np.intersect1d(
            units[first_rows], units[second_rows], return_indices=True
        )
        expected = cohen_kappa_score(nominal[first_rows][first_at], nominal[second_rows][second_at])
        assert abs(kappa[first, second] - expected) < 1e-9, (first, second, kappa[first, second], expected)
        assert pairwise.shared_units[first, second] == shared.size
    defined = np.isfinite(kappa)
    rows.append(
        (
            f"Cohen kappa matrix ({ANNOTATOR_POOL}x{ANNOTATOR_POOL})",
            kappa_seconds,
            None,
            f"{defined.sum() // 2:,} pairs, median {np.median(kappa[defined]):.4f}",
        )
    )

    header = ("metric", "palate s", "krippendorff s", "ratio", "values (palate / krippendorff)")
    table = [
        (
            label,
            f"{ours_seconds:.3f}",
            "-" if theirs_seconds is None else f"{theirs_seconds:.3f}",
            "-" if theirs_seconds is None else f"{theirs_seconds / ours_seconds:.1f}x",
            values,
        )
        for label, ours_seconds, theirs_seconds, values in rows
    ]
    print_table(header, table)
    print("\nratio = krippendorff seconds / palate seconds (higher means palate is faster)")


def print_table(header: tuple[str, ...], table: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in [header, *table]) for column in range(len(header))]
    for row in [header, tuple("-" * width for width in widths), *table]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


# The whole snapshot from PostgreSQL ------------------------------------------------------------------------


def load_snapshot_project():
    """A 100,000-pair project with ~1M judgments by 200 annotators, written with COPY (``bulk_insert``)."""
    from datetime import UTC, datetime, timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotate.models import Judgment, Membership, Pair, Project, Prompt, Response
    from annotate.services.import_storage import bulk_insert

    generator = np.random.default_rng(SEED)
    units, coders, _, interval = simulated_judgments(generator)
    with transaction.atomic():
        old = Project.objects.filter(slug=SNAPSHOT_SLUG).values_list("pk", flat=True).first()
        if old is not None:
            with connection.cursor() as cursor:
                pairs = "SELECT id FROM annotate_pair WHERE project_id = %s"
                prompts = "SELECT id FROM annotate_prompt WHERE project_id = %s"
                cursor.execute(f"DELETE FROM annotate_judgment WHERE pair_id IN ({pairs})", [old])
                cursor.execute("DELETE FROM annotate_agreementsnapshot WHERE project_id = %s", [old])
                cursor.execute("DELETE FROM annotate_pair WHERE project_id = %s", [old])
                cursor.execute(f"DELETE FROM annotate_response WHERE prompt_id IN ({prompts})", [old])
                cursor.execute("DELETE FROM annotate_prompt WHERE project_id = %s", [old])
                cursor.execute("DELETE FROM annotate_membership WHERE project_id = %s", [old])
                cursor.execute("DELETE FROM annotate_project WHERE id = %s", [old])
        project = Project.objects.create(
            name="Agreement benchmark",
            slug=SNAPSHOT_SLUG,
            criteria=["helpfulness", "safety"],
            strength_scale=3,
            overlap=10,
        )
        users = [
            get_user_model().objects.get_or_create(username=f"bench-annotator-{index:03d}")[0]
            for index in range(ANNOTATOR_POOL)
        ]
        locales = ("en-GB", "en-US", "fr-FR", "de-DE")
        Membership.objects.bulk_create(
            Membership(
                project=project, user=user, role="annotator", attributes={"locale": locales[index % 4]}
            )
            for index, user in enumerate(users)
        )
        now = datetime.now(UTC)
        prompt_ids = bulk_insert(
            Prompt,
            ["project_id", "external_id", "content", "category", "metadata", "fingerprint", "created_at"],
            (
                (project.pk, f"q{index}", f"Question {index}?", "", {}, f"{index:040d}", now)
                for index in range(PAIRS)
            ),
        )
        response_ids = bulk_insert(
            Response,
            ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
            (
                (prompt_id, f"r{side}", f"system-{side}", f"Answer {side}.", {}, f"{side:040d}", now)
                for prompt_id in prompt_ids
                for side in (0, 1)
            ),
        )
        gold = generator.random(PAIRS) < 0.02
        pair_ids = bulk_insert(
            Pair,
            ["project_id", "prompt_id", "response_a_id", "response_b_id", "external_id", "is_gold", "gold_choice", "created_at"],
            (
                (project.pk, prompt_id, response_ids[2 * index], response_ids[2 * index + 1], f"p{index}",
                 bool(gold[index]), "a" if gold[index] else "", now)
                for index, prompt_id in enumerate(prompt_ids)
            ),
        )  # fmt: skip
        both_bad = generator.random(units.size) < 0.04
        choices = np.where(
            both_bad, "both_bad", np.where(interval > 0, "a", np.where(interval < 0, "b", "tie"))
        )
        strengths = np.where(np.isin(choices, ("a", "b")), np.abs(interval), 0).astype(int)
        helpfulness = np.where(generator.random(units.size) < 0.85, choices, "tie")
        swapped = generator.random(units.size) < 0.5
        seconds = generator.lognormal(np.log(25.0), 0.5, size=units.size)
        created = [now - timedelta(days=60 * float(share)) for share in generator.random(units.size)]
        user_ids = [user.pk for user in users]
        bulk_insert(
            Judgment,
            ["pair_id", "annotator_id", "origin", "choice", "strength", "criteria", "rationale", "shown_swapped",
             "duration_ms", "created_at", "updated_at"],
            (
                (pair_ids[units[row]], user_ids[coders[row]], "human", choices[row],
                 int(strengths[row]) if strengths[row] else None,
                 {"helpfulness": str(helpfulness[row]), "safety": "tie"}, "", bool(swapped[row]),
                 int(seconds[row] * 1000), created[row], created[row])
                for row in range(units.size)
            ),
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_judgment")
        cursor.execute("ANALYZE annotate_pair")
    return project


def wall_and_cpu(call: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Fastest wall time, fastest CPU time of this process (PostgreSQL's own work is not in it), and the
    last result. CPU time says what a step costs when other work shares the machine."""
    wall, cpu = float("inf"), float("inf")
    result: object = None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = call()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu, result


def snapshot_main(*, reload: bool) -> None:
    os.environ.setdefault("DATABASE_URL", SNAPSHOT_DATABASE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "palate.settings")
    prepare_database()
    import django

    django.setup()
    from annotate.models import Judgment, Project
    from annotate.services.agreement import annotators, coding, compute, timeline
    from annotate.services.judgment_arrays import judgment_arrays

    project = Project.objects.filter(slug=SNAPSHOT_SLUG).first()
    expected = simulated_judgments(np.random.default_rng(SEED))[0].size
    if reload or project is None or Judgment.objects.filter(pair__project=project).count() != expected:
        started = time.perf_counter()
        project = load_snapshot_project()
        print(f"loaded {expected:,} judgments with COPY in {time.perf_counter() - started:.1f} s")

    load_before = os.getloadavg()[0]
    read_seconds, read_cpu, rows = wall_and_cpu(
        lambda: judgment_arrays(project=project), repeats=SNAPSHOT_REPEATS
    )
    pair_ids, units = np.unique(rows.pair_ids, return_inverse=True)
    annotator_ids, coders = np.unique(rows.annotator_ids, return_inverse=True)
    long = {"units": units.astype(np.int64), "coders": coders.astype(np.int64)}
    signed = coding.signed_strength(choice=rows.choice, strength=rows.strength)
    names = [str(annotator_id) for annotator_id in annotator_ids]
    steps: list[tuple[str, Callable[[], object]]] = [
        ("alpha nominal + bootstrap", lambda: compute._alpha_with_interval(values=rows.choice, level="nominal", **long)),
        ("alpha ordinal + bootstrap", lambda: compute._alpha_with_interval(values=signed, level="ordinal", **long)),
        ("alpha interval + bootstrap", lambda: compute._alpha_with_interval(values=signed, level="interval", **long)),
        ("alpha per criterion (2)", lambda: [
            agreement.krippendorff_alpha(values=values, **long) for values in rows.criteria.values()
        ]),
        ("Fleiss' kappa + percent agreement", lambda: (
            compute._fleiss(project=project, choice=rows.choice, **long),
            agreement.percent_agreement(values=rows.choice, **long),
        )),
        ("Cohen's kappa matrix", lambda: compute._kappa(
            choice=rows.choice, names=names, coder_count=annotator_ids.size, **long
        )),
        ("annotator table (incl. drift)", lambda: annotators.annotator_table(
            rows=rows, names=names, annotator_ids=annotator_ids, coder_count=annotator_ids.size, **long
        )),
        ("groups (4 locales)", lambda: annotators.attribute_groups(
            project=project, choice=rows.choice, annotator_ids=annotator_ids, **long
        )),
        ("contested pairs", lambda: compute._contested_pairs(choice=rows.choice, pair_ids=pair_ids, **long)),
        ("alpha over time", lambda: timeline.alpha_over_time(choice=rows.choice, created=rows.created, **long)),
    ]  # fmt: skip
    table = [
        (
            f"read {rows.choice.size:,} judgments (one query)",
            f"{read_seconds:.3f}",
            f"{read_cpu:.3f}",
        )
    ]
    for label, step in steps:
        seconds, cpu, _ = wall_and_cpu(step, repeats=SNAPSHOT_REPEATS)
        table.append((label, f"{seconds:.3f}", f"{cpu:.3f}"))
    total_seconds, total_cpu, data = wall_and_cpu(
        lambda: compute.agreement_snapshot_compute(project=project), repeats=SNAPSHOT_REPEATS
    )
    table.append(("whole snapshot, end to end", f"{total_seconds:.3f}", f"{total_cpu:.3f}"))
    print(
        f"\n{data['summary']['judgments']:,} judgments on {data['summary']['pairs']:,} pairs by "
        f"{data['summary']['annotators']} annotators; alpha nominal {data['alpha']['nominal']['estimate']:.4f}, "
        f"interval {data['alpha']['interval']['estimate']:.4f}; best of {SNAPSHOT_REPEATS}; {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after\n"
    )
    print_table(("step", "wall s", "cpu s (python)"), table)
    verdict = "meets" if total_seconds < 10 else "MISSES"
    print(f"\nwhole snapshot {total_seconds:.2f} s: {verdict} the goal of under 10 s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--snapshot", action="store_true", help="time the whole snapshot from PostgreSQL instead"
    )
    parser.add_argument("--reload", action="store_true", help="with --snapshot: load the project again")
    arguments = parser.parse_args()
    if arguments.snapshot:
        snapshot_main(reload=arguments.reload)
    else:
        main()
