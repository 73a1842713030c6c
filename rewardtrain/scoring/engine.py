"""Loaded reward models and the scoring of (prompt, responses) requests.

A request is a prompt (text, or a conversation as ``[{"role", "content"}, ...]``) and its responses (text).
Each response is scored alone, as the sequence training saw for it: ``build_pair_dataset`` gets the row
``{"prompt": prompt, "chosen": response, "rejected": response}`` with the run's max length, prompt floor,
closing-token setting and encoder layout (stored in the model's config, with its pooling), and training too
fits every (prompt, response) alone (``truncate_sequence``). Identical sequences across requests are
interned and scored once.

An ensemble (``ensemble_size`` > 1; ``training.ensemble``) is one directory: the first member at its top, the
others under ``members/``, listed in ``config.palate.ensemble`` with each member's offset (its mean reward on
the validation pairs, subtracted so that members' arbitrary zero points do not count as disagreement). A
response's score is the mean of its members' centred rewards and its uncertainty their standard deviation;
a single model has no uncertainty (None). Preference probabilities divide reward differences by the model's
calibrated ``temperature`` (``config.palate.temperature``, 1 for models saved before it).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class ScoringRequest:
    prompt: str | list[dict[str, str]]
    responses: tuple[str, ...]


@dataclass
class LoadedModel:
    reward_model: Any  # rewardtrain.training.model.RewardModel
    max_length: int
    reward_mean: float | None
    reward_std: float | None
    encoding: dict[str, Any]  # the run's TrainConfig.encoding()
    temperature: float = 1.0
    members: list[Any] = field(default_factory=list)  # an ensemble's other members (RewardModel)
    offsets: tuple[float, ...] = (0.0,)  # subtracted from each member's rewards, the first member's first

    @property
    def ensemble_size(self) -> int:
        return 1 + len(self.members)

    def normalise(self, raw: np.ndarray) -> np.ndarray | None:
        """(raw - mean) / std with the reward statistics of the training run's held-out pairs, or None when
        the run stored none (no evaluation split)."""
        return normalise(raw, self.reward_mean, self.reward_std)

    def combine(self, member_rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The score (members' mean) and uncertainty (their standard deviation; None for a single model) of
        each response, from ``score_members``' (members, responses) array."""
        from rewardtrain.stats import ensemble_scores

        return ensemble_scores(member_rewards)

    def win_probabilities(self, raw: np.ndarray) -> np.ndarray | None:
        """Each response's mean calibrated probability of being preferred to each other one of its request."""
        from rewardtrain.stats import win_probabilities

        return win_probabilities(raw, self.temperature)


def normalise(raw: np.ndarray, mean: float | None, std: float | None) -> np.ndarray | None:
    from rewardtrain.stats import normalise_scores

    return normalise_scores(raw, mean, std)


def load_model(path: str, *, device: str = "auto") -> LoadedModel:
    """Load a saved reward model directory (``rewardtrain.training.artifacts.save_reward_model``) for
    inference. Raises ``rewardtrain.training.errors.ModelLoadError`` when it cannot be loaded."""

    from rewardtrain.training.model import load_reward_model, resolve_device

    palate = _palate_settings(path)
    # Models saved before pooling was a setting read the first token (encoders) or the last (decoders).
    pooling = palate.get("pooling", "first")
    # bf16 only on a GPU: on a CPU, bf16 (AMX) scores shift with the batch a response lands in, and an API
    # must give the same score to the same response whoever else asked at the same moment.
    resolved = resolve_device(device)
    reward_model = load_reward_model(
        path, device=resolved, mixed_precision="auto" if resolved.type == "cuda" else "no", pooling=pooling
    )
    reward_model.model.eval()
    config = reward_model.core.config
    max_length = palate.get("max_length") or min(
        DEFAULT_MAX_LENGTH, reward_model.max_positions or DEFAULT_MAX_LENGTH
    )
    mean, std = getattr(config, "reward_mean", None), getattr(config, "reward_std", None)
    ensemble = palate.get("ensemble") or {}
    members = []
    for member in ensemble.get("members", [])[1:]:
        loaded_member = load_reward_model(
            str(Path(path) / member),
            device=resolved,
            mixed_precision="auto" if resolved.type == "cuda" else "no",
            pooling=pooling,
        )
        loaded_member.model.eval()
        members.append(loaded_member)
    if ensemble:
        mean, std = ensemble.get("reward_mean"), ensemble.get("reward_std")
    # No global torch.set_grad_enabled(False) here: it would switch gradients off for everything else the
    # calling thread does later (training in the same process). score_sequences runs under no_grad.
    return LoadedModel(
        reward_model=reward_model,
        max_length=int(max_length),
        # Models saved before the encoding was stored: build_pair_dataset's defaults.
        encoding={
            "max_length": int(max_length),
            "prompt_floor": palate.get("prompt_floor"),
            "append_eos": palate.get("append_eos", True),
            "encoder_layout": palate.get("encoder_layout", "pair"),
        },
        reward_mean=float(mean) if mean is not None else None,
        reward_std=float(std) if std is not None else None,
        temperature=float(palate.get("temperature") or 1.0),
        members=members,
        offsets=tuple(float(offset) for offset in ensemble.get("offsets", [0.0])),
    )


