"""Hyperparameter search: the space, the budget, and Optuna's choices, on plain records. No Django, no torch.

A search run trains several trials, each with the run's hyperparameters except the searched ones, and keeps
the best by a validation metric. Optuna chooses: its TPE sampler suggests each trial's values (random for the
first few trials), and its median pruner stops a trial whose validation metric at an evaluation step is worse
than the median of the finished trials at that step.

The trials themselves are rows (``rewardtrain.models.SearchTrial``, jobs of ``palate.jobs``); whenever a
choice is needed the study is rebuilt in memory from them (``TrialRecord``), which for a few dozen trials
costs milliseconds. Optuna is imported lazily: the web process validates ``SearchConfig`` without it.

    search = SearchConfig.from_dict({"trials": 8, "space": {"learning_rate": [1e-5, 1e-4]}})
    params = trial_suggest(search, records, use_lora=False)
    trial_should_prune(search, records, current)   # True: stop it
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rewardtrain.training.config import TrainConfig
from rewardtrain.training.errors import ConfigError

__all__ = [
    "DEFAULT_SPACE",
    "SearchConfig",
    "TrialRecord",
    "trial_best",
    "trial_ranked",
    "trial_should_prune",
    "trial_suggest",
]


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: its default range and whether it is searched on a log scale."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    lora_only: bool = False


DEFAULT_SPACE = {
    dimension.name: dimension
    for dimension in (
        Dimension("learning_rate", 1e-5, 2e-4, log=True),
        Dimension("num_epochs", 1, 3, integer=True),
        Dimension("warmup_ratio", 0.0, 0.2),
        Dimension("weight_decay", 0.0, 0.1),
        Dimension("center_rewards_coefficient", 0.0, 0.05),
        Dimension("lora_r", 4, 64, log=True, integer=True, lora_only=True),
    )
}
METRICS = {"accuracy": "maximize", "loss": "minimize"}
LIMITS = {
    "trials": (1, 200),
    "parallel": (1, 64),
    "time_budget_seconds": (10, 7 * 24 * 3600),
    "seed": (0, 2**32 - 1),
    "prune_after_trials": (0, 200),
    "prune_warmup_steps": (0, 10**9),
    "ensemble_top_k": (1, 200),
}


@dataclass(frozen=True)
class SearchConfig:
    """What a search run tries and for how long. ``space`` maps each searched hyperparameter to its
    [low, high]; a name left out keeps its default range, a name given ``None`` is not searched (the run's
    hyperparameter is used). ``time_budget_seconds`` None: the run's time limit bounds it. ``ensemble_top_k``
    above 1: the best k complete trials' models become the members of one ensemble, not the best one alone."""

    trials: int = 8
    parallel: int = 2
    time_budget_seconds: int | None = None
    metric: str = "accuracy"
    seed: int = 0
    prune_after_trials: int = 2
    prune_warmup_steps: int = 0
    ensemble_top_k: int = 1
    space: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: Any) -> SearchConfig:
        """Validates the search settings; ConfigError names every bad one (``space.learning_rate``)."""
        if not isinstance(values, dict):
            raise ConfigError("search", "must be a JSON object")
        errors: dict[str, str] = {}
        known = {"trials", "parallel", "time_budget_seconds", "metric", "seed", "space"} | set(LIMITS)
        for key in values:
            if key not in known:
                errors[str(key)] = "unknown search setting"
        converted: dict[str, Any] = {}
        for name, (low, high) in LIMITS.items():
            if name not in values or (name == "time_budget_seconds" and values[name] is None):
                continue
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors[name] = f"must be a whole number from {low} to {high}, got {value!r}"
            else:
                converted[name] = value
        if "metric" in values:
            if values["metric"] not in METRICS:
                errors["metric"] = f"must be one of {', '.join(METRICS)}, got {values['metric']!r}"
            else:
                converted["metric"] = values["metric"]
        space = values.get("space", {})
        if not isinstance(space, dict):
            errors["space"] = "must be an object mapping hyperparameters to [low, high] or null"
        else:
            converted["space"] = _space(space, errors)
        trials = converted.get("trials", cls.trials)
        if converted.get("ensemble_top_k", 1) > trials and "trials" not in errors:
            errors["ensemble_top_k"] = (
                f"must not exceed the trials ({trials}), got {converted['ensemble_top_k']}"
            )
        if errors:
            first = next(iter(errors))
            raise ConfigError(first, errors[first], errors)
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "parallel": self.parallel,
            "time_budget_seconds": self.time_budget_seconds,
            "metric": self.metric,
            "seed": self.seed,
            "prune_after_trials": self.prune_after_trials,
            "prune_warmup_steps": self.prune_warmup_steps,
            "ensemble_top_k": self.ensemble_top_k,
            "space": self.space,
        }

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def dimensions(self, *, use_lora: bool) -> list[Dimension]:
        """The searched dimensions with their ranges (LoRA's rank only when LoRA is on)."""
        chosen = []
        for name, default in DEFAULT_SPACE.items():
            if default.lora_only and not use_lora:
                continue
            if name in self.space and self.space[name] is None:
                continue
            low, high = self.space.get(name) or (default.low, default.high)
            chosen.append(Dimension(name, low, high, default.log, default.integer, default.lora_only))
        return chosen


