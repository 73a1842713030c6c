"""A training run's files in the artifacts store, so that any GPU worker can run any attempt.

An attempt trains in a scratch folder of its own on the worker's disk (``palate.storage.scratch_directory``)
and mirrors it into the store as it goes:

- **Checkpoints.** Each complete checkpoint the trainer writes (``checkpoints/step-N/``) is uploaded to
  ``runs/<id>/checkpoints/step-N/``, its state file last: a stored checkpoint without it is incomplete and
  never resumed from (and removed when the run ends). Checkpoints the trainer pruned locally are pruned in
  the store too. An attempt on another worker downloads the newest complete one and continues from it.
- **The model.** The final Hugging Face directory goes to ``runs/<id>/model/``, with the sha256 of its files
  (``palate.storage.content_hash``) recorded on the reward model: workers cache fetched models under it.

No torch here: the web process may import this module.
"""

from __future__ import annotations

import logging
from pathlib import Path

from palate.storage import (
    ARTIFACTS,
    content_hash,
    store_delete,
    store_download_directory,
    store_list,
    store_upload_directory,
)

logger = logging.getLogger(__name__)

# The trainer's own names (rewardtrain.training.trainer): the checkpoint's state file is written last.
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
MODEL_FOLDER = "model"


def run_prefix(run_id: int) -> str:
    return f"runs/{run_id}/"


def run_model_key(run_id: int) -> str:
    """Where the run's reward model lives in the artifacts store (``RewardModel.path``)."""
    return f"runs/{run_id}/{MODEL_FOLDER}"


def _checkpoint_prefix(run_id: int, step: int) -> str:
    return f"{run_prefix(run_id)}{CHECKPOINTS}/step-{step}/"


def _local_steps(scratch: Path) -> dict[int, bool]:
    """The scratch folder's checkpoints: {step: complete}."""
    root = scratch / CHECKPOINTS
    if not root.is_dir():
        return {}
    return {
        int(path.name[5:]): (path / STATE_FILE).is_file()
        for path in root.glob("step-*")
        if path.name[5:].isdigit()
    }


def checkpoints_stored(*, run_id: int) -> dict[int, bool]:
    """The run's checkpoints in the store: {step: complete}."""
    steps: dict[int, bool] = {}
    for name in store_list(ARTIFACTS, f"{run_prefix(run_id)}{CHECKPOINTS}/"):
        folder, _, file = name.partition("/")
        if folder.startswith("step-") and folder[5:].isdigit():
            step = int(folder[5:])
            steps[step] = steps.get(step, False) or file == STATE_FILE
    return steps


def checkpoint_fetch(*, run_id: int, scratch: Path) -> Path | None:
    """Downloads the run's newest complete stored checkpoint into ``scratch/checkpoints/step-N`` and returns
    that folder, or None when the store has none."""
    complete = [step for step, done in checkpoints_stored(run_id=run_id).items() if done]
    if not complete:
        return None
    step = max(complete)
    local = scratch / CHECKPOINTS / f"step-{step}"
    store_download_directory(ARTIFACTS, _checkpoint_prefix(run_id, step), local)
    return local


def checkpoint_key(*, run_id: int, local: str | Path | None) -> str:
    """The stored name of a local checkpoint folder of the run, or "none"."""
    if not local:
        return "none"
    return _checkpoint_prefix(run_id, int(Path(local).name.removeprefix("step-")))


class CheckpointMirror:
    """Uploads the scratch folder's newest complete checkpoint once the trainer wrote it (``sync``, called
    after every reported step and when training returns) and prunes the stored ones the trainer pruned."""

    def __init__(self, *, run_id: int, scratch: Path) -> None:
        self.run_id, self.scratch = run_id, scratch
        self.uploaded = max(_local_steps(scratch), default=0)  # a fetched checkpoint is already stored

    def sync(self) -> None:
        local = _local_steps(self.scratch)
        complete = [step for step, done in local.items() if done]
        newest = max(complete, default=0)
        if newest <= self.uploaded:
            return
        folder = self.scratch / CHECKPOINTS / f"step-{newest}"
        store_upload_directory(ARTIFACTS, folder, _checkpoint_prefix(self.run_id, newest), last=STATE_FILE)
        self.uploaded = newest
        for step in checkpoints_stored(run_id=self.run_id):
            if step not in local:
                store_delete(ARTIFACTS, _checkpoint_prefix(self.run_id, step))


def run_model_upload(*, run_id: int, local: Path) -> tuple[str, str]:
    """Uploads the run's model directory; returns its stored name and content hash."""
    key = run_model_key(run_id)
    store_delete(ARTIFACTS, key + "/")  # an earlier attempt's, cut short
    digests = store_upload_directory(ARTIFACTS, local, key + "/")
    return key, content_hash(digests)


def run_temporary_files(*, run_id: int) -> list[tuple[str, str]]:
    """The run's stored checkpoints that an attempt left incomplete (its worker died while uploading)."""
    return [
        (ARTIFACTS, _checkpoint_prefix(run_id, step))
        for step, done in checkpoints_stored(run_id=run_id).items()
        if not done
    ]
