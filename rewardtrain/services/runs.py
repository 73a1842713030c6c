"""Training runs: start, cancel, execute on a worker, reap, retrain on a schedule; activate reward models.

One code path serves the API, the training page, ``manage.py train_reward_model`` and beat. The web process
only validates and queues (``training_run_create``); ``training_run_execute`` runs in a ``gpu`` worker (or in
the foreground for the command) and is the only caller of the trainer, which it imports lazily: torch never
loads in the web process.

How a run survives its worker:

- **Claim.** A worker claims a run with a conditional UPDATE (queued → running, or a running run whose
  heartbeat is stale); the claim increments ``attempts``, and that number is the claim's token. A redelivered
  task finds nothing to claim and returns.
- **Heartbeat.** While a run trains, a thread refreshes ``heartbeat_at`` every ``TRAINING_HEARTBEAT_SECONDS``
  (model loading and long steps included), and progress is written at most every
  ``TRAINING_PROGRESS_SECONDS``.
- **Crash.** ``training_runs_reap`` (beat) re-queues a running run whose heartbeat is older than
  ``TRAINING_HEARTBEAT_TIMEOUT_SECONDS`` while attempts remain, else fails it with "the worker stopped". The
  next attempt resumes from the run's latest checkpoint under ``ARTIFACT_ROOT/runs/<id>/checkpoints``.
- **Lost message.** A run still queued ``TRAINING_QUEUED_RESEND_SECONDS`` after its task was sent gets its task
  sent again by the reaper (a duplicate finds the run claimed and returns); one queued for
  ``TRAINING_QUEUED_TIMEOUT_SECONDS`` fails, saying no gpu worker took it.
- **Cancel.** A queued run is cancelled at once; a running run gets ``cancel_requested``, which the trainer
  reads before every step: it writes a checkpoint of the last finished step and stops.
- **Several processes.** With ``TRAINING_PROCESSES`` > 1 the attempt trains data-parallel in that many
  processes started by torchrun (``training/launch.py``); this process keeps the claim, the heartbeat,
  progress and cancel as above, and a rank that dies fails the attempt like any crash.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q, TextField, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from annotate.models import Export, Judgment, Project
from annotate.selectors import agreement_snapshot_latest
from palate.errors import ApplicationError, Conflict
from rewardtrain.models import RetrainingSettings, RewardModel, TrainingRun
from rewardtrain.training.config import TrainConfig
from rewardtrain.training.errors import ConfigError, TrainingError

logger = logging.getLogger(__name__)

# (step, total steps, the step's history entry): the command's progress bar.
ProgressCallback = Callable[[int, int, dict[str, Any]], None]

MIN_TIME_LIMIT_SECONDS = 120
MAX_TIME_LIMIT_SECONDS = 7 * 24 * 3600
SOFT_LIMIT_MARGIN_SECONDS = 60
METRICS_KEPT = 2000  # history entries on the row; longer runs keep every k-th step (and every evaluation)
ACTIVE_STATUSES = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=_setting("TRAINING_HEARTBEAT_TIMEOUT_SECONDS", 300))


# ----------------------------------------------------------------------------------------------------------
# Starting


def training_gate(*, project: Project) -> dict[str, Any]:
    """The training gate of the project's latest agreement snapshot ({"ok", "reasons"}), as it stands: no
    computation here (a request may call it). Beat's retraining refreshes the snapshot first."""
    from annotate.services.agreement import agreement_figures

    snapshot = agreement_snapshot_latest(project=project)
    if snapshot is None:
        return {"ok": False, "reasons": ["No agreement figures yet: open the Quality tab to compute them."]}
    return agreement_figures(snapshot=snapshot, project=project)["training_gate"]


