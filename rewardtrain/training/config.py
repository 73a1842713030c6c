"""Hyperparameters of a reward-model training run, validated, with defaults.

No torch here: the web process validates a run's hyperparameters with this module before it queues the run,
and stores ``TrainConfig.to_dict()`` on the run row so every run can be reproduced.

    config = TrainConfig.from_dict({"base_model": "Qwen/Qwen2.5-0.5B", "learning_rate": 1e-5})
    TrainConfig.from_dict({"base_model": "x", "learning_rate": -1})
    # ConfigError: learning_rate: must be > 0 (got -1)

``TrainConfig.describe()`` lists every field with its type, default and help text, for forms and docs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rewardtrain.training.errors import ConfigError

__all__ = ["ConfigError", "TrainConfig"]


def _help(text: str, **checks: Any) -> dict[str, Any]:
    return {"help": text, **checks}


SCHEDULERS = ("linear", "cosine", "constant")
MIXED_PRECISION = ("auto", "bf16", "no")
SHARED_PREFIX = ("auto", "on", "off")
SELECTION_METRICS = ("loss", "accuracy", "last")
POOLING = ("first", "mean")
ENCODER_LAYOUTS = ("pair", "single")


@dataclass(frozen=True)
class TrainConfig:
    base_model: str = field(
        metadata=_help(
            "Where the model to train from lives: a Hugging Face model id (already in the local cache) or a "
            "local directory. A run's worker sets it from the run's installed base model or reward model."
        )
    )
    learning_rate: float = field(default=5e-5, metadata=_help("Peak AdamW learning rate.", gt=0.0, le=1.0))
    num_epochs: int = field(default=1, metadata=_help("Passes over the training pairs.", ge=1, le=100))
    batch_size: int = field(default=8, metadata=_help("Pairs per micro-batch.", ge=1, le=4096))
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("Micro-batches per optimizer step.", ge=1, le=1024)
    )
    max_length: int = field(
        default=512, metadata=_help("Most tokens in one prompt + response sequence.", ge=8, le=131072)
    )
    min_prompt_tokens: int | None = field(
        default=None,
        metadata=_help(
            "Truncation: the prompt is cut from its start down to this many tokens before any response is "
            "cut (default max_length // 4).",
            ge=1,
            le=131072,
        ),
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay.", ge=0.0, le=1.0))
    warmup_ratio: float = field(
        default=0.0, metadata=_help("Share of the steps spent warming the learning rate up.", ge=0.0, le=1.0)
    )
    lr_scheduler: str = field(default="linear", metadata=_help("Decay after warm-up.", choices=SCHEDULERS))
    max_grad_norm: float = field(
        default=1.0, metadata=_help("Gradient clipping norm; 0 turns clipping off.", ge=0.0, le=1e6)
    )
    seed: int = field(
        default=42, metadata=_help("Seed for initialisation and batch order.", ge=0, le=2**32 - 1)
    )
    use_margins: bool = field(
        default=True, metadata=_help("Use a row's 'margin' in the Bradley-Terry loss when present.")
    )
    use_soft_labels: bool = field(
        default=True,
        metadata=_help("Use a row's 'vote_share' as a soft label when present (0.5 is a tie)."),
    )
    center_rewards_coefficient: float = field(
        default=0.0,
        metadata=_help(
            "Weight of the reward-centering term mean((r_c + r_r)^2); 0.01 is typical.", ge=0.0, le=1e3
        ),
    )
    disable_dropout: bool = field(
        default=True, metadata=_help("Turn dropout off (the usual choice for reward models).")
    )
    pooling: str = field(
        default="first",
        metadata=_help(
            "What the classification head reads: the token the model's own head reads ('first': an "
            "encoder's first token, a decoder's last real token) or the mean of the final states over the "
            "sequence's real tokens ('mean'; a decoder pooled so cannot share a prompt's key/value cache).",
            choices=POOLING,
        ),
    )
    encoder_layout: str = field(
        default="pair",
        metadata=_help(
            "Encoder models: prompt and response as the tokenizer's sentence pair ('pair': a separator token "
            "between them, the response in the second segment) or as one segment ('single': text rows "
            "joined with no separator, every token in the first segment, as TRL lays them out).",
            choices=ENCODER_LAYOUTS,
        ),
    )
    shared_prefix: str = field(
        default="auto",
        metadata=_help(
            "Decoder models: run each shared prompt once and let every response reuse its key/value cache. "
            "'auto' uses it unless gradient checkpointing is on.",
            choices=SHARED_PREFIX,
        ),
    )
    deduplicate_sequences: bool = field(
        default=True,
        metadata=_help(
            "Score a prompt + response sequence once per micro-batch when several pairs share it."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Recompute activations in the backward pass to save memory.")
    )
    mixed_precision: str = field(
        default="auto",
        metadata=_help(
            "bf16 autocast, weights and loss in float32: 'auto' on CUDA devices with bf16 and on CPUs with "
            "AMX-BF16 matrix units, 'bf16' on any device, 'no' never.",
            choices=MIXED_PRECISION,
        ),
    )
    use_lora: bool = field(
        default=False, metadata=_help("Train LoRA adapters (peft) instead of all weights.")
    )
    lora_r: int = field(default=16, metadata=_help("LoRA rank.", ge=1, le=1024))
    lora_alpha: float = field(default=32.0, metadata=_help("LoRA scaling numerator.", gt=0.0, le=1e6))
    lora_dropout: float = field(default=0.0, metadata=_help("Dropout on the LoRA path.", ge=0.0, lt=1.0))
    append_eos: bool = field(
        default=True,
        metadata=_help(
            "Decoder models, plain-text rows: end each response with the EOS token (as TRL does)."
        ),
    )
    eval_steps: int = field(
        default=100,
        metadata=_help(
            "Evaluate on the validation pairs every N steps, and at the end of every epoch; 0: only at the end "
            "of every epoch. Each evaluation is a candidate for the model kept (selection_metric).",
            ge=0,
            le=10**9,
        ),
    )
    validation_share: float = field(
        default=0.1,
        metadata=_help(
            "When the export has no test split: the share of the training prompts held out, with all their "
            "pairs, as the validation split (at least one prompt).",
            gt=0.0,
            le=0.5,
        ),
    )
    validation_seed: int = field(
        default=0,
        metadata=_help(
            "Seed of the held-out validation split (apart from seed, so that the members of an ensemble and "
            "the runs of a comparison share one split).",
            ge=0,
            le=2**32 - 1,
        ),
    )
    selection_metric: str = field(
        default="loss",
        metadata=_help(
            "Which evaluation's model is kept: the lowest validation loss, the highest validation accuracy, "
            "or 'last' (the model of the last step, no selection).",
            choices=SELECTION_METRICS,
        ),
    )
    early_stopping_patience: int = field(
        default=0,
        metadata=_help(
            "Stop when this many evaluations in a row did not improve on the best one; 0: never stop early.",
            ge=0,
            le=10**6,
        ),
    )
    calibrate: bool = field(
        default=True,
        metadata=_help(
            "Fit a temperature on the validation pairs so that the model's preference probabilities are "
            "calibrated; scoring divides reward differences by it."
        ),
    )
    ensemble_size: int = field(
        default=1,
        metadata=_help(
            "Members trained with seeds seed, seed + 1, ... on the same split; scores are their mean and "
            "their spread is the score's uncertainty.",
            ge=1,
            le=16,
        ),
    )
    save_steps: int = field(
        default=100, metadata=_help("Write a resumable checkpoint every N steps; 0: never.", ge=0, le=10**9)
    )
    save_total_limit: int = field(default=2, metadata=_help("Checkpoints kept (the newest).", ge=1, le=1000))
    eval_batch_size: int = field(default=32, metadata=_help("Pairs per evaluation batch.", ge=1, le=4096))
    chunk_overhead_tokens: int = field(
        default=256,
        metadata=_help(
            "Padding trade-off: a micro-batch's sequences are split into length-sorted chunks when that saves "
            "more than this many padded tokens per extra chunk. Larger on GPUs.",
            ge=0,
            le=10**9,
        ),
    )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from JSON-like values; raise ConfigError naming the field on unknown keys, wrong
        types and out-of-range values."""
        if not isinstance(values, dict):
            raise ConfigError("hyperparameters", f"must be an object, got {type(values).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        errors: dict[str, str] = {}
        for key in values:
            if key not in known:
                errors[str(key)] = "unknown hyperparameter"
        converted: dict[str, Any] = {}
        for name, spec in known.items():
            if name not in values:
                if spec.default is dataclasses.MISSING:
                    errors[name] = "is required"
                continue
            try:
                converted[name] = _check(name, values[name], spec)
            except ValueError as error:
                errors[name] = str(error)
        if not errors:
            min_prompt = converted.get("min_prompt_tokens")
            max_length = converted.get("max_length", known["max_length"].default)
            if min_prompt is not None and min_prompt >= max_length:
                errors["min_prompt_tokens"] = f"must be < max_length ({max_length}), got {min_prompt}"
            metric = converted.get("selection_metric", known["selection_metric"].default)
            if converted.get("early_stopping_patience") and metric == "last":
                errors["early_stopping_patience"] = "needs selection_metric loss or accuracy (not 'last')"
        if errors:
            first = next(iter(errors))
            raise ConfigError(first, errors[first], errors)
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Every field: name, type, default (None when required), required, help, and its checks."""
        described = []
        for spec in dataclasses.fields(cls):
            required = spec.default is dataclasses.MISSING
            described.append(
                {
                    "name": spec.name,
                    "type": str(spec.type),
                    "default": None if required else spec.default,
                    "required": required,
                    **dict(spec.metadata),
                }
            )
        return described

    @property
    def prompt_floor(self) -> int:
        """Tokens of prompt kept before responses are cut."""
        return self.min_prompt_tokens if self.min_prompt_tokens is not None else max(1, self.max_length // 4)

    def encoding(self) -> dict[str, Any]:
        """``build_pair_dataset``'s settings: how a (prompt, response) becomes tokens. Saved with the model, so
        that scoring encodes a response exactly as training did."""
        return {
            "max_length": self.max_length,
            "prompt_floor": self.prompt_floor,
            "append_eos": self.append_eos,
            "encoder_layout": self.encoder_layout,
        }


def _check(name: str, value: Any, spec: dataclasses.Field) -> Any:
    declared = str(spec.type)
    optional = declared.endswith("| None")
    if value is None:
        if optional:
            return None
        raise ValueError("must not be null")
    base = declared.removesuffix(" | None")
    if base == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ValueError(f"must be an integer, got {value!r}")
        value = int(value)
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
    elif base == "str":
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        if name == "base_model" and not value.strip():
            raise ValueError("must not be empty")
    checks = spec.metadata
    if "choices" in checks and value not in checks["choices"]:
        raise ValueError(f"must be one of {', '.join(checks['choices'])}, got {value!r}")
    for key, test, words in (
        ("gt", lambda v, bound: v > bound, "> {}"),
        ("ge", lambda v, bound: v >= bound, ">= {}"),
        ("lt", lambda v, bound: v < bound, "< {}"),
        ("le", lambda v, bound: v <= bound, "<= {}"),
    ):
        if key in checks and not test(value, checks[key]):
            raise ValueError(f"must be {words.format(checks[key])} (got {value!r})")
    return value
