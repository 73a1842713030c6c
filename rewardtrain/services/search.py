"""Search runs on workers: Optuna's trials as jobs, and the run that asks for them and keeps the best.

A run in mode "search" is claimed like any run (``run_execution.training_run_execute``), makes its export
if it has only a policy, and then ``search_run`` coordinates it in that worker:

- it asks Optuna (``rewardtrain.training.search``) for the next trial's values while the trial budget lasts
  and fewer than ``parallel`` trials are unfinished, records the trial (``SearchTrial``, a job of
  ``palate.jobs``) and sends its task on the gpu queue, where any gpu worker may take it;
- meanwhile it takes queued trials itself, through the same claim (a worker that later gets such a trial's
  message finds it claimed and returns), so a single gpu worker runs a whole search and N workers run N
  trials at once; when every unfinished trial trains elsewhere it waits;
- at the time budget it starts no trial, ends the queued ones and the running ones stop at their next step;
- at the end it keeps the best complete trial's model as the run's reward model (no retraining: the trial
  trained on the same pairs with the same hyperparameters) and removes the other trials' models; with
  ``ensemble_top_k`` k above 1, the best k complete trials' models become one ensemble model (members
  combined as ``training.ensemble`` combines seeds, on the validation pairs all trials share), stored as
  the run's model, and every trial's model is removed.

Each trial (``search_trial_execute``) trains with the run's hyperparameters and its own values in place of
the searched ones and evaluates on the validation pairs every ``eval_steps``: after each evaluation Optuna's
median pruner may stop it ("pruned"). A trial's worker that dies is handled as any job's: its trial is
queued again and resumes from its checkpoint; the run's worker that dies leaves the trials to go on, and the
run's next attempt picks the search up from the trial rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from palate.errors import Conflict
from palate.jobs.models import FINISHED
from palate.jobs.services import (
    JobKind,
    StoredName,
    job_cancel,
    job_claim,
    job_enqueue,
    job_fail,
    job_finish,
    job_heartbeat,
    job_noted,
    job_owned,
    job_requeue,
)
from palate.scratch import scratch_directory
from palate.storage import ARTIFACTS, store_delete, store_download_directory
from rewardtrain.models import SearchTrial, TrainingRun
from rewardtrain.services.run_artifacts import (
    MODEL_FOLDER,
    CheckpointMirror,
    checkpoint_fetch,
    run_model_key,
    run_model_upload,
    trial_prefix,
)
from rewardtrain.services.run_execution import (
    _fail,
    _RunFailed,
    _selection_note,
    _stop_reason,
    _succeed,
)
from rewardtrain.services.runs import SOFT_LIMIT_MARGIN_SECONDS, task_time_limits
from rewardtrain.training.errors import TrainingError
from rewardtrain.training.search import (
    SearchConfig,
    TrialRecord,
    trial_ranked,
    trial_should_prune,
    trial_suggest,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often the run looks at trials that train on other workers


def _temporary_files(trial: SearchTrial, status: str) -> list[StoredName]:
    # A trial's stored checkpoints (with its best weights) serve only its own resumption; its model is
    # stored apart. Its scratch folder goes with each attempt.
    return [(ARTIFACTS, f"{trial_prefix(trial.run_id, trial.number)}checkpoints/")]


def _send(trial: SearchTrial) -> None:
    from rewardtrain.tasks import search_trial_task

    seconds = TrainingRun.objects.values_list("time_limit_seconds", flat=True).get(pk=trial.run_id)
    search_trial_task.apply_async(args=[trial.pk], **task_time_limits(seconds))


SEARCH_TRIALS = JobKind(
    model=SearchTrial,
    send=_send,
    noun="trial",
    queue="gpu",
    temporary_files=_temporary_files,
    log_field="log",
    cancellable=True,
)


@dataclass(frozen=True)
class SearchData:
    """What every trial of a run trains on: the base model's location on this worker, the training pairs,
    the export's test pairs (None: each trial holds out the same prompt-disjoint validation split, seeded by
    ``validation_seed``) and the export's policy (for the model card)."""

    base_location: str
    train_rows: list[dict[str, Any]]
    validation_rows: list[dict[str, Any]] | None
    policy: Any


def _search_data(run: TrainingRun) -> SearchData:
    """A trial's data when this worker has not loaded it for the run already."""
    from rewardtrain.services.run_execution import _base_location, _export_rows

    if run.export_id is None:
        raise _RunFailed("the search run has no export yet")
    return SearchData(
        _base_location(run),
        _export_rows(run.export, "train") or [],
        _export_rows(run.export, "test") or None,
        run.export.policy,
    )


