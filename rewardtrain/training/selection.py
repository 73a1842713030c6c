"""Model selection on the validation pairs: which evaluation is the best so far, and when patience is spent.
No torch: the trainer keeps the weights (``checkpoints.save_best``), this keeps the score."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Selection:
    """``metric``: "loss" (lower is better), "accuracy" (higher is better) or "last" (every evaluation
    replaces the best, so the model kept is the last step's). ``since_best`` counts the evaluations after the
    best one; with ``patience`` > 0 the run stops when it reaches it."""

    metric: str
    patience: int = 0
    best_step: int | None = None
    best_value: float | None = None
    best_epoch: float | None = None
    evaluations: int = 0
    since_best: int = 0
    stopped_early_at: int | None = None

    @property
    def keeps_weights(self) -> bool:
        """Whether the best evaluation's weights must be kept apart (not for "last")."""
        return self.metric != "last"

    @property
    def patience_spent(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def consider(self, step: int, epoch: float, report: dict[str, Any]) -> bool:
        """Records an evaluation (``report`` has ``loss`` and ``accuracy``); True when it is the new best.
        A metric the report cannot define (None) never improves on a best."""
        value = report["accuracy" if self.metric == "accuracy" else "loss"]
        improved = (
            self.metric == "last"
            or self.best_step is None
            or (
                value is not None
                and (
                    self.best_value is None
                    or (value > self.best_value if self.metric == "accuracy" else value < self.best_value)
                )
            )
        )
        self.evaluations += 1
        if improved:
            self.best_step, self.best_value, self.best_epoch, self.since_best = step, value, epoch, 0
        else:
            self.since_best += 1
        return improved

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        del values["patience"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, patience: int) -> Selection:
        return cls(**values, patience=patience)