def training_config_parse(*, base_model: str, hyperparameters: Any) -> TrainConfig:
    """Validates hyperparameters (missing ones take their defaults) with the trainer's own rules.

    Raises ApplicationError naming every bad field as ``hyperparameters.<name>`` (``base_model`` on its own)."""
    if hyperparameters is None:
        hyperparameters = {}
    if not isinstance(hyperparameters, dict):
        raise ApplicationError(
            "hyperparameters must be a JSON object", fields={"hyperparameters": ["must be a JSON object"]}
        )
    values = {key: value for key, value in hyperparameters.items() if key != "base_model"}
    try:
        return TrainConfig.from_dict({**values, "base_model": base_model})
    except ConfigError as error:
        fields = {
            (name if name == "base_model" else f"hyperparameters.{name}"): [message]
            for name, message in error.errors.items()
        }
        first = next(iter(fields))
        raise ApplicationError(f"{first}: {fields[first][0]}", fields=fields) from None


def _export_for_run(*, project: Project, export: Export | int | None) -> Export:
    export_id = export.pk if isinstance(export, Export) else export
    found = Export.objects.filter(pk=export_id).first()
    if found is None or found.project_id != project.pk:
        raise ApplicationError(
            f"export {export_id} is not an export of this project", fields={"export": ["no such export here"]}
        )
    if found.status != Export.Status.SUCCEEDED:
        message = f"export v{found.version} is {found.status}; train on a succeeded export"
        raise ApplicationError(message, fields={"export": [message]})
    if found.policy.get("kind", "preference") != "preference":
        message = f"export v{found.version} is a raw export; train on a preference export"
        raise ApplicationError(message, fields={"export": [message]})
    return found


def _policy_for_run(*, project: Project, policy: Any) -> dict[str, Any]:
    from annotate.services.exports import export_policy_parse

    parsed = export_policy_parse(policy, project=project).as_dict()
    if parsed["kind"] != "preference":
        message = "a run trains on preference pairs: use kind 'preference'"
        raise ApplicationError(f"policy.kind: {message}", fields={"policy.kind": [message]})
    return parsed


def training_run_create(
    *,
    project: Project,
    base_model: str,
    hyperparameters: dict[str, Any] | None = None,
    export: Export | int | None = None,
    policy: dict[str, Any] | None = None,
    created_by: Any = None,
    allow_below_target: bool = False,
    time_limit_seconds: int | None = None,
    trigger: str = TrainingRun.Trigger.MANUAL,
    enqueue: bool = True,
) -> TrainingRun:
    """Validates a run request and records a queued run; with ``enqueue`` the gpu task is queued once the
    row is committed.

    The run trains on ``export`` (a succeeded preference export of this project) or, given ``policy``
    instead, on an export the worker makes with that policy first. Refuses (400, the gate's reasons under
    ``allow_below_target``) when the project's latest agreement figures miss its quality targets, unless
    ``allow_below_target``."""
    base_model = (base_model or "").strip()
    config = training_config_parse(base_model=base_model, hyperparameters=hyperparameters)
    if (export is None) == (policy is None):
        message = "give either an export to train on or a policy to make one"
        raise ApplicationError(message, fields={"export": [message]})
    chosen_export = _export_for_run(project=project, export=export) if export is not None else None
    parsed_policy = _policy_for_run(project=project, policy=policy) if policy is not None else {}
    if time_limit_seconds is None:
        time_limit_seconds = int(_setting("TRAINING_TIME_LIMIT_SECONDS", 6 * 3600))
    if (
        isinstance(time_limit_seconds, bool)
        or not isinstance(time_limit_seconds, int)
        or not MIN_TIME_LIMIT_SECONDS <= time_limit_seconds <= MAX_TIME_LIMIT_SECONDS
    ):
        message = f"must be whole seconds between {MIN_TIME_LIMIT_SECONDS} and {MAX_TIME_LIMIT_SECONDS}"
        raise ApplicationError(f"time_limit_seconds: {message}", fields={"time_limit_seconds": [message]})
    log = ""
    if not allow_below_target:
        gate = training_gate(project=project)
        if not gate["ok"]:
            reasons = list(gate["reasons"]) or ["the agreement figures miss the project's targets"]
            raise ApplicationError(
                "The project's judgments are below its quality targets: "
                + " ".join(reasons)
                + " Start anyway with allow_below_target.",
                code="below_target",
                fields={"allow_below_target": reasons},
            )
    else:
        gate = training_gate(project=project)
        if not gate["ok"]:
            log = _log_line("started below the quality targets: " + " ".join(gate["reasons"]))
    run = TrainingRun.objects.create(
        project=project,
        export=chosen_export,
        policy=parsed_policy,
        base_model=base_model,
        hyperparameters=config.to_dict(),
        created_by=created_by,
        trigger=trigger,
        time_limit_seconds=time_limit_seconds,
        log=log,
    )
    if enqueue:
        transaction.on_commit(lambda: training_run_enqueue(run=run))
    return run


