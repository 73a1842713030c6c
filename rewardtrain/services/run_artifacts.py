"""A training run's files in the artifacts store, so that any GPU worker can run any attempt.

An attempt trains in a scratch folder of its own on the worker's disk (``palate.scratch.scratch_directory``)
and mirrors it into the store as it goes:

- **Checkpoints.** Each complete checkpoint the trainer writes (``checkpoints/step-N/``) is uploaded to
  ``runs/<id>/checkpoints/step-N/``, its state file last: a stored checkpoint without it is incomplete and
  never resumed from (and removed when the run ends). Checkpoints the trainer pruned locally are pruned in
  the store too. An attempt on another worker downloads the newest complete one and continues from it.
- **The model.** The final Hugging Face directory goes to ``runs/<id>/model/``, with the sha256 of its files
  (``palate.storage.content_hash``) recorded on the reward model: workers cache fetched models under it.
  An ensemble's model folder holds its other members under ``members/`` (``training.artifacts.save_ensemble``),
  so the hash covers every member.
- **Best weights.** A checkpoint holds the best evaluation's weights as they stood at its step
  (``best.safetensors``, ``training.checkpoints``), so the one checkpoint downloaded is all that model
  selection needs to go on; ``best/`` itself stays in the scratch folder.
- **Ensemble members.** An ensemble's member i trains in ``members/member-i/`` of the scratch folder; its
  checkpoints are mirrored under ``runs/<id>/members/member-i/checkpoints/`` as above, and once it is
  finished its model folder and then its ``result.json`` (last: the member is stored whole once it is
  there). An attempt on another worker downloads the finished members and the newest complete checkpoint of
  the first unfinished one, and goes on with it.

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
    store_read_bytes,
    store_upload_directory,
    store_write_bytes,
)

logger = logging.getLogger(__name__)

# The trainer's own names (rewardtrain.training): a checkpoint's state file and a member's result are
# written last.
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
MODEL_FOLDER = "model"
MEMBERS = "members"
MEMBER_RESULT = "result.json"


def run_prefix(run_id: int) -> str:
    return f"runs/{run_id}/"


def run_model_key(run_id: int) -> str:
    """Where the run's reward model lives in the artifacts store (``RewardModel.path``)."""
    return f"runs/{run_id}/{MODEL_FOLDER}"


def trial_prefix(run_id: int, number: int) -> str:
    """A search trial's folder in the store: its checkpoints and model, as a run's."""
    return f"{run_prefix(run_id)}trials/{number}/"


def _checkpoint_prefix(root: str, step: int, unit: str = "") -> str:
    """``root`` is a run's (or a trial's) folder; ``unit`` "" for its own checkpoints, ``members/member-i/``
    for an ensemble member's."""
    return f"{root}{unit}{CHECKPOINTS}/step-{step}/"


def _step(name: str) -> int | None:
    return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else None


def _local_steps(folder: Path) -> dict[int, bool]:
    """A scratch folder's (or a member folder's) checkpoints: {step: complete}."""
    root = folder / CHECKPOINTS
    if not root.is_dir():
        return {}
    return {
        step: (path / STATE_FILE).is_file()
        for path in root.iterdir()
        if (step := _step(path.name)) is not None
    }


def _stored_steps(names: list[str]) -> dict[int, bool]:
    """{step: complete} from names relative to a ``checkpoints/`` folder."""
    steps: dict[int, bool] = {}
    for name in names:
        folder, _, file = name.partition("/")
        if (step := _step(folder)) is not None:
            steps[step] = steps.get(step, False) or file == STATE_FILE
    return steps


def checkpoints_stored(*, run_id: int, unit: str = "", root: str = "") -> dict[int, bool]:
    """The run's (or a member's, or under ``root``: a trial's) checkpoints in the store: {step: complete}."""
    return _stored_steps(store_list(ARTIFACTS, f"{root or run_prefix(run_id)}{unit}{CHECKPOINTS}/"))


def _members_stored(root: str) -> dict[int, list[str]]:
    """The ensemble members' stored files: {index: names relative to ``members/member-i/``}."""
    members: dict[int, list[str]] = {}
    for name in store_list(ARTIFACTS, f"{root}{MEMBERS}/"):
        folder, _, rest = name.partition("/")
        if folder.startswith("member-") and folder[7:].isdigit():
            members.setdefault(int(folder[7:]), []).append(rest)
    return members


def _member_unit(index: int) -> str:
    return f"{MEMBERS}/member-{index}/"


def _fetch_newest(root: str, steps: dict[int, bool], unit: str, folder: Path) -> Path | None:
    complete = [step for step, done in steps.items() if done]
    if not complete:
        return None
    step = max(complete)
    local = folder / CHECKPOINTS / f"step-{step}"
    store_download_directory(ARTIFACTS, _checkpoint_prefix(root, step, unit), local)
    return local


