"""Per-prompt response scores: Bradley-Terry within each prompt, e.g. as reward-model targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from annotate.stats.ratings.half_ties import newton_half_ties
from annotate.stats.ratings.outcomes import (
    FloatArray,
    IntArray,
    Outcome,
    a_scores,
    check_outcome_codes,
    integer_vector,
    validated_weights,
)

# Per-prompt problems are tiny (often a single comparison), so they need a real prior: standard deviation
# sqrt(10) ~ 3.2 in log-strength, so one win gives the winner about +1.1 and the loser about -1.1.
PROMPT_SCORE_L2 = 0.1


@dataclass(frozen=True)
class ResponseScores:
    """One score per (prompt, response): Bradley-Terry log-strength within its prompt (summing to zero)."""

    prompt: NDArray[Any]
    response: NDArray[Any]
    score: FloatArray
    battles: IntArray
    converged: bool
    iterations: int
    warnings: list[str]


def prompt_response_scores(
    prompt: ArrayLike,
    response_a: ArrayLike,
    response_b: ArrayLike,
    outcome: ArrayLike,
    *,
    both_bad_as_tie: bool = True,
    weights: ArrayLike | None = None,
    l2: float = PROMPT_SCORE_L2,
    tolerance: float = 1e-9,
    max_iterations: int = 100,
) -> ResponseScores:
    """Bradley-Terry within each prompt: one log-strength per (prompt, response), e.g. as reward targets.

    ``prompt`` and the response ids are any integer (or sortable) ids; a response is identified by its
    (prompt, response) pair. Every prompt is an independent, L2-regularised problem (``l2 > 0``, default
    ``PROMPT_SCORE_L2``), so a prompt with a single comparison still gets finite scores. Prompts with the same
    number of responses are solved together as one batch of small Newton problems, so the cost is a few
    vectorised calls, not one per prompt.
    """
    if l2 <= 0:
        raise ValueError("l2 must be positive: single-comparison prompts have no finite unregularised scores")
    prompts = np.asarray(prompt).ravel()
    left = np.asarray(response_a).ravel()
    right = np.asarray(response_b).ravel()
    codes = integer_vector(outcome)
    if not (prompts.shape == left.shape == right.shape == codes.shape):
        raise ValueError("prompt, response_a, response_b and outcome must have the same length")
    if np.any(left == right):
        raise ValueError("a response cannot battle itself")
    check_outcome_codes(codes)
    battle_weights = validated_weights(weights, codes.size)
    if battle_weights is None:
        battle_weights = np.ones(codes.size)
    if not both_bad_as_tie:
        keep = codes != Outcome.BOTH_BAD
        prompts, left, right, codes, battle_weights = (
            prompts[keep],
            left[keep],
            right[keep],
            codes[keep],
            battle_weights[keep],
        )

    # Number responses consecutively, grouped by prompt: slot = position among sorted (prompt, response).
    prompt_values, prompt_code = np.unique(prompts, return_inverse=True)
    response_values, response_code = np.unique(np.concatenate([left, right]), return_inverse=True)
    count = prompts.size
    keys = np.concatenate([prompt_code, prompt_code]).astype(np.int64) * response_values.size + response_code
    unique_keys, slot = np.unique(keys, return_inverse=True)
    slot_a, slot_b = slot[:count], slot[count:]
    slot_prompt = unique_keys // response_values.size
    prompt_start = np.searchsorted(slot_prompt, np.arange(prompt_values.size))
    prompt_size = np.bincount(slot_prompt, minlength=prompt_values.size)
    local_a = slot_a - prompt_start[prompt_code]
    local_b = slot_b - prompt_start[prompt_code]

    # Score of the lower-numbered response of each battle: 1 win, 0 loss, 1/2 tie.
    a_score = a_scores(codes)
    low, high = np.minimum(local_a, local_b), np.maximum(local_a, local_b)
    low_score = np.where(local_a < local_b, a_score, 1.0 - a_score) * battle_weights
    high_score = battle_weights - low_score

    score = np.zeros(unique_keys.size)
    converged = True
    iterations = 0
    for size in np.unique(prompt_size):
        size = int(size)
        group_prompts = np.flatnonzero(prompt_size == size)
        position = np.full(prompt_values.size, -1, dtype=np.int64)
        position[group_prompts] = np.arange(group_prompts.size)
        rows = np.flatnonzero(position[prompt_code] >= 0)
        first, second = np.triu_indices(size, k=1)
        pair_number = np.full((size, size), -1, dtype=np.int64)
        pair_number[first, second] = np.arange(first.size)
        cell = position[prompt_code[rows]] * first.size + pair_number[low[rows], high[rows]]
        cells = group_prompts.size * first.size
        first_score = np.bincount(cell, weights=low_score[rows], minlength=cells).reshape(-1, first.size)
        second_score = np.bincount(cell, weights=high_score[rows], minlength=cells).reshape(-1, first.size)
        theta, group_converged, group_iterations = newton_half_ties(
            first.astype(np.int64),
            second.astype(np.int64),
            size,
            first_score,
            second_score,
            np.zeros((group_prompts.size, size)),
            l2,
            tolerance,
            max_iterations,
        )
        slots = prompt_start[group_prompts][:, None] + np.arange(size)[None, :]
        score[slots] = theta
        converged &= bool(group_converged.all())
        iterations = max(iterations, group_iterations)

    warnings = (
        [] if converged else [f"some prompts did not converge within {max_iterations} Newton iterations"]
    )
    battles = np.bincount(np.concatenate([slot_a, slot_b]), minlength=unique_keys.size)
    return ResponseScores(
        prompt=prompt_values[slot_prompt],
        response=response_values[unique_keys % response_values.size],
        score=score,
        battles=battles.astype(np.int64),
        converged=converged,
        iterations=iterations,
        warnings=warnings,
    )