def training_run_enqueue(*, run: TrainingRun) -> None:
    """Queues the run's task on the gpu queue with the run's time limits. Call after the row is committed."""
    from rewardtrain.tasks import training_run_task

    hard = run.time_limit_seconds
    soft = max(MIN_TIME_LIMIT_SECONDS // 2, hard - SOFT_LIMIT_MARGIN_SECONDS)
    TrainingRun.objects.filter(pk=run.pk).update(enqueued_at=timezone.now())
    training_run_task.apply_async(args=[run.pk], soft_time_limit=soft, time_limit=hard)


# ----------------------------------------------------------------------------------------------------------
# Cancelling and activating


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancels a queued run at once; asks a running one to stop (its trainer sees the request before its
    next step, keeps a checkpoint and marks the run cancelled). Raises Conflict (409) for a finished run."""
    now = timezone.now()
    cancelled = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        log=_appended("cancelled before it started", now=now),
    )
    if not cancelled:
        requested = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        )
        if not requested:
            run.refresh_from_db()
            raise Conflict(f"run {run.pk} is already {run.status}")
    run.refresh_from_db()
    return run


def reward_model_activate(*, reward_model: RewardModel) -> RewardModel:
    """Makes this the project's one active reward model (the others are deactivated in the same
    transaction; the database allows one active model per project)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=reward_model.project_id).first()
        RewardModel.objects.filter(project_id=reward_model.project_id, is_active=True).exclude(
            pk=reward_model.pk
        ).update(is_active=False)
        RewardModel.objects.filter(pk=reward_model.pk).update(is_active=True)
    reward_model.refresh_from_db()
    return reward_model


# ----------------------------------------------------------------------------------------------------------
# Executing (worker code)


def _log_line(message: str, *, now: Any = None) -> str:
    return f"{(now or timezone.now()).strftime('%Y-%m-%d %H:%M:%S')} {message}\n"


def _appended(message: str, *, now: Any = None) -> Concat:
    """The run's log with one more line, as an UPDATE expression (no read-modify-write race)."""
    return Concat(F("log"), Value(_log_line(message, now=now)), output_field=TextField())


def _fail_unchanged(same: Any, *, message: str, now: Any) -> int:
    """Fails the run that ``same`` (a queryset of one run, guarded on what the reaper read) still selects;
    returns 1 when it did, 0 when the run changed meanwhile."""
    return same.update(
        status=TrainingRun.Status.FAILED,
        error=message,
        finished_at=now,
        log=_appended(f"failed: {message}", now=now),
    )


def run_directory(*, run: TrainingRun | int) -> Path:
    run_id = run.pk if isinstance(run, TrainingRun) else run
    return Path(settings.ARTIFACT_ROOT) / "runs" / str(run_id)


def _claim(*, run_id: int, worker_name: str) -> int | None:
    """Claims the run for this worker; returns the attempt number (the claim's token), or None when the run
    is not claimable (already running elsewhere, finished, or another delivery got it first)."""
    now = timezone.now()
    stale = now - heartbeat_timeout()
    claimable = Q(status=TrainingRun.Status.QUEUED) | Q(
        status=TrainingRun.Status.RUNNING,
        heartbeat_at__lt=stale,
        cancel_requested=False,
        attempts__lt=F("max_attempts"),
    )
    with transaction.atomic():
        claimed = TrainingRun.objects.filter(claimable, pk=run_id).update(
            status=TrainingRun.Status.RUNNING,
            worker=worker_name[:200],
            heartbeat_at=now,
            started_at=Coalesce(F("started_at"), now),
            attempts=F("attempts") + 1,
            cancel_requested=False,
        )
        if not claimed:
            return None
        return TrainingRun.objects.values_list("attempts", flat=True).get(pk=run_id)


