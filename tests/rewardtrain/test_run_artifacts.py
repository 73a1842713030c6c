"""A run's files in the artifacts store with validation's layout: an ensemble stopped in its second member goes
on in another scratch folder (another worker) from its stored first member and the second's newest
checkpoint, best weights included; an interrupted upload's files are the run's temporary files; the model's
content hash covers every member."""

from __future__ import annotations

import shutil
from pathlib import Path

from palate.storage import ARTIFACTS, store_list, store_write_bytes
from rewardtrain.services.run_artifacts import (
    CheckpointMirror,
    checkpoint_fetch,
    checkpoint_key,
    run_model_upload,
    run_prefix,
    run_temporary_files,
)
from rewardtrain.training.checkpoints import BEST_WEIGHTS
from rewardtrain.training.ensemble import resume_step, train_ensemble
from tests.rewardtrain.conftest import marker_rows

RUN_ID = 77


def _attempt(tiny_decoder: str, scratch: Path, *, stop_after: int | None = None):
    """One attempt as ``run_execution`` makes it: fetch, train mirroring each step, sync at the end."""
    resume_from = checkpoint_fetch(run_id=RUN_ID, scratch=scratch)
    mirror = CheckpointMirror(run_id=RUN_ID, scratch=scratch)
    seen: list[tuple[int, int]] = []

    def report(step, total, epoch, metrics):
        seen.append((step, metrics.get("member")))
        mirror.sync()

    result = train_ensemble(
        {
            "base_model": tiny_decoder,
            "learning_rate": 3e-3,
            "batch_size": 16,
            "max_length": 48,
            "eval_steps": 1,
            "save_steps": 1,
            "ensemble_size": 2,
        },
        marker_rows(48, seed=12),
        output_dir=scratch,
        device="cpu",
        on_progress=report,
        should_stop=lambda: stop_after is not None and len(seen) >= stop_after,
        resume_from=resume_from,
    )
    mirror.sync()
    return result, seen


def test_an_ensemble_stopped_in_its_second_member_goes_on_from_the_store_on_another_worker(
    tiny_decoder, tmp_path
):
    first, seen = _attempt(tiny_decoder, tmp_path / "worker-a", stop_after=5)
    assert first.status == "cancelled" and seen[-1] == (5, 1)
    stored = store_list(ARTIFACTS, run_prefix(RUN_ID))
    assert "members/member-0/result.json" in stored
    assert "members/member-0/model/model.safetensors" in stored
    assert f"members/member-1/checkpoints/step-2/{BEST_WEIGHTS}" in stored
    assert checkpoint_key(run_id=RUN_ID, scratch=tmp_path / "worker-a", local=first.checkpoint_dir) == (
        f"{run_prefix(RUN_ID)}members/member-1/checkpoints/step-2/"
    )

    shutil.rmtree(tmp_path / "worker-a")  # its scratch folder goes with the attempt
    other = tmp_path / "worker-b"
    assert checkpoint_fetch(run_id=RUN_ID, scratch=other) is None  # an ensemble resumes member by member
    assert (other / "members/member-0/result.json").is_file()
    assert (other / f"members/member-1/checkpoints/step-2/{BEST_WEIGHTS}").is_file()
    assert resume_step(other, 2) == 5

    resumed, seen = _attempt(tiny_decoder, other)
    assert resumed.status == "completed" and resumed.global_step == 6 and seen == [(6, 1)]
    members = resumed.evaluation["ensemble"]["members"]
    assert [member["seed"] for member in members] == [42, 43] and members[1]["best_step"] is not None
    assert Path(resumed.artifact_dir).is_relative_to(other)

    key, digest = run_model_upload(run_id=RUN_ID, local=Path(resumed.artifact_dir))
    assert "members/member-1/model.safetensors" in store_list(ARTIFACTS, key)
    (Path(resumed.artifact_dir) / "members/member-1/config.json").write_text("{}")
    assert run_model_upload(run_id=RUN_ID, local=Path(resumed.artifact_dir))[1] != digest


def test_checkpoints_and_member_models_whose_upload_was_cut_short_are_temporary_files():
    prefix = run_prefix(RUN_ID)
    for name in (
        "checkpoints/step-2/trainer_state.json",
        "checkpoints/step-3/model.safetensors",
        "members/member-0/checkpoints/step-1/trainer_state.json",
        "members/member-0/model/config.json",
        "members/member-0/result.json",
        "members/member-1/checkpoints/step-4/model.safetensors",
        "members/member-1/model/config.json",
    ):
        store_write_bytes(ARTIFACTS, prefix + name, b"{}")
    assert sorted(name for _, name in run_temporary_files(run_id=RUN_ID)) == [
        f"{prefix}checkpoints/step-3/",
        f"{prefix}members/member-1/checkpoints/step-4/",
        f"{prefix}members/member-1/model/",
    ]
