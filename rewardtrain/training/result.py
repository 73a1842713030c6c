"""What ``train`` returns: the run's result and the timing figures made from its counters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainResult:
    status: str  # "completed" or "cancelled"
    global_step: int
    total_steps: int
    epoch: float
    device: str
    artifact_dir: str | None = None
    checkpoint_dir: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    # metric, best_step, best_value, best_epoch, evaluations, since_best, stopped_early_at
    selection: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    # The kept model's rewards of each validation pair's chosen and rejected response, with the pairs' lengths,
    # vote shares, margins and agreement (an ensemble combines the rewards and evaluates them with the rest).
    validation_rewards: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_timing(counters: dict[str, Any], *, shared_prefix: Any) -> dict[str, Any]:
    """Throughput figures from the trainer's counters (seconds, pairs, tokens, sequences)."""
    seconds = counters["train_seconds"]
    return {
        "train_seconds": seconds,
        # CPU time of the whole process (every thread) during the steps: steadier than wall time on a
        # machine that other work shares.
        "train_cpu_seconds": counters["train_cpu_seconds"],
        # Evaluations during training (scoring the validation pairs, keeping the best weights), apart from
        # train_seconds, which pairs_per_second divides by.
        "eval_seconds": counters["eval_seconds"],
        "pairs_per_second": counters["pairs"] / seconds if seconds else None,
        "tokens_per_second": counters["real_tokens"] / seconds if seconds else None,
        "padding_share": 1 - counters["real_tokens"] / counters["processed_tokens"]
        if counters["processed_tokens"]
        else None,
        "sequences_per_pair": counters["sequences"] / counters["pairs"] if counters["pairs"] else None,
        "shared_prefix": shared_prefix,
    }
