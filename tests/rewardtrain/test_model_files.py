"""Reward models on a worker's disk (rewardtrain/scoring/model_files.py): fetched from the artifacts store
(a real S3-compatible server) into a cache keyed by content hash, bounded in size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from palate.storage import ARTIFACTS, store_delete
from rewardtrain.scoring.model_files import ModelFetchError, model_directory
from rewardtrain.services.run_artifacts import run_model_upload
from tests.factories import ProjectFactory
from tests.rewardtrain.scoring_data import reward_model_row


def _model_folder(tmp_path: Path, name: str, size: int) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(os.urandom(size))
    return folder


@pytest.fixture
def cache(settings, tmp_path) -> Path:
    settings.MODEL_CACHE_DIR = tmp_path / "model-cache"
    return settings.MODEL_CACHE_DIR


def test_a_model_is_fetched_once_under_its_content_hash_and_served_from_the_cache_after(
    s3_stores, cache, tmp_path
):
    path, digest = run_model_upload(run_id=1, local=_model_folder(tmp_path, "model", 5000))

    fetched = model_directory(path=path, content_hash_expected=digest)
    store_delete(ARTIFACTS, path + "/")  # from now on only the cache has it
    again = model_directory(path=path, content_hash_expected=digest)

    assert fetched == again == cache / digest
    assert (fetched / "model.safetensors").read_bytes() == (
        tmp_path / "model" / "model.safetensors"
    ).read_bytes()
    assert sorted(item.name for item in cache.iterdir()) == [digest]


def test_a_model_that_does_not_match_its_hash_or_is_missing_is_refused_and_leaves_nothing(
    s3_stores, cache, tmp_path
):
    path, digest = run_model_upload(run_id=2, local=_model_folder(tmp_path, "model", 100))

    with pytest.raises(ModelFetchError, match="does not match its recorded content hash"):
        model_directory(path=path, content_hash_expected="0" * 64)
    with pytest.raises(ModelFetchError, match="has no model at runs/3/model"):
        model_directory(path="runs/3/model", content_hash_expected=digest)

    assert list(cache.iterdir()) == []


def test_the_least_recently_used_models_go_once_the_cache_passes_its_size(
    s3_stores, cache, settings, tmp_path
):
    settings.MODEL_CACHE_MAX_BYTES = 25_000
    stored = [
        run_model_upload(run_id=run, local=_model_folder(tmp_path, f"m{run}", 10_000)) for run in (1, 2, 3)
    ]
    first, second, third = (
        model_directory(path=path, content_hash_expected=digest) for path, digest in stored
    )

    assert not first.exists() and second.is_dir() and third.is_dir()
    model_directory(path=stored[1][0], content_hash_expected=stored[1][1])  # used again: now the newest
    model_directory(path=stored[0][0], content_hash_expected=stored[0][1])
    assert first.is_dir() and second.is_dir() and not third.exists()


def test_a_local_store_s_model_is_used_where_it_lies(cache, settings, tmp_path):
    path, digest = run_model_upload(run_id=4, local=_model_folder(tmp_path, "model", 10))

    assert model_directory(path=path, content_hash_expected=digest) == Path(settings.ARTIFACT_ROOT) / path
    assert not cache.exists()


@pytest.mark.django_db
def test_a_worker_scores_with_a_model_it_fetched_as_it_scores_with_the_original(
    s3_stores, cache, tiny_reward_model, settings
):
    from transformers import AutoModelForSequenceClassification

    from rewardtrain.scoring.engine import ScoringRequest, load_model, score_requests
    from rewardtrain.scoring.worker import model_cache
    from rewardtrain.services.scoring import scores_compute

    model_cache().clear()
    model = reward_model_row(ProjectFactory(), tiny_reward_model)
    responses = ["a short answer", "a much longer answer with more words in it"]

    scored = scores_compute(reward_model_id=model.pk, path=model.path, prompt="Q?", responses=responses)

    original = score_requests(
        load_model(tiny_reward_model, device="cpu"), [ScoringRequest("Q?", tuple(responses))]
    )
    np.testing.assert_allclose(scored["raw"], original[0], rtol=1e-5)
    assert s3_stores.keys(model.path) and sorted(item.name for item in cache.iterdir()) == [
        model.content_hash
    ]
    assert (
        AutoModelForSequenceClassification.from_pretrained(cache / model.content_hash).config.reward_std
        == 2.0
    )
    model_cache().clear()
