"""Preference losses: pure torch functions of reward tensors, no model and no data loading.

With ``d = r_chosen - r_rejected - margin``:

- Bradley-Terry: ``-log sigma(d)``;
- soft labels from a vote share ``p`` (the share of annotators who preferred the chosen response):
  ``-[p log sigma(d) + (1 - p) log sigma(-d)]``. A tie is ``p = 0.5``; ``p = 1`` is Bradley-Terry;
- reward centering (Eisenstein et al., 2023, as in TRL): ``mean((r_chosen + r_rejected)^2)``, which keeps
  rewards near zero without changing any pair's difference.

Per-pair losses are averaged with optional per-pair weights as ``sum(w * loss) / sum(w)``.
``log sigma`` is computed with ``logsigmoid``, which stays finite for large differences.
"""

from __future__ import annotations

import torch
from torch.nn import functional


def _weighted_mean(losses: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return losses.mean()
    weight = weight.to(losses.dtype)
    return (losses * weight).sum() / weight.sum()


def bradley_terry_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of ``-log sigma(r_c - r_r - margin)`` over pairs, weighted when ``weight`` is given."""
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin.to(difference.dtype)
    return _weighted_mean(-functional.logsigmoid(difference), weight)


def soft_label_loss(
    difference: torch.Tensor, vote_share: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``-[p log sigma(d) + (1 - p) log sigma(-d)]`` over pairs (binary cross-entropy with logits)."""
    vote_share = vote_share.to(difference.dtype)
    losses = -(
        vote_share * functional.logsigmoid(difference) + (1 - vote_share) * functional.logsigmoid(-difference)
    )
    return _weighted_mean(losses, weight)


def reward_centering_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """``mean((r_c + r_r)^2)``: zero exactly when every pair's rewards are centred on zero."""
    return ((rewards_chosen + rewards_rejected) ** 2).mean()


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


def preference_loss(
    rewards_chosen: torch.Tensor,
    rewards_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    vote_share: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    center_rewards_coefficient: float = 0.0,
) -> torch.Tensor:
    """The training objective: weighted mean of ``pair_losses`` plus the reward-centering term."""
    loss = _weighted_mean(
        pair_losses(rewards_chosen, rewards_rejected, margin=margin, vote_share=vote_share), weight
    )
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * reward_centering_loss(rewards_chosen, rewards_rejected)
    return loss