def _ours(run_id: int, attempt: int) -> Any:
    """The run's rows while this attempt still owns it (status running, attempt unchanged)."""
    return TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING, attempts=attempt)


class _Heartbeat:
    """Refreshes the run's heartbeat from a thread while the trainer works (loading a model or a long step
    writes no progress). Not started inside an open transaction (tests): a second connection could not see
    the row, and would wait on its lock; progress writes carry the heartbeat there."""

    def __init__(self, run_id: int, attempt: int, interval: float):
        self.run_id, self.attempt, self.interval = run_id, attempt, interval
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if not connection.in_atomic_block and self.interval > 0:
            self.thread = threading.Thread(
                target=self._beat, name=f"heartbeat-run-{self.run_id}", daemon=True
            )
            self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                _ours(self.run_id, self.attempt).update(heartbeat_at=timezone.now())
        except Exception:  # the next progress write, or the reaper, takes over
            logger.exception("heartbeat of run %s stopped", self.run_id)
        finally:
            connection.close()


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


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _export_rows(export: Export, split: str) -> list[dict[str, Any]] | None:
    """The export's rows of one split (JSONL, gzipped JSONL or Parquet, whichever it has), or None."""
    from annotate.services.exports import export_file

    for fmt in ("jsonl", "parquet"):
        try:
            path, _ = export_file(export=export, split=split, fmt=fmt)
        except ApplicationError:
            continue
        return _read_rows(path)
    return None


class _RunFailed(Exception):
    """Ends an attempt with the run failed and this message (no retry)."""


