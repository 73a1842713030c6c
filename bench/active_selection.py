"""Active comparison selection benchmark: judgments needed to reach a stable ranking, with and without it.

A pure simulation on the stats modules (no database). Twelve systems with known Bradley-Terry strengths,
evenly spaced so that neighbours are close (0.2 apart in log-strength, a 55:45 preference); 1,500 prompts,
each with 3 random pairs of different systems (``pairing=random, pairs_per_prompt=3``), each pair wanting 3
judgments: far more work than the 2,500 judgments the simulation stops at, as in a project that stops
collecting once its leaderboard has settled. Annotators vote by Bradley-Terry on the true strengths, with 10%
ties. Ways to hand out the next pair:

- fill: the "fill" strategy, depth first: pairs in import order, each finished before the next;
- random: a uniformly random pair that still has room;
- uncertain_systems: Palate's strategy. Every 25 judgments (the beat task's refresh) the ratings are refitted
  and ``annotate.stats.selection.pair_priorities`` ranks the open pairs with the model covariance
  (``fisher_covariance``); claims take the highest first (fullest first, then by id, on equal priority),
  exactly as ``pair_claim_next`` orders them;
- two ablations: without weighting by how much each order is in doubt (``p (1 - p)`` times the variance of
  the difference alone), and with the leaderboard's sandwich covariance instead of the model's.

After every 25 judgments the leaderboard is fitted on the votes so far and compared with the true order. The
table gives Kendall's tau averaged over the simulated projects at a few budgets, the judgments after which
that average first reaches 0.9, and per project the judgments from which the ranking stays good at every later
check (tau at least 0.9; the top 3 exactly right and in order), median over projects; a project that never
gets there counts as the whole budget.

    .venv/bin/python bench/active_selection.py            # 16 seeds, two to four minutes
    .venv/bin/python bench/active_selection.py --seeds 4  # quicker, noisier
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotate.stats.ratings import Outcome, build_outcome_table, fit_ratings  # noqa: E402
from annotate.stats.selection import fisher_covariance, pair_priorities  # noqa: E402

SYSTEMS = 12
PROMPTS = 1500
PAIRS_PER_PROMPT = 3
OVERLAP = 3
BUDGET = 2500
TIE_RATE = 0.10
CHECK_EVERY = 25
REFRESH_EVERY = 25
TAU_TARGET = 0.9
TOP = 3
REPORT_AT = (300, 600, 1200, 2000)
STRENGTH = np.linspace(1.1, -1.1, SYSTEMS)  # system 0 is the best


@dataclass
class World:
    system_a: np.ndarray
    system_b: np.ndarray
    rng: np.random.Generator


def make_world(seed: int) -> World:
    rng = np.random.default_rng(seed)
    first, second = [], []
    for _ in range(PROMPTS):
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < PAIRS_PER_PROMPT:
            a, b = rng.choice(SYSTEMS, 2, replace=False)
            if (a, b) not in chosen and (b, a) not in chosen:
                chosen.add((int(a), int(b)))
        for a, b in sorted(chosen):
            first.append(a)
            second.append(b)
    return World(np.array(first), np.array(second), rng)


def vote(world: World, pair: int) -> int:
    if world.rng.random() < TIE_RATE:
        return int(Outcome.TIE)
    a_wins = world.rng.random() < expit(STRENGTH[world.system_a[pair]] - STRENGTH[world.system_b[pair]])
    return int(Outcome.A_WINS if a_wins else Outcome.B_WINS)


def table_of(world: World, pairs: list[int], outcomes: list[int]):
    index = np.array(pairs, dtype=np.int64)
    return build_outcome_table(world.system_a[index], world.system_b[index], np.array(outcomes), SYSTEMS)


# --- strategies: each returns the next pair to judge, given how many judgments every pair has -----------------

Chooser = Callable[[np.ndarray, list[int], list[int]], int]


def fill_strategy(world: World) -> Chooser:
    state = {"next": 0}

    def choose(taken: np.ndarray, pairs: list[int], outcomes: list[int]) -> int:
        while taken[state["next"]] >= OVERLAP:
            state["next"] += 1
        return state["next"]

    return choose


def random_strategy(world: World) -> Chooser:
    def choose(taken: np.ndarray, pairs: list[int], outcomes: list[int]) -> int:
        return int(world.rng.choice(np.flatnonzero(taken < OVERLAP)))

    return choose


def uncertainty_strategy(world: World, rank_aware: bool = True, sandwich: bool = False) -> Chooser:
    """Priorities are static between refreshes, so the claim order is sorted once per refresh and walked."""
    state: dict = {"refreshed_at": None, "order": None, "next": 0}

    def refresh(taken: np.ndarray, pairs: list[int], outcomes: list[int]) -> None:
        table = table_of(world, pairs, outcomes)
        result = fit_ratings(table, interval="sandwich" if sandwich else "none")
        covariance = result.covariance if sandwich else fisher_covariance(table.battles, result.theta)
        # The service passes pairs fullest first, then by id; priorities keep that order within a system pair.
        ids = np.arange(taken.size)
        fill_order = np.lexsort((ids, -taken))
        priority = np.empty(taken.size)
        priority[fill_order] = pair_priorities(
            world.system_a[fill_order],
            world.system_b[fill_order],
            OVERLAP - taken[fill_order],
            result.theta,
            covariance,
            rank_aware=rank_aware,
        )
        # pair_claim_next's order: -priority, then -slots_taken, then id.
        state["order"] = np.lexsort((ids, -taken, -priority))
        state["next"] = 0

    def choose(taken: np.ndarray, pairs: list[int], outcomes: list[int]) -> int:
        if state["refreshed_at"] is None or len(pairs) - state["refreshed_at"] >= REFRESH_EVERY:
            refresh(taken, pairs, outcomes)
            state["refreshed_at"] = len(pairs)
        order = state["order"]
        while taken[order[state["next"]]] >= OVERLAP:
            state["next"] += 1
        return int(order[state["next"]])

    return choose


STRATEGIES: dict[str, Callable[[World], Chooser]] = {
    "fill": fill_strategy,
    "random": random_strategy,
    "uncertain_systems": uncertainty_strategy,
    "  without the order weight": partial(uncertainty_strategy, rank_aware=False),
    "  with the sandwich covariance": partial(uncertainty_strategy, sandwich=True),
}


# --- one run --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    tau: dict[int, float]
    tau_stable_at: int | None
    top_stable_at: int | None


def stable_from(checkpoints: list[int], met: list[bool]) -> int | None:
    """The first checkpoint after which the target holds at every later one (None if it fails at the end)."""
    if not met or not met[-1]:
        return None
    first = len(met) - 1
    while first > 0 and met[first - 1]:
        first -= 1
    return checkpoints[first]


def simulate(strategy: str, seed: int) -> Run:
    world = make_world(seed)
    choose = STRATEGIES[strategy](world)
    taken = np.zeros(world.system_a.size, dtype=np.int64)
    pairs: list[int] = []
    outcomes: list[int] = []
    checkpoints: list[int] = []
    tau_met: list[bool] = []
    top_met: list[bool] = []
    taus: dict[int, float] = {}
    for _ in range(BUDGET):
        pair = choose(taken, pairs, outcomes)
        taken[pair] += 1
        pairs.append(pair)
        outcomes.append(vote(world, pair))
        if len(pairs) % CHECK_EVERY == 0:
            rating = fit_ratings(table_of(world, pairs, outcomes), interval="none").rating
            tau = float(kendalltau(-rating, -STRENGTH).statistic)
            checkpoints.append(len(pairs))
            taus[len(pairs)] = tau
            tau_met.append(tau >= TAU_TARGET)
            top_met.append(bool(np.array_equal(np.argsort(-rating, kind="stable")[:TOP], np.arange(TOP))))
    return Run(taus, stable_from(checkpoints, tau_met), stable_from(checkpoints, top_met))


# --- the table ------------------------------------------------------------------------------------------------


def median_judgments(values: list[int | None]) -> str:
    reached = sum(value is not None for value in values)
    middle = statistics.median(BUDGET if value is None else value for value in values)
    return f"{middle:,.0f} ({reached}/{len(values)})"


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for index, row in enumerate([header, *rows]):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="simulated projects per strategy (default 16)")
    arguments = parser.parse_args()
    print(
        f"{SYSTEMS} systems (strengths {STRENGTH[0]:+.1f} .. {STRENGTH[-1]:+.1f}, neighbours "
        f"{STRENGTH[0] - STRENGTH[1]:.1f} apart), {PROMPTS:,} prompts x {PAIRS_PER_PROMPT} pairs x {OVERLAP} "
        f"judgments wanted, stopping at {BUDGET:,}; {TIE_RATE:.0%} ties; {arguments.seeds} seeds"
    )
    results: dict[str, list[Run]] = {}
    for strategy in STRATEGIES:
        started = time.perf_counter()
        results[strategy] = [simulate(strategy, seed) for seed in range(arguments.seeds)]
        print(f"  {strategy.strip()}: {time.perf_counter() - started:.0f} s", flush=True)

    first_reaching: dict[str, int | None] = {}
    rows = []
    for strategy, runs in results.items():
        checkpoints = sorted(runs[0].tau)
        mean_tau = {point: statistics.mean(run.tau[point] for run in runs) for point in checkpoints}
        first_reaching[strategy] = next(
            (point for point in checkpoints if mean_tau[point] >= TAU_TARGET), None
        )
        reached = first_reaching[strategy]
        rows.append(
            (
                strategy,
                *(f"{mean_tau[point]:.3f}" for point in REPORT_AT),
                f"{reached:,}" if reached else f">{BUDGET:,}",
                median_judgments([run.tau_stable_at for run in runs]),
                median_judgments([run.top_stable_at for run in runs]),
            )
        )
    header = (
        "strategy",
        *(f"tau at {point:,}" for point in REPORT_AT),
        f"mean tau >= {TAU_TARGET} at",
        f"stays tau >= {TAU_TARGET} from",
        f"stays top-{TOP} exact from",
    )
    print()
    print_table(header, rows)
    print(
        "\ntau: Kendall's tau with the true order, mean over seeds. 'stays ... from': median over seeds of the "
        f"judgments after which every later check meets the target (reached/seeds; unreached counts {BUDGET:,})."
    )
    baseline, active = first_reaching["fill"], first_reaching["uncertain_systems"]
    if baseline and active:
        print(
            f"uncertain_systems reaches a mean tau of {TAU_TARGET} after {active:,} judgments, "
            f"{1 - active / baseline:.0%} fewer than fill order ({baseline:,})"
        )


if __name__ == "__main__":
    main()