def _finite(value: Any) -> bool:
    """A JSON number a float can hold (an integer of 400 digits is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _space(space: dict[str, Any], errors: dict[str, str]) -> dict[str, list[float] | None]:
    """The space's overrides, checked against the dimension's kind and the hyperparameter's own limits."""
    checks = {spec["name"]: spec for spec in TrainConfig.describe()}
    parsed: dict[str, list[float] | None] = {}
    for name, bounds in space.items():
        where = f"space.{name}"
        dimension = DEFAULT_SPACE.get(name)
        if dimension is None:
            errors[where] = f"not searchable; choose among {', '.join(DEFAULT_SPACE)}"
            continue
        if bounds is None:
            parsed[name] = None
            continue
        if not isinstance(bounds, list) or len(bounds) != 2 or not all(_finite(b) for b in bounds):
            errors[where] = "must be [low, high] (two numbers) or null"
            continue
        low, high = bounds
        if dimension.integer and not all(float(b).is_integer() for b in bounds):
            errors[where] = f"must be whole numbers, got {bounds!r}"
            continue
        spec = checks[name]
        floor = spec.get("ge", spec.get("gt"))
        ceiling = spec.get("le", spec.get("lt"))
        if low > high:
            errors[where] = f"low must not exceed high, got {bounds!r}"
        elif (floor is not None and low < floor) or (ceiling is not None and high > ceiling):
            errors[where] = (
                f"must lie within the hyperparameter's limits [{floor}, {ceiling}], got {bounds!r}"
            )
        elif "gt" in spec and low <= spec["gt"]:
            errors[where] = f"must be > {spec['gt']}, got {bounds!r}"
        elif dimension.log and low <= 0:
            errors[where] = f"is searched on a log scale: low must be > 0, got {bounds!r}"
        else:
            parsed[name] = [int(low), int(high)] if dimension.integer else [float(low), float(high)]
    return parsed


@dataclass(frozen=True)
class TrialRecord:
    """One trial as Optuna needs it. ``state``: "queued", "running", "complete", "pruned" or "failed";
    ``intermediate`` maps a training step to the validation metric evaluated there; ``value`` is the
    final validation metric of a complete trial."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None = None
    intermediate: dict[int, float] = field(default_factory=dict)


def _distributions(search: SearchConfig, *, use_lora: bool) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    for dimension in search.dimensions(use_lora=use_lora):
        kind = IntDistribution if dimension.integer else FloatDistribution
        low, high = (
            (int(dimension.low), int(dimension.high))
            if dimension.integer
            else (dimension.low, dimension.high)
        )
        distributions[dimension.name] = kind(low, high, log=dimension.log)
    return distributions


def _study(search: SearchConfig, records: list[TrialRecord], *, use_lora: bool, sampler: Any = None) -> Any:
    """An in-memory study holding ``records`` in their order (parameters outside the space are left out)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    states = {
        "queued": TrialState.RUNNING,  # asked already: the sampler's constant liar keeps away from it
        "running": TrialState.RUNNING,
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }
    distributions = _distributions(search, use_lora=use_lora)
    study = optuna.create_study(direction=search.direction, sampler=sampler)
    for record in records:
        params = {name: value for name, value in record.params.items() if name in distributions}
        state = states[record.state]
        if state == TrialState.COMPLETE and record.value is None:
            state = TrialState.FAIL
        study.add_trial(
            create_trial(
                state=state,
                value=record.value if state == TrialState.COMPLETE else None,
                params=params,
                distributions={name: distributions[name] for name in params},
                intermediate_values={int(step): float(value) for step, value in record.intermediate.items()},
            )
        )
    return study


def trial_suggest(search: SearchConfig, records: list[TrialRecord], *, use_lora: bool) -> dict[str, Any]:
    """The next trial's values: TPE over the trials so far (random for the first third of the budget, at
    least two and at most ten trials), seeded by the search's seed and the trial's number, so a search is
    reproducible."""
    import optuna

    startup = min(10, max(2, search.trials // 3))
    sampler = optuna.samplers.TPESampler(
        seed=search.seed + len(records), n_startup_trials=startup, constant_liar=True
    )
    study = _study(
        search, sorted(records, key=lambda record: record.number), use_lora=use_lora, sampler=sampler
    )
    trial = study.ask(_distributions(search, use_lora=use_lora))
    return dict(trial.params)


def trial_should_prune(
    search: SearchConfig, records: list[TrialRecord], current: TrialRecord, *, use_lora: bool
) -> bool:
    """Whether Optuna's median pruner stops ``current`` at its latest evaluation: its metric is worse than
    the median of the complete trials' at the same step, once ``prune_after_trials`` trials are complete
    and past ``prune_warmup_steps`` steps."""
    import optuna

    if not current.intermediate:
        return False
    others = sorted((record for record in records if record.number != current.number), key=lambda r: r.number)
    running = TrialRecord(current.number, current.params, "running", None, current.intermediate)
    study = _study(search, [*others, running], use_lora=use_lora)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=search.prune_after_trials, n_warmup_steps=search.prune_warmup_steps
    )
    return bool(pruner.prune(study, study.get_trials(deepcopy=False)[-1]))


def trial_ranked(search: SearchConfig, records: list[TrialRecord]) -> list[TrialRecord]:
    """The complete trials, best value first (the earliest among equals)."""
    complete = [record for record in records if record.state == "complete" and record.value is not None]
    sign = -1.0 if search.direction == "maximize" else 1.0
    return sorted(complete, key=lambda record: (sign * record.value, record.number))


def trial_best(search: SearchConfig, records: list[TrialRecord]) -> TrialRecord | None:
    """The complete trial with the best value (the earliest among equals), or None."""
    ranked = trial_ranked(search, records)
    return ranked[0] if ranked else None
