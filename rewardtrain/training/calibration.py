"""Temperature scaling of pairwise preference probabilities (Guo et al. 2017): numpy and scipy, no torch.

A reward model says P(a preferred to b) = sigmoid((r_a - r_b) / T). Training leaves T = 1, and a model trained
to a low loss on its training pairs is over-confident on new ones; ``fit_temperature`` picks the T that
minimises the log loss on the validation pairs (scipy's bounded scalar minimiser over log T) (one parameter, so it cannot change which response ranks
higher, only how sure the model says it is). ``calibration_report`` gives the expected calibration error and
the Brier score before and after, with ``evaluate``'s definitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from rewardtrain.training.evaluate import evaluate_scores

# exp(+-log(100)): a temperature beyond these says the scores carry no usable scale (all pairs right, or none).
LOG_TEMPERATURE_BOUND = float(np.log(100.0))


def _targets(count: int, vote_share: ArrayLike | None) -> np.ndarray:
    if vote_share is None:
        return np.ones(count)
    share = np.asarray(vote_share, dtype=np.float64)
    return np.where(np.isnan(share), 1.0, share)


def preference_log_loss(difference: ArrayLike, target: ArrayLike, temperature: float = 1.0) -> float:
    """Mean log loss of sigmoid(difference / temperature) against the targets (P(first preferred))."""
    scaled = np.asarray(difference, dtype=np.float64) / temperature
    target = np.asarray(target, dtype=np.float64)
    return float(np.mean(target * np.logaddexp(0.0, -scaled) + (1 - target) * np.logaddexp(0.0, scaled)))


def fit_temperature(difference: ArrayLike, target: ArrayLike) -> float:
    """The temperature minimising ``preference_log_loss`` (bounded to [1/100, 100]); 1 without pairs.

    With a standard normal prior on log T (a maximum a posteriori fit): on a few hundred pairs it changes
    nothing, but a small validation split that the model ranks all right would otherwise drive T to its
    lower bound and every probability to 0 or 1."""
    from scipy.optimize import minimize_scalar

    difference = np.asarray(difference, dtype=np.float64)
    if difference.size == 0 or not np.any(difference):
        return 1.0
    count = difference.size

    def objective(log_temperature: float) -> float:
        fit = preference_log_loss(difference, target, float(np.exp(log_temperature)))
        return fit + log_temperature**2 / (2 * count)

    fitted = minimize_scalar(
        objective,
        bounds=(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND),
        method="bounded",
    )
    return float(np.exp(fitted.x))


def calibration_report(
    chosen: ArrayLike, rejected: ArrayLike, *, vote_share: ArrayLike | None = None
) -> dict[str, Any]:
    """The fitted temperature and the validation pairs' ECE, Brier score and log loss before and after it."""
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    target = _targets(len(chosen), vote_share)
    temperature = fit_temperature(chosen - rejected, target)
    before = evaluate_scores(chosen, rejected, vote_share=vote_share)
    after = evaluate_scores(chosen / temperature, rejected / temperature, vote_share=vote_share)
    return {
        "temperature": temperature,
        "pairs": len(chosen),
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "brier_before": before["brier"],
        "brier_after": after["brier"],
        "log_loss_before": preference_log_loss(chosen - rejected, target),
        "log_loss_after": preference_log_loss(chosen - rejected, target, temperature),
        "calibration_after": after["calibration"],
    }