def search_deadline(run: TrainingRun, search: SearchConfig) -> datetime:
    """When the search stops starting and running trials: its time budget after the run first started, or
    (no budget) a margin before the run's time limit."""
    budget = search.time_budget_seconds
    if budget is None:
        budget = max(60, run.time_limit_seconds - 2 * SOFT_LIMIT_MARGIN_SECONDS)
    return (run.started_at or timezone.now()) + timedelta(seconds=budget)


def _use_lora(run: TrainingRun) -> bool:
    return bool(run.hyperparameters.get("use_lora"))


def trial_record(trial: SearchTrial, metric: str) -> TrialRecord:
    """The trial as Optuna sees it."""
    if trial.status == SearchTrial.Status.QUEUED:
        state = "queued"
    elif trial.status == SearchTrial.Status.RUNNING:
        state = "running"
    elif trial.status == SearchTrial.Status.SUCCEEDED:
        state = "pruned" if trial.pruned_at_step is not None else "complete"
    else:
        state = "failed"
    intermediate = {
        int(entry["step"]): float(entry[metric])
        for entry in trial.intermediate
        if entry.get(metric) is not None
    }
    return TrialRecord(trial.number, dict(trial.params), state, trial.value, intermediate)


# ----------------------------------------------------------------------------------------------------------
# The run: ask, take, wait, keep the best


def search_run(*, run: TrainingRun, attempt: int, data: SearchData) -> TrainingRun:
    """Coordinates the claimed search ``run`` (attempt ``attempt``) to its end; see the module docstring."""
    search = SearchConfig.from_dict(run.search)
    deadline = search_deadline(run, search)
    worker = run.worker or "the run's worker"
    _note(run.pk, attempt, f"search: up to {search.trials} trials, {search.parallel} at a time, until "
          f"{deadline:%H:%M:%S}; ranked by validation {search.metric}")  # fmt: skip
    while True:
        reason = _stop_reason(run.pk, attempt)
        if reason == "lost":
            run.refresh_from_db()
            return run
        trials = list(SearchTrial.objects.filter(run=run).order_by("number"))
        unfinished = [trial for trial in trials if trial.status not in FINISHED]
        _progress(run.pk, attempt, trials, search)
        if reason == "cancel":
            _trials_stop(unfinished, "cancelled with its search run")
            if not any(trial.status == SearchTrial.Status.RUNNING for trial in unfinished):
                return _end(run, attempt, TrainingRun.Status.CANCELLED, "cancelled; its trials are stopped")
        elif timezone.now() >= deadline:
            queued = [trial for trial in unfinished if trial.status == SearchTrial.Status.QUEUED]
            _trials_stop(queued, "not started: the search's time budget ran out")
            if len(queued) == len(unfinished):
                return _finish(run, attempt, search, budget_spent=True)
        elif len(trials) < search.trials and len(unfinished) < search.parallel:
            _trial_ask(run, attempt, search, trials)
            continue
        elif not unfinished:
            return _finish(run, attempt, search, budget_spent=False)
        else:
            queued = [trial for trial in unfinished if trial.status == SearchTrial.Status.QUEUED]
            if queued:
                search_trial_execute(trial_id=queued[0].pk, worker_name=worker.split(" pid ")[0], data=data)
                continue
        time.sleep(POLL_SECONDS)


def _note(run_id: int, attempt: int, message: str) -> None:
    job_owned(TrainingRun, run_id, attempt).update(**job_noted(TrainingRun, message))


def _progress(run_id: int, attempt: int, trials: list[SearchTrial], search: SearchConfig) -> None:
    finished = sum(trial.status in FINISHED for trial in trials)
    job_owned(TrainingRun, run_id, attempt).update(
        progress=finished / search.trials if search.trials else 0.0, heartbeat_at=timezone.now()
    )


def _trial_ask(run: TrainingRun, attempt: int, search: SearchConfig, trials: list[SearchTrial]) -> None:
    """Records the next trial with Optuna's values and sends its task once committed."""
    params = trial_suggest(
        search, [trial_record(trial, search.metric) for trial in trials], use_lora=_use_lora(run)
    )
    last = SearchTrial.objects.filter(run=run).aggregate(last=Max("number"))["last"]
    number = 0 if last is None else last + 1
    try:
        with transaction.atomic():
            trial = SearchTrial.objects.create(
                run=run, number=number, params=params, max_attempts=run.max_attempts
            )
            transaction.on_commit(lambda: job_enqueue(trial))
    except IntegrityError:  # another attempt of the run asked for this number first
        return
    shown = ", ".join(f"{name} {_shown(value)}" for name, value in params.items())
    _note(run.pk, attempt, f"trial {number} queued: {shown}")


