"""Benchmark annotate.stats.agreement against the `krippendorff` package on a million judgments.

Run from the repository root: ``.venv/bin/python bench/agreement.py``. It builds 100,000 pairs judged by 8 to
12 annotators each (about 1,000,000 judgments) drawn from a pool of 200, so the coders x units reliability
matrix is about 95% missing; a nominal variant with 4 categories and an interval variant on -3..+3. Both
libraries get the same data, ours in long form and `krippendorff` as the reliability matrix it needs (building
that matrix is not timed). Values must agree to 1e-9; times are the best of a few repeats.
"""

from __future__ import annotations

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

PAIRS = 100_000
ANNOTATOR_POOL = 200
FEWEST_PER_PAIR = 8
MOST_PER_PAIR = 12
NOMINAL_CATEGORIES = 4
INTERVAL_LOW, INTERVAL_HIGH = -3, 3
BOOTSTRAP_ROUNDS = 1000
REPEATS = 3
SEED = 20240611


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
    widths = [max(len(row[column]) for row in [header, *table]) for column in range(len(header))]
    for row in [header, tuple("-" * width for width in widths), *table]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print("\nratio = krippendorff seconds / palate seconds (higher means palate is faster)")


if __name__ == "__main__":
    main()
