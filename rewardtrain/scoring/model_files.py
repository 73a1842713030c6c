"""Reward models on a worker's own disk: fetched from the artifacts store on first use and kept in
``MODEL_CACHE_DIR`` under their content hash, the least recently used removed once the folder passes
``MODEL_CACHE_MAX_BYTES``. With a local artifacts store the stored folder is used as it is.

Several processes of one machine share the folder: a model is fetched into a folder of the fetching
process's own and renamed into place, so a reader never sees half a model, and two processes fetching the
same model at once both end up with one complete copy. No torch here."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from palate.storage import ARTIFACTS, content_hash, store_download_directory, store_local_path

FETCHING = ".fetching-"


class ModelFetchError(Exception):
    """The stored model could not be fetched whole (missing, or not the files its hash names)."""


def model_directory(*, path: str, content_hash_expected: str = "") -> Path:
    """A folder on this machine holding the reward model stored at ``path`` (``RewardModel.path``), which
    ``AutoModelForSequenceClassification.from_pretrained`` loads. Fetched on a miss, checked against
    ``content_hash_expected`` when given (a model recorded before hashes is cached by its path)."""
    local = store_local_path(ARTIFACTS, path)
    if local is not None:
        return local
    cache = Path(settings.MODEL_CACHE_DIR)
    key = content_hash_expected or "path-" + hashlib.sha256(path.encode()).hexdigest()
    folder = cache / key
    if folder.is_dir():
        os.utime(folder)  # most recently used
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    fetching = Path(tempfile.mkdtemp(prefix=f"{FETCHING}{os.getpid()}-", dir=cache))
    try:
        digests = store_download_directory(ARTIFACTS, path, fetching)
        if not digests:
            raise ModelFetchError(f"the artifacts store has no model at {path}")
        if content_hash_expected and content_hash(digests) != content_hash_expected:
            raise ModelFetchError(f"the model fetched from {path} does not match its recorded content hash")
        try:
            fetching.rename(folder)
        except OSError:  # another process put the same model in place first
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(fetching, ignore_errors=True)
    model_cache_trim(keep=folder)
    return folder


def _size(folder: Path) -> int:
    return sum(item.stat().st_size for item in folder.rglob("*") if item.is_file())


def model_cache_trim(*, keep: Path | None = None) -> list[Path]:
    """Removes the least recently used models until the cache holds at most ``MODEL_CACHE_MAX_BYTES``
    (never ``keep``, the one just used); returns what it removed."""
    cache = Path(settings.MODEL_CACHE_DIR)
    if not cache.is_dir():
        return []
    models = [item for item in cache.iterdir() if item.is_dir() and not item.name.startswith(FETCHING)]
    sizes = {model: _size(model) for model in models}
    total, limit = sum(sizes.values()), int(settings.MODEL_CACHE_MAX_BYTES)
    removed = []
    for model in sorted(models, key=lambda item: item.stat().st_mtime):
        if total <= limit:
            break
        if model == keep:
            continue
        shutil.rmtree(model, ignore_errors=True)
        total -= sizes[model]
        removed.append(model)
    return removed
