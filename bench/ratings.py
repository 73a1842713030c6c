"""Ratings benchmark: Bradley-Terry fit and 1,000 bootstrap rounds, Palate against the usual alternatives.

One synthetic data set (100 systems, 1,000,000 battles, 5% ties; ``--quick``: 50 systems, 100,000
battles), fitted by:

- palate: ``annotate.stats.ratings`` (table of wins, Newton; multinomial bootstrap of the table, warm-started
  fixed-Hessian refits), with one thread and with one per CPU;
- (a) Chatbot Arena, early 2024: scikit-learn ``LogisticRegression`` on the dense one-hot design of every
  battle twice (a tie is one win each way), bootstrap by resampling battles; a few rounds are run and the
  rest extrapolated;
- (b) Chatbot Arena, current (``fastchat/serve/monitor/rating_systems.py``): deduplicated (model_a, model_b,
  outcome) rows with counts, weighted Bradley-Terry log-loss minimised by scipy L-BFGS-B, bootstrap by
  multinomial resampling of the counts with a fresh L-BFGS fit per round in a process pool;
- (c) choix: ``ilsr_pairwise_dense`` on the same table, bootstrap on numpy-multinomial resampled tables,
  warm-started from the full fit.

All ratings are put on one Elo scale anchored at system 0 = 1000 and compared with Palate's.

    .venv/bin/python bench/ratings.py            # about 2-3 minutes on 2 cores
    .venv/bin/python bench/ratings.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotate.stats.ratings import ELO_SCALE, Outcome, build_outcome_table, fit_ratings  # noqa: E402

ROUNDS = 1000
ANCHOR_RATING = 1000.0


@dataclass
class Row:
    method: str
    aggregate_seconds: float
    fit_seconds: float
    bootstrap_seconds: float
    bootstrap_how: str
    rating: np.ndarray


def timed(function: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Median wall time over ``repeats`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def anchored(elo: np.ndarray) -> np.ndarray:
    return elo - elo[..., :1] + ANCHOR_RATING


def simulate(systems: int, battles: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 0.6, systems)
    model_a = rng.integers(0, systems, battles)
    model_b = (model_a + rng.integers(1, systems, battles)) % systems
    a_wins = rng.random(battles) < expit(strength[model_a] - strength[model_b])
    tie = rng.random(battles) < 0.05
    outcome = np.where(tie, Outcome.TIE, np.where(a_wins, Outcome.A_WINS, Outcome.B_WINS)).astype(np.int64)
    return model_a, model_b, outcome


# --- Palate ---------------------------------------------------------------------------------------------------


def run_palate(model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, systems: int) -> list[Row]:
    aggregate, table = timed(lambda: build_outcome_table(model_a, model_b, outcome, systems), repeats=5)
    fit_seconds, result = timed(lambda: fit_ratings(table, anchor=0), repeats=7)
    rows = []
    for workers, label in ((1, "palate, 1 thread"), (None, f"palate, {os.cpu_count()} threads")):
        bootstrap_seconds, _ = timed(
            lambda workers=workers: fit_ratings(
                table, anchor=0, interval="bootstrap", bootstrap_rounds=ROUNDS, seed=1, workers=workers
            ),
            repeats=3,
        )
        rows.append(Row(label, aggregate, fit_seconds, bootstrap_seconds, "measured", result.rating))
    return rows


# --- (a) Chatbot Arena, early 2024: dense logistic regression -----------------------------------------------------


def arena_2024_design(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, systems: int
) -> tuple[np.ndarray, np.ndarray]:
    """``compute_mle_elo`` of the Chatbot Arena notebook: every battle twice, a tie one win each way."""
    battles = model_a.size
    rows = 2 * battles
    design = np.zeros((rows, systems))
    design[np.arange(rows), np.tile(model_a, 2)] = math.log(10.0)
    design[np.arange(rows), np.tile(model_b, 2)] = -math.log(10.0)
    label = np.zeros(rows)
    label[np.concatenate([outcome == Outcome.A_WINS, outcome == Outcome.A_WINS])] = 1.0
    label[:battles][outcome == Outcome.TIE] = 1.0
    return design, label


def arena_2024_fit(design: np.ndarray, label: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    # penalty=None, spelled C=inf since scikit-learn 1.8.
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=tolerance, max_iter=1000)
    model.fit(design, label)
    return anchored(400.0 * model.coef_[0] + 1000.0)


def run_arena_2024(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, systems: int, rounds: int
) -> tuple[Row, np.ndarray]:
    """The row (Arena's tolerance, 1e-6) and the ratings refitted at tolerance 1e-10 for the agreement check."""
    aggregate, (design, label) = timed(lambda: arena_2024_design(model_a, model_b, outcome, systems))
    fit_seconds, elo = timed(lambda: arena_2024_fit(design, label))
    converged = arena_2024_fit(design, label, tolerance=1e-10)
    rng = np.random.default_rng(0)

    def one_round() -> np.ndarray:
        sample = rng.integers(0, model_a.size, model_a.size)
        return arena_2024_fit(*arena_2024_design(model_a[sample], model_b[sample], outcome[sample], systems))

    round_seconds, _ = timed(one_round, repeats=rounds)
    row = Row(
        "(a) Arena 2024: sklearn dense LR",
        aggregate,
        fit_seconds,
        round_seconds * ROUNDS,
        f"extrapolated from {rounds}",
        elo,
    )
    return row, converged


# --- (b) Chatbot Arena, current: L-BFGS on deduplicated rows ------------------------------------------------------


def arena_preprocess(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``preprocess_for_bt``: unique (model_a, model_b, outcome) rows and their counts."""
    schedule = np.full((model_a.size, 3), fill_value=1, dtype=np.int32)
    schedule[:, 0] = model_a
    schedule[:, 1] = model_b
    schedule[outcome == Outcome.A_WINS, 2] = 2
    schedule[outcome == Outcome.B_WINS, 2] = 0
    matchups_outcomes, weights = np.unique(schedule, return_counts=True, axis=0)
    return (
        matchups_outcomes[:, [0, 1]],
        matchups_outcomes[:, 2].astype(np.float64) / 2.0,
        weights.astype(float),
    )


def bt_loss_and_grad(
    ratings: np.ndarray, matchups: np.ndarray, outcomes: np.ndarray, weights: np.ndarray, alpha: float = 1.0
) -> tuple[float, np.ndarray]:
    matchup_ratings = ratings[matchups]
    logits = alpha * (matchup_ratings[:, 0] - matchup_ratings[:, 1])
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    matchups_grads = -alpha * (outcomes - probs) * weights
    model_grad = np.zeros_like(ratings)
    np.add.at(
        model_grad, matchups[:, [0, 1]], matchups_grads[:, None] * np.array([1.0, -1.0], dtype=np.float64)
    )
    return loss, model_grad


def fit_bt(
    matchups: np.ndarray,
    outcomes: np.ndarray,
    weights: np.ndarray,
    n_models: int,
    alpha: float,
    tol: float = 1e-6,
) -> np.ndarray:
    result = minimize(
        fun=bt_loss_and_grad,
        x0=np.zeros(n_models, dtype=np.float64),
        args=(matchups, outcomes, weights, alpha),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 100, "gtol": tol},
    )
    return result["x"]


def arena_bootstrap(
    matchups: np.ndarray, outcomes: np.ndarray, weights: np.ndarray, systems: int, battles: int, rounds: int
) -> np.ndarray:
    """``compute_bootstrap_bt``: multinomial counts, normalised, one L-BFGS fit per round in a pool."""
    rng = np.random.default_rng(seed=0)
    idxs = rng.multinomial(n=battles, pvals=weights / weights.sum(), size=rounds)
    boot_weights = idxs.astype(np.float64) / battles
    bt_fn = partial(fit_bt, matchups, outcomes, n_models=systems, alpha=math.log(10.0), tol=1e-6)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = list(pool.imap_unordered(bt_fn, boot_weights))
    return anchored(400.0 * np.array(results) + 1000.0)


def run_arena_current(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, systems: int, rounds: int
) -> Row:
    aggregate, (matchups, outcomes, weights) = timed(lambda: arena_preprocess(model_a, model_b, outcome))
    fit_seconds, ratings = timed(
        lambda: fit_bt(matchups, outcomes, weights, systems, math.log(10.0)), repeats=5
    )
    bootstrap_seconds, _ = timed(
        lambda: arena_bootstrap(matchups, outcomes, weights, systems, model_a.size, rounds)
    )
    how = "measured" if rounds == ROUNDS else f"extrapolated from {rounds}"
    return Row(
        "(b) Arena now: L-BFGS, dedup rows",
        aggregate,
        fit_seconds,
        bootstrap_seconds * ROUNDS / rounds,
        how,
        anchored(400.0 * ratings + 1000.0),
    )


# --- (c) choix -------------------------------------------------------------------------------------------------


def run_choix(
    model_a: np.ndarray, model_b: np.ndarray, outcome: np.ndarray, systems: int, rounds: int
) -> Row:
    import choix

    aggregate, table = timed(lambda: build_outcome_table(model_a, model_b, outcome, systems))
    score = table.wins + 0.5 * table.ties
    fit_seconds, theta = timed(lambda: choix.ilsr_pairwise_dense(score), repeats=5)
    upper = np.triu_indices(systems, k=1)
    cells = np.concatenate([table.wins[upper], table.wins.T[upper], table.ties[upper]])
    battles = int(cells.sum())

    def bootstrap() -> None:
        rng = np.random.default_rng(0)
        for counts in rng.multinomial(battles, cells / cells.sum(), size=rounds):
            first_wins, second_wins, ties = np.split(counts.astype(np.float64), 3)
            resampled = np.zeros((systems, systems))
            resampled[upper] = first_wins + 0.5 * ties
            resampled.T[upper] = second_wins + 0.5 * ties
            choix.ilsr_pairwise_dense(resampled, initial_params=theta)

    bootstrap_seconds, _ = timed(bootstrap)
    how = "measured" if rounds == ROUNDS else f"extrapolated from {rounds}"
    return Row(
        "(c) choix ilsr_pairwise_dense",
        aggregate,
        fit_seconds,
        bootstrap_seconds * ROUNDS / rounds,
        how,
        anchored(ELO_SCALE * theta + 1000.0),
    )


# --- report -----------------------------------------------------------------------------------------------------


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.0f} s"


def report(rows: list[Row], reference: Row) -> None:
    header = (
        f"{'method':36} | {'aggregate':>10} | {'fit':>10} | {'fit x':>7} | {'1,000 bootstrap':>15} | "
        f"{'how':22} | {'boot x':>8} | {'max |dElo|':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.method:36} | {milliseconds(row.aggregate_seconds):>10} | {milliseconds(row.fit_seconds):>10} | "
            f"{row.fit_seconds / reference.fit_seconds:>7.1f} | {milliseconds(row.bootstrap_seconds):>15} | "
            f"{row.bootstrap_how:22} | {row.bootstrap_seconds / reference.bootstrap_seconds:>8.1f} | "
            f"{np.abs(row.rating - reference.rating).max():>10.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="50 systems, 100,000 battles, fewer baseline rounds"
    )
    arguments = parser.parse_args()
    systems, battles = (50, 100_000) if arguments.quick else (100, 1_000_000)
    arena_2024_rounds, arena_rounds, choix_rounds = (1, 200, 200) if arguments.quick else (2, ROUNDS, ROUNDS)

    print(
        f"{systems} systems, {battles:,} battles, 5% ties; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start; numpy {np.__version__}"
    )
    model_a, model_b, outcome = simulate(systems, battles)
    started = time.perf_counter()
    palate_rows = run_palate(model_a, model_b, outcome, systems)
    reference = palate_rows[0]
    arena_2024, arena_2024_converged = run_arena_2024(model_a, model_b, outcome, systems, arena_2024_rounds)
    rows = [
        *palate_rows,
        arena_2024,
        run_arena_current(model_a, model_b, outcome, systems, arena_rounds),
        run_choix(model_a, model_b, outcome, systems, choix_rounds),
    ]
    print()
    print(
        "fit: from the aggregated data (Palate's includes sandwich intervals); x: time / palate's (1 thread)"
    )
    report(rows, reference)
    print()
    arena = rows[len(palate_rows) + 1]

    # (a) at Arena's tolerance stops about 0.01 Elo short of the optimum; refitted tightly it agrees.
    tight = np.abs(arena_2024_converged - reference.rating).max()
    print(f"(a) refitted at tolerance 1e-10: max |dElo| vs palate {tight:.2e}")
    worst = max(
        [tight] + [np.abs(row.rating - reference.rating).max() for row in rows if row is not arena_2024]
    )
    fastest_palate_bootstrap = min(row.bootstrap_seconds for row in palate_rows)
    print(f"ratings agree to 0.01 Elo across methods: {'yes' if worst <= 0.01 else 'NO'} (worst {worst:.4f})")
    print(
        f"fit under 50 ms: {'yes' if reference.fit_seconds < 0.05 else 'NO'} ({reference.fit_seconds * 1000:.1f} ms)"
    )
    print(
        f"1,000 bootstrap rounds under 2 s: {'yes' if fastest_palate_bootstrap < 2 else 'NO'} "
        f"({fastest_palate_bootstrap:.2f} s); vs (b): {arena.bootstrap_seconds / fastest_palate_bootstrap:.0f}x "
        f"faster ({'at least 5x' if arena.bootstrap_seconds >= 5 * fastest_palate_bootstrap else 'NOT 5x'})"
    )
    print(f"total {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
