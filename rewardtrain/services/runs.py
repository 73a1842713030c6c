"""Training runs' lifecycle: validate and queue, cancel, activate reward models, retrain on a schedule.

One code path serves the API, the training page, ``manage.py train_reward_model`` and beat. The web process
only validates and queues (``training_run_create``); ``run_execution.training_run_execute`` trains in a
``gpu`` worker (or in the foreground for the command). A run is a job of ``palate.jobs``: claimed with a
conditional UPDATE that counts its attempts, kept alive by a heartbeat, taken over or queued again when its
worker is lost (the next attempt, on any worker, resumes from the latest checkpoint stored under
``runs/<id>/`` in the artifacts store: ``run_artifacts``), and
reaped by the one reaper of every job type. What is particular to runs:

- **Cancel.** A queued run is cancelled at once; a running run gets ``cancel_requested``, which the trainer
  reads before every step: it writes a checkpoint of the last finished step and stops. A run whose worker
  was lost after a cancel was asked ends cancelled.
- **Base model.** A run starts from an installed base model, by name (``TRAINING_BASE_MODELS``, read by
  ``rewardtrain.base_models``), or continues from a reward model of its own project; never from a path.
  The worker resolves the choice to a location with its own settings when the run executes.
- **Time limits.** Each run carries its own (``time_limit_seconds``), passed to its task; the soft limit (a
  clean failure that keeps the latest checkpoint) comes a minute before the hard one.
- **Temporary files.** An attempt trains in a scratch folder of its worker, removed when the attempt ends;
  checkpoints (an ensemble member's too) and members' models whose upload was cut short are removed from the
  store when the run ends; complete checkpoints are kept.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotate.models import Export, Judgment, Project
from annotate.selectors import agreement_snapshot_latest
from palate.errors import ApplicationError
from palate.jobs.services import JobKind, job_cancel, job_enqueue, log_line
from rewardtrain.base_models import base_model_location, base_models_installed, hub_models_allowed
from rewardtrain.models import RetrainingSettings, RewardModel, TrainingRun
from rewardtrain.services.run_artifacts import run_temporary_files
from rewardtrain.training.config import TrainConfig
from rewardtrain.training.errors import ConfigError
from rewardtrain.training.search import SearchConfig

logger = logging.getLogger(__name__)

MIN_TIME_LIMIT_SECONDS = 120
MAX_TIME_LIMIT_SECONDS = 7 * 24 * 3600
SOFT_LIMIT_MARGIN_SECONDS = 60
ACTIVE_STATUSES = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


def task_time_limits(seconds: int) -> dict[str, int]:
    """A gpu task's hard limit and its soft one a minute earlier (a clean failure)."""
    return {
        "soft_time_limit": max(MIN_TIME_LIMIT_SECONDS // 2, seconds - SOFT_LIMIT_MARGIN_SECONDS),
        "time_limit": seconds,
    }


def _send(run: TrainingRun) -> None:
    """Queues the run's task on the gpu queue with the run's time limits."""
    from rewardtrain.tasks import training_run_task

    training_run_task.apply_async(args=[run.pk], **task_time_limits(run.time_limit_seconds))


TRAINING_RUNS = JobKind(
    model=TrainingRun,
    send=_send,
    noun="run",
    queue="gpu",
    temporary_files=lambda run, status: run_temporary_files(run_id=run.pk),
    log_field="log",
    cancellable=True,
)


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# ----------------------------------------------------------------------------------------------------------
# Starting


def training_gate(*, project: Project, export: Export | None = None) -> dict[str, Any]:
    """The training gate of the project's latest agreement snapshot ({"ok", "reasons"}), as it stands: no
    computation here (a request may call it). Beat's retraining refreshes the snapshot first. With ``export``,
    the gate of the judgments it counted: one that left flagged annotators out opens the gate when the others
    meet the targets."""
    from annotate.services.agreement import agreement_figures
    from annotate.services.agreement.figures import export_training_gate

    snapshot = agreement_snapshot_latest(project=project)
    if snapshot is None:
        return {"ok": False, "reasons": ["No agreement figures yet: open the Quality tab to compute them."]}
    figures = agreement_figures(snapshot=snapshot, project=project)
    if export is None:
        return figures["training_gate"]
    return export_training_gate(figures=figures, counts=export.counts)


def training_config_parse(*, hyperparameters: Any) -> dict[str, Any]:
    """Validates hyperparameters (missing ones take their defaults) with the trainer's own rules and returns
    them whole, without ``base_model``: the run records its base apart, and the worker adds where it lives.
    A ``base_model`` among them (an earlier run's, copied) is ignored.

    Raises ApplicationError naming every bad field as ``hyperparameters.<name>``."""
    if hyperparameters is None:
        hyperparameters = {}
    if not isinstance(hyperparameters, dict):
        raise ApplicationError(
            "hyperparameters must be a JSON object", fields={"hyperparameters": ["must be a JSON object"]}
        )
    values = {key: value for key, value in hyperparameters.items() if key != "base_model"}
    try:
        config = TrainConfig.from_dict({**values, "base_model": "resolved by the worker"})
    except ConfigError as error:
        fields = {f"hyperparameters.{name}": [message] for name, message in error.errors.items()}
        first = next(iter(fields))
        raise ApplicationError(f"{first}: {fields[first][0]}", fields=fields) from None
    return {key: value for key, value in config.to_dict().items() if key != "base_model"}


def training_search_parse(
    *, mode: Any, search: Any, time_limit_seconds: int, hyperparameters: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Validates the run's mode and, in search mode, its search settings (``SearchConfig``) and returns
    them whole. The time budget must end before the attempt's soft time limit; a search's trials are single
    models (no ensemble). Raises ApplicationError naming each bad field (``search.space.learning_rate``)."""
    mode = mode or TrainingRun.Mode.TRAIN
    if mode not in TrainingRun.Mode.values:
        message = f"must be one of {', '.join(TrainingRun.Mode.values)}"
        raise ApplicationError(f"mode: {message}", fields={"mode": [message]})
    if mode == TrainingRun.Mode.TRAIN:
        if search:
            message = "search settings need mode 'search'"
            raise ApplicationError(f"search: {message}", fields={"search": [message]})
        return mode, {}
    try:
        parsed = SearchConfig.from_dict({} if search is None else search)
    except ConfigError as error:
        fields = {
            f"search.{name}" if name != "search" else name: [message]
            for name, message in error.errors.items()
        }
        first = next(iter(fields))
        raise ApplicationError(f"{first}: {fields[first][0]}", fields=fields) from None
    if hyperparameters.get("ensemble_size", 1) > 1:
        message = "a search trains single models: set ensemble_size to 1"
        raise ApplicationError(
            f"hyperparameters.ensemble_size: {message}", fields={"hyperparameters.ensemble_size": [message]}
        )
    latest = time_limit_seconds - 2 * SOFT_LIMIT_MARGIN_SECONDS
    if parsed.time_budget_seconds is not None and parsed.time_budget_seconds > latest:
        message = (
            f"must end before the time limit: at most {latest} s with time_limit_seconds {time_limit_seconds}"
        )
        raise ApplicationError(
            f"search.time_budget_seconds: {message}", fields={"search.time_budget_seconds": [message]}
        )
    return mode, parsed.to_dict()


def _base_for_run(
    *, project: Project, base_model: str | None, base_reward_model: RewardModel | int | None
) -> tuple[str, RewardModel | None]:
    """The run's start: (an installed base model's name, None) or ("", a reward model of the project).

    A path, an unknown name, a missing reward model and another project's get answers that depend only on
    what was asked, never on what exists on the disk or in another project."""
    name = base_model.strip() if isinstance(base_model, str) else ""
    if bool(name) == (base_reward_model is not None):
        message = (
            "give either base_model (an installed base model) or base_reward_model (a reward model of this "
            "project to continue from)"
        )
        raise ApplicationError(message, fields={"base_model": [message]})
    if base_reward_model is not None:
        model_id = base_reward_model.pk if isinstance(base_reward_model, RewardModel) else base_reward_model
        found = None
        if isinstance(model_id, int) and not isinstance(model_id, bool) and 0 < model_id < 2**63:
            found = RewardModel.objects.filter(pk=model_id, project=project).first()
        if found is None:
            message = "not a reward model of this project"
            raise ApplicationError(f"base_reward_model: {message}", fields={"base_reward_model": [message]})
        return "", found
    if base_model_location(name) is None:
        listed = (
            ", ".join(base_models_installed()) or "none yet (the operator lists them in TRAINING_BASE_MODELS)"
        )
        hub = ", or a Hugging Face id (owner/name)" if hub_models_allowed() else ""
        message = f"not an installed base model; choose one of: {listed}{hub}"
        raise ApplicationError(f"base_model: {message}", fields={"base_model": [message]})
    return name, None


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
    base_model: str | None = None,
    base_reward_model: RewardModel | int | None = None,
    hyperparameters: dict[str, Any] | None = None,
    export: Export | int | None = None,
    policy: dict[str, Any] | None = None,
    created_by: Any = None,
    allow_below_target: bool = False,
    time_limit_seconds: int | None = None,
    trigger: str = TrainingRun.Trigger.MANUAL,
    enqueue: bool = True,
    mode: str = TrainingRun.Mode.TRAIN,
    search: dict[str, Any] | None = None,
) -> TrainingRun:
    """Validates a run request and records a queued run; with ``enqueue`` the gpu task is queued once the
    row is committed.

    The run starts from ``base_model``, the name of an installed base model, or continues from
    ``base_reward_model``, a reward model of this project. It trains on ``export`` (a succeeded preference
    export of this project) or, given ``policy`` instead, on an export the worker makes with that policy first. Refuses (400, the gate's reasons under
    ``allow_below_target``) when the project's latest agreement figures miss its quality targets, unless
    ``allow_below_target``. In ``mode`` "search" the run tries the hyperparameters of ``search`` (trials,
    time budget, space: ``rewardtrain.training.search``) and keeps the best trial's model."""
    base_model, base_reward_model = _base_for_run(
        project=project, base_model=base_model, base_reward_model=base_reward_model
    )
    hyperparameters = training_config_parse(hyperparameters=hyperparameters)
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
    mode, search = training_search_parse(
        mode=mode, search=search, time_limit_seconds=time_limit_seconds, hyperparameters=hyperparameters
    )
    log = ""
    gate = training_gate(project=project, export=chosen_export)
    if not gate["ok"] and not allow_below_target:
        reasons = list(gate["reasons"]) or ["the agreement figures miss the project's targets"]
        raise ApplicationError(
            "The project's judgments are below its quality targets: "
            + " ".join(reasons)
            + " Leave the flagged annotators out (an export with exclude_flagged), or start anyway with "
            "allow_below_target.",
            code="below_target",
            fields={"allow_below_target": reasons},
        )
    if not gate["ok"]:
        log = log_line("started below the quality targets: " + " ".join(gate["reasons"]))
    run = TrainingRun.objects.create(
        project=project,
        export=chosen_export,
        policy=parsed_policy,
        base_model=base_model,
        base_reward_model=base_reward_model,
        hyperparameters=hyperparameters,
        mode=mode,
        search=search,
        created_by=created_by,
        trigger=trigger,
        time_limit_seconds=time_limit_seconds,
        log=log,
    )
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(run))
    return run


# ----------------------------------------------------------------------------------------------------------
# Cancelling and activating


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancels a queued run at once; asks a running one to stop (its trainer sees the request before its
    next step, keeps a checkpoint and marks the run cancelled). Raises Conflict (409) for a finished run."""
    return job_cancel(run)


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
# Beat: retraining


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
        "base_reward_model": last.base_reward_model_id,
        "hyperparameters": last.hyperparameters,
        "mode": last.mode,
        "search": last.search,
        "policy": policy,
        "time_limit_seconds": last.time_limit_seconds,
        "new": new,
        "last": last.pk,
    }


def training_retrain_due(*, now: Any = None) -> list[TrainingRun]:
    """Beat: for each project with retraining on, starts a run like its latest one (base model or reward
    model it continued from, hyperparameters, export policy; a fresh export) once enough new human judgments arrived and agreement
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
                    base_reward_model=plan["base_reward_model"],
                    hyperparameters=plan["hyperparameters"],
                    mode=plan["mode"],
                    search=plan["search"],
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
