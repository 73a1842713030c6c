"""How many fewer judgments reach a target reward-model accuracy when pairs are handed out least-certain
first ("uncertain_model") than in random order. A pure simulation: no database, no torch.

    .venv/bin/python bench/active_model.py [--pool 5000] [--dimensions 32] [--seeds 5]

The world: each response is a feature vector x (standard normal, ``--dimensions`` of them); its true quality
is w·x for a hidden w. A human judging a pair prefers A with probability sigmoid(``--sharpness`` · (q_a - q_b)),
so close pairs get noisy votes. The reward model is a linear Bradley-Terry model (L2-regularised logistic
regression on x_a - x_b, fitted by Newton steps), refitted after every round of ``--round`` judgments, as
batch scoring and the priority refresh would do. Accuracy is measured on held-out pairs against the true
preference. "uncertain" hands out the round's pairs with the smallest |r_a - r_b| under the current model
(the first round is random); "random" hands them out in a random order.
"""

from __future__ import annotations

import argparse

import numpy as np


def fit(differences: np.ndarray, labels: np.ndarray, *, l2: float = 1.0, steps: int = 8) -> np.ndarray:
    weights = np.zeros(differences.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-differences @ weights))
        gradient = differences.T @ (p - labels) + l2 * weights
        hessian = (differences * (p * (1 - p))[:, None]).T @ differences + l2 * np.eye(len(weights))
        weights -= np.linalg.solve(hessian, gradient)
    return weights


def simulate(
    strategy: str, *, seed: int, pool: int, dimensions: int, sharpness: float, round_size: int, budget: int
):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=dimensions)
    pool_diff = rng.normal(size=(pool, dimensions)) - rng.normal(size=(pool, dimensions))
    test_diff = rng.normal(size=(2000, dimensions)) - rng.normal(size=(2000, dimensions))
    test_truth = test_diff @ truth > 0
    order_rng = np.random.default_rng(seed + 1000)
    available = np.ones(pool, dtype=bool)
    chosen: list[int] = []
    labels: list[float] = []
    weights = np.zeros(dimensions)
    curve = []
    while len(chosen) < budget:
        candidates = np.flatnonzero(available)
        if strategy == "uncertain" and chosen:
            picked = candidates[np.argsort(np.abs(pool_diff[candidates] @ weights))[:round_size]]
        else:
            picked = order_rng.choice(candidates, size=round_size, replace=False)
        available[picked] = False
        votes = rng.random(round_size) < 1 / (1 + np.exp(-sharpness * (pool_diff[picked] @ truth)))
        chosen.extend(picked.tolist())
        labels.extend(votes.astype(float).tolist())
        weights = fit(pool_diff[chosen], np.array(labels))
        curve.append((len(chosen), float(np.mean((test_diff @ weights > 0) == test_truth))))
    return curve


def judgments_to_reach(curve, target: float) -> int | None:
    return next((count for count, accuracy in curve if accuracy >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=int, default=5000)
    parser.add_argument("--dimensions", type=int, default=32)
    parser.add_argument("--sharpness", type=float, default=1.0)
    parser.add_argument("--round", type=int, default=25)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.90, 0.93, 0.95])
    args = parser.parse_args()
    curves = {
        strategy: [
            simulate(strategy, seed=seed, pool=args.pool, dimensions=args.dimensions, sharpness=args.sharpness,
                     round_size=args.round, budget=args.budget)
            for seed in range(args.seeds)
        ]
        for strategy in ("random", "uncertain")
    }  # fmt: skip
    print(f"linear reward model, {args.dimensions} features, pool {args.pool} pairs, {args.seeds} seeds, "
          f"rounds of {args.round} judgments")  # fmt: skip
    print(f"{'target accuracy':>16}{'random':>10}{'uncertain':>11}{'saved':>8}")
    for target in args.targets:
        needed = {}
        for strategy, runs in curves.items():
            counts = [judgments_to_reach(curve, target) for curve in runs]
            needed[strategy] = None if None in counts else float(np.median(counts))
        saved = (
            f"{1 - needed['uncertain'] / needed['random']:>7.0%}"
            if needed["random"] and needed["uncertain"]
            else f"{'n/a':>7}"
        )
        show = {k: (f"{v:.0f}" if v else f">{args.budget}") for k, v in needed.items()}
        print(f"{target:>16.2f}{show['random']:>10}{show['uncertain']:>11} {saved}")


if __name__ == "__main__":
    main()