def checkpoint_fetch(*, run_id: int, scratch: Path, root: str = "") -> Path | None:
    """Downloads what an earlier attempt stored (under ``root``, the run's folder unless given) into
    ``scratch``: the newest complete checkpoint (returned, or None when the store has none) and, for an
    ensemble, its finished members (model and ``result.json``) and the newest complete checkpoint of the
    first unfinished one."""
    root = root or run_prefix(run_id)
    for index, names in sorted(_members_stored(root).items()):
        unit, folder = _member_unit(index), scratch / _member_unit(index)
        if MEMBER_RESULT in names:
            store_download_directory(ARTIFACTS, f"{root}{unit}{MODEL_FOLDER}/", folder / MODEL_FOLDER)
            (folder / MEMBER_RESULT).write_bytes(store_read_bytes(ARTIFACTS, f"{root}{unit}{MEMBER_RESULT}"))
            continue
        checkpoints = [name[len(CHECKPOINTS) + 1 :] for name in names if name.startswith(f"{CHECKPOINTS}/")]
        _fetch_newest(root, _stored_steps(checkpoints), unit, folder)
        break
    return _fetch_newest(root, checkpoints_stored(run_id=run_id, root=root), "", scratch)


def checkpoint_key(*, run_id: int, scratch: Path, local: str | Path | None, root: str = "") -> str:
    """The stored name of a checkpoint folder of the scratch folder (a member's too), or "none"."""
    if not local:
        return "none"
    return f"{root or run_prefix(run_id)}{Path(local).relative_to(scratch).as_posix()}/"


class CheckpointMirror:
    """Uploads each newest complete checkpoint of the scratch folder (and of its ensemble members) once the
    trainer wrote it, and each finished member (``sync``, called after every reported step and when
    training returns), and prunes the stored checkpoints the trainer pruned."""

    def __init__(self, *, run_id: int, scratch: Path, root: str = "") -> None:
        self.run_id, self.scratch, self.root = run_id, scratch, root or run_prefix(run_id)
        # What is in the scratch folder now was fetched from the store: it is stored already.
        self.uploaded = {unit: max(_local_steps(scratch / unit), default=0) for unit in self._units()}
        self.finished = {unit for unit in self._units() if (scratch / unit / MEMBER_RESULT).is_file()}

    def _units(self) -> list[str]:
        members = self.scratch / MEMBERS
        found = sorted(path.name for path in members.iterdir() if path.is_dir()) if members.is_dir() else []
        return ["", *(f"{MEMBERS}/{name}/" for name in found if name.startswith("member-"))]

    def sync(self) -> None:
        for unit in self._units():
            self._sync_checkpoints(unit)
            if unit and unit not in self.finished and (self.scratch / unit / MEMBER_RESULT).is_file():
                self._upload_member(unit)

    def _sync_checkpoints(self, unit: str) -> None:
        local = _local_steps(self.scratch / unit)
        newest = max((step for step, done in local.items() if done), default=0)
        if newest <= self.uploaded.get(unit, 0):
            return
        folder = self.scratch / unit / CHECKPOINTS / f"step-{newest}"
        prefix = _checkpoint_prefix(self.root, newest, unit)
        store_upload_directory(ARTIFACTS, folder, prefix, last=STATE_FILE)
        self.uploaded[unit] = newest
        for step in checkpoints_stored(run_id=self.run_id, unit=unit, root=self.root):
            if step not in local:
                store_delete(ARTIFACTS, _checkpoint_prefix(self.root, step, unit))

    def _upload_member(self, unit: str) -> None:
        folder, prefix = self.scratch / unit, f"{self.root}{unit}"
        store_delete(ARTIFACTS, f"{prefix}{MODEL_FOLDER}/")  # an earlier attempt's, cut short
        store_upload_directory(ARTIFACTS, folder / MODEL_FOLDER, f"{prefix}{MODEL_FOLDER}/")
        store_write_bytes(ARTIFACTS, f"{prefix}{MEMBER_RESULT}", (folder / MEMBER_RESULT).read_bytes())
        self.finished.add(unit)


def run_model_upload(*, run_id: int, local: Path, root: str = "") -> tuple[str, str]:
    """Uploads the run's (or under ``root``, a trial's) model directory (an ensemble's with its members);
    returns its stored name and content hash."""
    key = f"{root}{MODEL_FOLDER}" if root else run_model_key(run_id)
    store_delete(ARTIFACTS, key + "/")  # an earlier attempt's, cut short
    digests = store_upload_directory(ARTIFACTS, local, key + "/")
    return key, content_hash(digests)


def run_temporary_files(*, run_id: int) -> list[tuple[str, str]]:
    """The run's stored files that an attempt left incomplete (its worker died while uploading them): its
    own and its members' checkpoints without their state file, and a member's model without its result."""
    root = run_prefix(run_id)
    files = [
        (ARTIFACTS, _checkpoint_prefix(root, step))
        for step, done in checkpoints_stored(run_id=run_id).items()
        if not done
    ]
    for index, names in sorted(_members_stored(root).items()):
        unit = _member_unit(index)
        checkpoints = [name[len(CHECKPOINTS) + 1 :] for name in names if name.startswith(f"{CHECKPOINTS}/")]
        files += [
            (ARTIFACTS, _checkpoint_prefix(root, step, unit))
            for step, done in _stored_steps(checkpoints).items()
            if not done
        ]
        if MEMBER_RESULT not in names and any(name.startswith(f"{MODEL_FOLDER}/") for name in names):
            files.append((ARTIFACTS, f"{root}{unit}{MODEL_FOLDER}/"))
    return files