def _palate_settings(path: str) -> dict[str, Any]:
    """The ``palate`` block of a saved model's ``config.json`` (empty for a model saved elsewhere or a path
    that is not a model directory, which ``load_reward_model`` then refuses), read before loading, as the
    pooling decides how the model is built."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return (config.get("palate") if isinstance(config, dict) else None) or {}


def _row(prompt: str | list[dict[str, str]], response: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": response, "rejected": response}


def encode_requests(loaded: LoadedModel, requests: Sequence[ScoringRequest]):
    """Every response of every request as a ``PairDataset`` row (chosen and rejected alike), encoded as
    training encoded it."""
    from rewardtrain.training.data import build_pair_dataset

    rows = [_row(request.prompt, response) for request in requests for response in request.responses]
    model = loaded.reward_model
    return build_pair_dataset(rows, model.tokenizer, kind=model.kind, **loaded.encoding)


def score_members(
    loaded: LoadedModel, requests: Sequence[ScoringRequest], *, sequences_per_batch: int = 64
) -> list[np.ndarray]:
    """Each member's centred rewards (float64, shape (members, responses)) of every response of every
    request, in one length-sorted pass per member over all of them."""
    from rewardtrain.training.model import score_sequences

    members = [loaded.reward_model, *loaded.members]
    if not any(request.responses for request in requests):
        return [np.zeros((len(members), 0)) for _ in requests]
    dataset = encode_requests(loaded, requests)
    rewards = np.stack(
        [
            score_sequences(member, dataset, sequences_per_batch=sequences_per_batch)[dataset.chosen] - offset
            for member, offset in zip(members, loaded.offsets, strict=True)
        ]
    )
    results, start = [], 0
    for request in requests:
        results.append(rewards[:, start : start + len(request.responses)])
        start += len(request.responses)
    return results


def score_requests(
    loaded: LoadedModel, requests: Sequence[ScoringRequest], *, sequences_per_batch: int = 64
) -> list[np.ndarray]:
    """Raw rewards (float64) of every response of every request (an ensemble's: the members' mean)."""
    return [
        loaded.combine(rewards)[0]
        for rewards in score_members(loaded, requests, sequences_per_batch=sequences_per_batch)
    ]


class ModelCache:
    """At most ``capacity`` loaded models per process, least recently used evicted first. A model is keyed by
    (reward model id, path): a path never changes for an id, but keying on both makes a re-saved artifact a
    new entry. Loading happens outside the lock's fast path but only once per key."""

    def __init__(self, capacity: int = 2, loader: Callable[[str], LoadedModel] | None = None) -> None:
        self.capacity = max(1, capacity)
        self._loader = loader
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, model_id: int, path: str, *, device: str = "auto") -> LoadedModel:
        key = (model_id, path)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
            loaded = self._loader(path) if self._loader else load_model(path, device=device)
            self.loads += 1
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded

    def __contains__(self, key: tuple[int, str]) -> bool:
        return key in self._models

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
