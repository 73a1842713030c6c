"""Preference losses: pure torch functions of reward tensors, no model and no data loading.

With ``d = r_chosen - r_rejected - margin``:

- Bradley-Terry: ``-log sigma(d)``;
- soft labels from a vote share ``p`` (the share of annotators who preferred the chosen response):
  ``-[p log sigma(d) + (1 - p) log sigma(-d)]``. A tie is ``p = 0.5``; ``p = 1`` is Bradley-Terry.

The trainer weighs and sums these per-pair losses itself (its micro-batches are parts of one step, possibly
on several ranks) and adds reward centering (Eisenstein et al., 2023, as in TRL). ``log sigma`` is computed
with ``logsigmoid``, which stays finite for large differences.
"""

from __future__ import annotations

import torch
from torch.nn import functional


def pair_losses(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    vote_share: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair loss, unreduced: soft-label loss of ``r_c - r_r - margin`` against ``vote_share``, which is
    Bradley-Terry where the vote share is absent (NaN) or 1."""
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin.to(difference.dtype)
    if vote_share is None:
        return -functional.logsigmoid(difference)
    vote_share = torch.nan_to_num(vote_share.to(difference.dtype), nan=1.0)
    return -(
        vote_share * functional.logsigmoid(difference) + (1 - vote_share) * functional.logsigmoid(-difference)
    )
