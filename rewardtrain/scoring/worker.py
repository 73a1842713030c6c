"""The worker side of the scoring API: one model cache and one micro-batcher per process, configured from
settings when first used (so a Celery worker on a threads pool batches its concurrent tasks together)."""

from __future__ import annotations

import threading

import numpy as np
from django.conf import settings

from rewardtrain.scoring.batcher import MicroBatcher, process_batcher
from rewardtrain.scoring.engine import LoadedModel, ModelCache, ScoringRequest

_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(capacity=settings.SCORING_MODEL_CACHE_SIZE)
        return _cache


def loaded_model(*, reward_model_id: int, path: str) -> LoadedModel:
    return model_cache().get(reward_model_id, path, device=settings.PALATE_DEVICE)


def batcher() -> MicroBatcher:
    return process_batcher(
        window_seconds=settings.SCORING_BATCH_WINDOW_MS / 1000,
        max_sequences=settings.SCORING_BATCH_MAX_SEQUENCES,
    )


def score_one_request(
    *, reward_model_id: int, path: str, prompt: str | list[dict[str, str]], responses: list[str]
) -> dict[str, np.ndarray | None]:
    """The responses' raw rewards (an ensemble's mean), normalised rewards (None without stored statistics),
    uncertainty (an ensemble's spread; None for a single model) and calibrated win probabilities (None for
    one response), micro-batched with any other request this process is scoring at the same moment."""
    loaded = loaded_model(reward_model_id=reward_model_id, path=path)
    member_rewards = batcher().score(loaded, ScoringRequest(prompt, tuple(responses)))
    raw, uncertainty = loaded.combine(member_rewards)
    return {
        "raw": raw,
        "normalised": loaded.normalise(raw),
        "uncertainty": uncertainty,
        "win_probability": loaded.win_probabilities(raw),
    }