def _make_export(run: TrainingRun, attempt: int) -> Export:
    from annotate.services.exports import export_create, export_run

    export = export_create(
        project=run.project, policy=run.policy, formats=["jsonl"], created_by=run.created_by, enqueue=False
    )
    _ours(run.pk, attempt).update(
        export=export, log=_appended(f"making export v{export.version} with the run's policy")
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
        processes = int(_setting("TRAINING_PROCESSES", 1))
    attempt = _claim(run_id=run_id, worker_name=worker_name)
    if attempt is None:
        logger.info("training run %s is not claimable (finished, or running elsewhere)", run_id)
        return None
    run = TrainingRun.objects.select_related("project", "export", "created_by").get(pk=run_id)
    from celery.exceptions import SoftTimeLimitExceeded

    with _Heartbeat(run_id, attempt, _setting("TRAINING_HEARTBEAT_SECONDS", 15)):
        try:
            return _train(run, attempt, on_progress, processes)
        except (_RunFailed, TrainingError) as error:
            return _finish(run, attempt, TrainingRun.Status.FAILED, error=str(error))
        except SoftTimeLimitExceeded:
            message = (
                f"the run passed its time limit of {run.time_limit_seconds} s; its latest checkpoint is kept"
            )
            return _finish(run, attempt, TrainingRun.Status.FAILED, error=message)
        except Exception as error:
            logger.exception("training run %s crashed (attempt %s)", run_id, attempt)
            message = f"{type(error).__name__}: {error}"
            details = traceback.format_exc()
            if attempt < run.max_attempts:
                requeued = _ours(run_id, attempt).update(
                    status=TrainingRun.Status.QUEUED,
                    queued_at=timezone.now(),
                    log=_appended(f"attempt {attempt} crashed ({message}); queued again"),
                    traceback=details,
                )
                run.refresh_from_db()
                if requeued and enqueue_retry:
                    transaction.on_commit(lambda: training_run_enqueue(run=run))
                return run
            return _finish(run, attempt, TrainingRun.Status.FAILED, error=message, details=details)


def _train(
    run: TrainingRun, attempt: int, on_progress: ProgressCallback | None, processes: int
) -> TrainingRun:
    from rewardtrain.training.trainer import latest_checkpoint, train

    where = run.worker or "this process"
    if processes > 1:
        where += f" ({processes} processes)"
    _ours(run.pk, attempt).update(log=_appended(f"attempt {attempt} on {where}"))
    export = run.export if run.export_id else _make_export(run, attempt)
    train_rows = _export_rows(export, "train")
    if not train_rows:
        raise _RunFailed(f"export v{export.version} has no training rows")
    eval_rows = _export_rows(export, "test")
    output_dir = run_directory(run=run)
    resume_from = latest_checkpoint(output_dir)
    history = list(run.metrics or [])
    if resume_from is not None:
        resumed_step = int(resume_from.name.removeprefix("step-"))
        history = [entry for entry in history if entry.get("step", 0) <= resumed_step]
        _ours(run.pk, attempt).update(
            metrics=history, log=_appended(f"resuming from the checkpoint of step {resumed_step}")
        )
    else:
        history = []
    progress = _Progress(
        run_id=run.pk,
        attempt=attempt,
        history=history,
        interval=_setting("TRAINING_PROGRESS_SECONDS", 1.0),
        callback=on_progress,
    )
    stop_reason: list[str] = []

    def should_stop() -> bool:
        state = (
            TrainingRun.objects.filter(pk=run.pk)
            .values_list("status", "attempts", "cancel_requested")
            .first()
        )
        if state is None or state[0] != TrainingRun.Status.RUNNING or state[1] != attempt:
            stop_reason.append("lost")
            return True
        if state[2]:
            stop_reason.append("cancel")
            return True
        return False

    arguments = {
        "output_dir": output_dir,
        "device": str(getattr(settings, "PALATE_DEVICE", "auto")),
        "on_progress": progress,
        "should_stop": should_stop,
        "resume_from": resume_from,
        "policy": export.policy,
    }
    if processes > 1:
        from rewardtrain.training.launch import train_in_processes

        result = train_in_processes(
            run.hyperparameters, train_rows, eval_rows or None, processes=processes, **arguments
        )
    else:
        result = train(run.hyperparameters, train_rows, eval_rows or None, **arguments)
    if progress.step:
        progress.flush()
    _ours(run.pk, attempt).update(device=result.device[:50])
    if result.status == "cancelled":
        if stop_reason and stop_reason[-1] == "lost":
            logger.warning("training run %s was taken over by another attempt; this one stops", run.pk)
            run.refresh_from_db()
            return run
        where = result.checkpoint_dir or "none"
        return _finish(
            run,
            attempt,
            TrainingRun.Status.CANCELLED,
            note=f"cancelled at step {result.global_step}; checkpoint kept: {where}",
        )
    return _succeed(run, attempt, result)


def _relative(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.relative_to(Path(settings.ARTIFACT_ROOT)))
    except ValueError:
        return str(path)


def artifact_absolute(path: str) -> Path:
    """A stored artifact path (relative to ARTIFACT_ROOT) as a path on this machine."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.ARTIFACT_ROOT) / candidate


def _model_metrics(result: Any) -> dict[str, Any]:
    evaluation = result.evaluation or {}
    keep = ("count", "accuracy", "loss", "ece", "reward_mean", "reward_std", "by_agreement")
    return {
        **{key: evaluation.get(key) for key in keep if key in evaluation},
        "pairs_per_second": (result.timing or {}).get("pairs_per_second"),
        "train_pairs": (result.data or {}).get("train", {}).get("pairs"),
    }


def _succeed(run: TrainingRun, attempt: int, result: Any) -> TrainingRun:
    artifact = _relative(result.artifact_dir)
    now = timezone.now()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=run.project_id).first()
        finished = _ours(run.pk, attempt).update(
            status=TrainingRun.Status.SUCCEEDED,
            artifact_path=artifact,
            evaluation={**(result.evaluation or {}), "data": result.data, "timing": result.timing},
            step=result.global_step,
            total_steps=result.total_steps,
            eta_seconds=0,
            error="",
            finished_at=now,
            heartbeat_at=now,
            log=_appended(f"finished {result.global_step} steps; model at {artifact}", now=now),
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
                metrics=_model_metrics(result),
                is_active=version == 1,
            )
    run.refresh_from_db()
    return run


def _finish(
    run: TrainingRun, attempt: int, status: str, *, error: str = "", details: str = "", note: str = ""
) -> TrainingRun:
    now = timezone.now()
    line = note or (f"failed: {error}" if error else status)
    _ours(run.pk, attempt).update(
        status=status,
        error=error,
        traceback=details,
        finished_at=now,
        heartbeat_at=now,
        eta_seconds=None,
        log=_appended(line, now=now),
    )
    run.refresh_from_db()
    return run


# ----------------------------------------------------------------------------------------------------------
# Beat: reaping and retraining


def training_runs_reap(*, now: Any = None) -> dict[str, int]:
    """Running runs whose heartbeat is stale (their worker died): re-queued while attempts remain (the next
    attempt resumes from the latest checkpoint), cancelled when a cancel was asked, else failed. Queued runs
    whose task may have been lost: sent again, then failed (``_reap_queued``)."""
    now = now or timezone.now()
    stale = now - heartbeat_timeout()
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "resent": 0}
    candidates = TrainingRun.objects.filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale),
        status=TrainingRun.Status.RUNNING,
    ).values_list("pk", "attempts", "max_attempts", "cancel_requested", "heartbeat_at")
    for run_id, attempts, max_attempts, cancel_requested, heartbeat_at in candidates:
        same = TrainingRun.objects.filter(
            pk=run_id, status=TrainingRun.Status.RUNNING, attempts=attempts, heartbeat_at=heartbeat_at
        )
        seen = heartbeat_at.strftime("%Y-%m-%d %H:%M:%S") if heartbeat_at else "never"
        if cancel_requested:
            if same.update(
                status=TrainingRun.Status.CANCELLED,
                finished_at=now,
                log=_appended("cancelled (its worker stopped before it could)", now=now),
            ):
                counts["cancelled"] += 1
        elif attempts < max_attempts:
            if same.update(
                status=TrainingRun.Status.QUEUED,
                queued_at=now,
                log=_appended(f"the worker stopped (heartbeat last seen {seen}); queued again", now=now),
            ):
                counts["requeued"] += 1
                run = TrainingRun.objects.get(pk=run_id)
                transaction.on_commit(lambda run=run: training_run_enqueue(run=run))
        else:
            message = (
                f"the worker stopped (heartbeat last seen {seen}) and all {max_attempts} attempts are spent"
            )
            if _fail_unchanged(same, message=message, now=now):
                counts["failed"] += 1
    _reap_queued(now, counts)
    if any(counts.values()):
        logger.warning("training runs reaped: %s", counts)
    return counts


def _reap_queued(now: Any, counts: dict[str, int]) -> None:
    """A queued run whose task message was lost (a broker restarted without persistence, a purged queue)
    would wait for ever: its task is sent again ``TRAINING_QUEUED_RESEND_SECONDS`` after the last send, and
    the run fails once it has waited ``TRAINING_QUEUED_TIMEOUT_SECONDS``. A run that merely waits behind
    another on a busy worker gets a duplicate message, which finds it claimed (or finished) and returns."""
    resend = timedelta(seconds=_setting("TRAINING_QUEUED_RESEND_SECONDS", 900))
    timeout = int(_setting("TRAINING_QUEUED_TIMEOUT_SECONDS", 24 * 3600))
    waiting = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).annotate(
        waiting_since=Coalesce("queued_at", "created_at"),
        sent_at=Coalesce("enqueued_at", "queued_at", "created_at"),
    )
    for run_id, attempts, waiting_since, sent_at, enqueued_at in waiting.filter(
        Q(waiting_since__lt=now - timedelta(seconds=timeout)) | Q(sent_at__lt=now - resend)
    ).values_list("pk", "attempts", "waiting_since", "sent_at", "enqueued_at"):
        # Unchanged since read (not claimed, cancelled or sent by another reaper): the update is the claim.
        same = TrainingRun.objects.filter(
            pk=run_id, status=TrainingRun.Status.QUEUED, attempts=attempts, enqueued_at=enqueued_at
        )
        if waiting_since < now - timedelta(seconds=timeout):
            message = (
                f"no gpu worker took the run in {timeout} s of waiting in the queue "
                "(is a worker listening on the gpu queue?)"
            )
            if _fail_unchanged(same, message=message, now=now):
                counts["failed"] += 1
        elif same.update(
            enqueued_at=now,
            log=_appended(
                f"still queued {int((now - sent_at).total_seconds())} s after its task was sent; sent again",
                now=now,
            ),
        ):
            counts["resent"] += 1
            run = TrainingRun.objects.get(pk=run_id)
            transaction.on_commit(lambda run=run: training_run_enqueue(run=run))


def retraining_settings_get(*, project: Project) -> RetrainingSettings:
    return RetrainingSettings.objects.get_or_create(project=project)[0]


def retraining_settings_update(
    *, project: Project, enabled: bool, min_new_judgments: int
) -> RetrainingSettings:
    if isinstance(min_new_judgments, bool) or not isinstance(min_new_judgments, int) or min_new_judgments < 1:
        message = "must be a whole number of at least 1"
        raise ApplicationError(f"min_new_judgments: {message}", fields={"min_new_judgments": [message]})
    retraining, _ = RetrainingSettings.objects.update_or_create(
        project=project, defaults={"enabled": enabled, "min_new_judgments": min_new_judgments}
    )
    return retraining


def _retrain_decision(retraining: RetrainingSettings) -> tuple[str, dict[str, Any] | None]:
    """Why the project does not retrain now, or ("", the settings of the run to start)."""
    from annotate.services.agreement import agreement_training_gate

    project = retraining.project
    runs = TrainingRun.objects.filter(project=project)
    if runs.filter(status__in=ACTIVE_STATUSES).exists():
        return "A run is queued or running.", None
    last = runs.order_by("-created_at", "-id").select_related("export").first()
    if last is None:
        return "No run to copy: start the first run by hand; retraining repeats the latest one.", None
    new = Judgment.objects.filter(
        pair__project=project, origin=Judgment.Origin.HUMAN, created_at__gt=last.created_at
    ).count()
    if new < retraining.min_new_judgments:
        return (
            f"{new} new human judgments since run {last.pk}; retraining waits for {retraining.min_new_judgments}.",
            None,
        )
    gate = agreement_training_gate(project=project)
    if not gate["ok"]:
        return f"{new} new judgments, but agreement is below target: " + " ".join(gate["reasons"]), None
    policy = last.export.policy if last.export_id else last.policy
    return "", {
        "base_model": last.base_model,
        "hyperparameters": last.hyperparameters,
        "policy": policy,
        "time_limit_seconds": last.time_limit_seconds,
        "new": new,
        "last": last.pk,
    }


def training_retrain_due(*, now: Any = None) -> list[TrainingRun]:
    """Beat: for each project with retraining on, starts a run like its latest one (base model,
    hyperparameters, export policy; a fresh export) once enough new human judgments arrived and agreement
    meets the targets; otherwise records why not. Returns the runs started."""
    now = now or timezone.now()
    started = []
    for retraining in RetrainingSettings.objects.filter(enabled=True).select_related("project"):
        try:
            reason, plan = _retrain_decision(retraining)
            if plan is not None:
                run = training_run_create(
                    project=retraining.project,
                    base_model=plan["base_model"],
                    hyperparameters=plan["hyperparameters"],
                    policy=plan["policy"],
                    allow_below_target=True,  # the gate was checked, on fresh figures, just above
                    time_limit_seconds=plan["time_limit_seconds"],
                    trigger=TrainingRun.Trigger.SCHEDULE,
                )
                started.append(run)
                reason = f"Started run {run.pk}: {plan['new']} new human judgments since run {plan['last']}."
                retraining.last_started = run
        except ApplicationError as error:
            reason = f"Could not start a run: {error.message}"
        retraining.checked_at, retraining.outcome = now, reason
        retraining.save(update_fields=["checked_at", "outcome", "last_started"])
    return started
