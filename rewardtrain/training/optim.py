"""The optimizer and the learning-rate schedule of a run."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rewardtrain.training.config import TrainConfig


def adamw(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            # Biases and normalisation weights are not decayed (the usual AdamW practice).
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop; Transformers'
        # Trainer uses it by default too.
        return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.learning_rate)


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step: linear warm-up over ``warmup_ratio`` of the steps, then the
    configured decay over the rest."""
    warmup = math.ceil(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.lr_scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return factor