def _shown(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trials_stop(trials: list[SearchTrial], note: str) -> None:
    """Cancels queued trials at once and asks running ones to stop (they end cancelled at their next step),
    saying why in their logs."""
    for trial in trials:
        try:
            job_cancel(trial)
        except Conflict:  # it ended meanwhile
            continue
        SearchTrial.objects.filter(pk=trial.pk).update(**job_noted(SearchTrial, note))


def _end(run: TrainingRun, attempt: int, status: str, note: str) -> TrainingRun:
    job_finish(TrainingRun, job_id=run.pk, attempt=attempt, status=status, note=note, eta_seconds=None)
    run.refresh_from_db()
    return run


def _finish(run: TrainingRun, attempt: int, search: SearchConfig, *, budget_spent: bool) -> TrainingRun:
    """Keeps the best complete trial's model as the run's reward model (with ``ensemble_top_k`` above 1, an
    ensemble of the best k complete trials' models), or fails the run when no trial is complete."""
    trials = list(SearchTrial.objects.filter(run=run).order_by("number"))
    ranked = trial_ranked(search, [trial_record(trial, search.metric) for trial in trials])
    counts = {
        "complete": sum(trial.outcome == SearchTrial.Status.SUCCEEDED for trial in trials),
        "pruned": sum(trial.outcome == "pruned" for trial in trials),
        "stopped": sum(trial.status == SearchTrial.Status.CANCELLED for trial in trials),
        "failed": sum(trial.status == SearchTrial.Status.FAILED for trial in trials),
    }
    told = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
    why = "the time budget ran out" if budget_spent else "the trial budget is spent"
    if not ranked:
        errors = [trial.error for trial in trials if trial.error]
        first = f"; the first failed with: {errors[0]}" if errors else ""
        return _fail(
            run, attempt, f"no trial of the search finished ({told or 'none started'}; {why}){first}"
        )
    by_number = {trial.number: trial for trial in trials}
    best = by_number[ranked[0].number]
    members = [by_number[record.number] for record in ranked[: search.ensemble_top_k]]
    report = {"search": {"best_trial": best.number, "metric": search.metric, "value": best.value, **counts}}
    if len(members) > 1:
        return _finish_ensemble(run, attempt, search, members, report, f"search finished ({why}): {told}")
    stored = (best.result["artifact_dir"], best.result.get("content_hash", ""))
    result = _trial_result(best)
    for trial in trials:
        if trial.pk != best.pk:
            store_delete(ARTIFACTS, f"{trial_prefix(run.pk, trial.number)}{MODEL_FOLDER}/")
    fewer = (
        f" (ensemble_top_k {search.ensemble_top_k}, but only one trial is complete)"
        if search.ensemble_top_k > 1
        else ""
    )
    note = (
        f"search finished ({why}): {told}; kept trial {best.number}{fewer}, validation {search.metric} "
        f"{best.value:.4f}, model at {stored[0]}; {_selection_note(result)}"
    )
    return _succeed(run, attempt, result, note=note, report=report, stored=stored)


def _trial_result(trial: SearchTrial, artifact_dir: str | None = None) -> Any:
    """The trial's ``TrainResult`` as it stored it (its model at ``artifact_dir`` when given)."""
    from rewardtrain.training.trainer import TrainResult

    kept = {key: value for key, value in trial.result.items() if key != "content_hash"}
    if artifact_dir is not None:
        kept["artifact_dir"] = artifact_dir
    return TrainResult(**kept | {"history": [], "eval_history": []})


def _finish_ensemble(
    run: TrainingRun,
    attempt: int,
    search: SearchConfig,
    members: list[SearchTrial],
    report: dict[str, Any],
    told: str,
) -> TrainingRun:
    """The ensemble of the ``members`` trials' models (best first) as the run's reward model, combined in
    this worker's scratch folder and stored as the run's model; the trials' models are removed after (a
    next attempt of the run, should this one die, combines them again)."""
    from rewardtrain.training.ensemble import ensemble_combine

    with scratch_directory(f"run-{run.pk}-ensemble") as scratch:
        results = []
        for trial in members:
            local = scratch / f"trial-{trial.number}"
            store_download_directory(ARTIFACTS, f"{trial.result['artifact_dir']}/", local)
            results.append(_trial_result(trial, str(local)))
        result = ensemble_combine(
            results,
            scratch,
            members=[{"trial": trial.number, "params": trial.params} for trial in members],
            # As each trial was: calibrated when the run's hyperparameters ask for it.
            calibrate=results[0].calibration is not None,
            selection_metric=results[0].selection.get("metric"),
        )
        numbers = [trial.number for trial in members]
        report["search"]["ensemble_trials"] = numbers
        shown = ", ".join(f"{trial.number} ({trial.value:.4f})" for trial in members)
        note = (
            f"{told}; kept the best {len(members)} trials as one ensemble: trials {shown} by validation "
            f"{search.metric}; the ensemble's validation accuracy {result.evaluation['accuracy']:.4f}, "
            f"model at {run_model_key(run.pk)}; {_selection_note(result)}"
        )
        run = _succeed(run, attempt, result, note=note, report=report)
    if run.status == TrainingRun.Status.SUCCEEDED:
        for trial in SearchTrial.objects.filter(run=run):
            store_delete(ARTIFACTS, f"{trial_prefix(run.pk, trial.number)}{MODEL_FOLDER}/")
    return run


# ----------------------------------------------------------------------------------------------------------
# One trial


def search_trial_execute(
    *, trial_id: int, worker_name: str, data: SearchData | None = None
) -> SearchTrial | None:
    """Claims and trains one trial; returns it as it ended this attempt, or None when it was not claimable.
    ``data``: the run's pairs, when the caller (the run's own worker) has them loaded.

    A ``TrainingError`` fails the trial; any other error queues it again while attempts remain."""
    from celery.exceptions import SoftTimeLimitExceeded

    attempt = job_claim(SearchTrial, job_id=trial_id, worker=worker_name)
    if attempt is None:
        return None
    trial = SearchTrial.objects.select_related("run", "run__export", "run__base_reward_model").get(
        pk=trial_id
    )
    with job_heartbeat(SearchTrial, job_id=trial_id, attempt=attempt):
        try:
            _trial_train(trial, attempt, data)
        except (_RunFailed, TrainingError) as error:
            job_fail(SearchTrial, job_id=trial_id, attempt=attempt, error=str(error))
        except SoftTimeLimitExceeded:
            job_fail(
                SearchTrial, job_id=trial_id, attempt=attempt, error="the trial passed the run's time limit"
            )
            raise
        except Exception as error:
            logger.exception("search trial %s crashed (attempt %s)", trial_id, attempt)
            message = f"{type(error).__name__}: {error}"
            if attempt < trial.max_attempts:
                job_requeue(
                    SearchTrial,
                    job_id=trial_id,
                    attempt=attempt,
                    note=f"attempt {attempt} crashed ({message}); queued again",
                )
            else:
                job_fail(SearchTrial, job_id=trial_id, attempt=attempt, error=message)
    trial.refresh_from_db()
    return trial


def _trial_train(trial: SearchTrial, attempt: int, data: SearchData | None) -> None:
    """Trains the trial in a scratch folder of this worker, its checkpoints mirrored under the trial's folder
    of the artifacts store (``run_artifacts``) so that any worker can resume it, and its model stored there."""
    with scratch_directory(f"run-{trial.run_id}-trial-{trial.number}") as scratch:
        _trial_train_in(trial, attempt, data, scratch)


def _trial_train_in(trial: SearchTrial, attempt: int, data: SearchData | None, scratch: Path) -> None:
    from rewardtrain.training.trainer import train

    run = trial.run
    owned = job_owned(SearchTrial, trial.pk, attempt)
    if run.status != TrainingRun.Status.RUNNING or run.cancel_requested:
        job_finish(SearchTrial, job_id=trial.pk, attempt=attempt, status=SearchTrial.Status.CANCELLED,
                   note="its search run is no longer running")  # fmt: skip
        return
    search = SearchConfig.from_dict(run.search)
    deadline = search_deadline(run, search)
    data = data or _search_data(run)
    root = trial_prefix(run.pk, trial.number)
    output_dir = scratch
    resume_from = checkpoint_fetch(run_id=run.pk, scratch=scratch, root=root)
    mirror = CheckpointMirror(run_id=run.pk, scratch=scratch, root=root)
    intermediate = list(trial.intermediate)
    if resume_from is not None:
        resumed = int(resume_from.name.removeprefix("step-"))
        intermediate = [entry for entry in intermediate if entry["step"] <= resumed]
    owned.update(intermediate=intermediate, **job_noted(SearchTrial, f"attempt {attempt} on {trial.worker}"))
    pruned: list[int] = []
    stopped: list[str] = []

    interval = float(getattr(settings, "TRAINING_PROGRESS_SECONDS", 1.0))
    written = [0.0]

    def on_progress(step: int, total: int, epoch: float, metrics: dict[str, Any]) -> None:
        mirror.sync()  # a checkpoint the trainer wrote at this step goes to the store before the next step
        fields: dict[str, Any] = {
            "step": step,
            "total_steps": total,
            "progress": step / total if total else 0.0,
        }
        if "eval_accuracy" in metrics or "eval_loss" in metrics:
            entry = {"step": step, "accuracy": metrics.get("eval_accuracy"), "loss": metrics.get("eval_loss")}
            intermediate[:] = [kept for kept in intermediate if kept["step"] != step] + [entry]
            fields["intermediate"] = intermediate
            if step < total and not pruned and _prunable(trial, search, intermediate):
                pruned.append(step)
        elif time.monotonic() - written[0] < interval and step < total:
            return  # steps between evaluations are written at most every TRAINING_PROGRESS_SECONDS
        written[0] = time.monotonic()
        owned.update(heartbeat_at=timezone.now(), **fields)

    def should_stop() -> bool:
        state = (
            SearchTrial.objects.filter(pk=trial.pk)
            .values_list("status", "attempts", "cancel_requested", "run__status", "run__cancel_requested")
            .first()
        )
        if state is None or state[0] != SearchTrial.Status.RUNNING or state[1] != attempt:
            stopped.append("lost")
        elif state[2] or state[4] or state[3] != TrainingRun.Status.RUNNING:
            stopped.append("cancelled with its search run")
        elif timezone.now() >= deadline:
            stopped.append("stopped by the search's time budget")
        return bool(stopped or pruned)

    config = {**run.hyperparameters, **trial.params, "base_model": data.base_location}
    result = train(
        config,
        data.train_rows,
        data.validation_rows,
        output_dir=output_dir,
        device=str(getattr(settings, "PALATE_DEVICE", "auto")),
        on_progress=on_progress,
        should_stop=should_stop,
        resume_from=resume_from,
        policy=data.policy,
    )
    mirror.sync()
    finish = {
        "job_id": trial.pk,
        "attempt": attempt,
        "step": result.global_step,
        "total_steps": result.total_steps,
    }
    if result.status == "completed":
        value = (result.evaluation or {}).get(search.metric)
        summary = {
            key: value for key, value in result.to_dict().items() if key not in {"history", "eval_history"}
        }
        summary["artifact_dir"], summary["content_hash"] = run_model_upload(
            run_id=run.pk, local=Path(result.artifact_dir), root=root
        )
        job_finish(
            SearchTrial,
            **finish,
            value=value,
            result=summary,
            note=f"finished: validation {search.metric} {value}",
        )
    elif stopped and stopped[0] == "lost":
        logger.warning("search trial %s was taken over by another attempt; this one stops", trial.pk)
    elif pruned:
        last = [entry[search.metric] for entry in intermediate if entry.get(search.metric) is not None]
        job_finish(SearchTrial, **finish, pruned_at_step=pruned[0], value=last[-1] if last else None,
                   note=f"pruned at step {pruned[0]}: validation {search.metric} worse than the median of the finished trials there")  # fmt: skip
    else:
        job_finish(
            SearchTrial,
            **finish,
            status=SearchTrial.Status.CANCELLED,
            note=f"{stopped[0]} at step {result.global_step}",
        )


def _prunable(trial: SearchTrial, search: SearchConfig, intermediate: list[dict[str, Any]]) -> bool:
    """Optuna's median pruner on the trial's figures so far against the run's other trials as they stand."""
    others = SearchTrial.objects.filter(run_id=trial.run_id).exclude(pk=trial.pk)
    records = [trial_record(other, search.metric) for other in others]
    current = trial_record(trial, search.metric)
    figures = {
        int(entry["step"]): float(entry[search.metric])
        for entry in intermediate
        if entry.get(search.metric) is not None
    }
    current = TrialRecord(current.number, current.params, "running", None, figures)
    return trial_should_prune(search, records, current, use_lora=_use_lora(trial.run))
