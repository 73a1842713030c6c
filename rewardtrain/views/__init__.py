"""The training pages: start a run, the run list and retraining settings; one run's live progress and its
evaluation report. Engineers, leads and site admins. The services do the work (rewardtrain/services/runs.py).
The scoring page is in ``scoring.py`` beside this file."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.models import Export, Membership, Project
from annotate.services.exports import ExportPolicy
from annotate.views.access import project_for_page
from palate.errors import ApplicationError
from rewardtrain.base_models import base_model_description, base_models_installed, hub_models_allowed
from rewardtrain.models import RewardModel, ScoringJob, TrainingRun
from rewardtrain.selectors import (
    reward_model_drift,
    reward_model_has_scores,
    reward_model_length_bias,
    reward_model_previous,
    training_run_trials,
)
from rewardtrain.services import runs as runs_service
from rewardtrain.services.runs import (
    retraining_settings_get,
    retraining_settings_update,
    reward_model_activate,
    training_run_cancel,
    training_run_create,
)
from rewardtrain.services.scoring import scoring_job_create
from rewardtrain.training.config import TrainConfig
from rewardtrain.training.search import SearchConfig

TRAINING_ROLES = (Membership.Role.LEAD, Membership.Role.ENGINEER)
HUB_CHOICE = "hub:"
# The form's sections, in order; fields not named here go under "More".
SECTIONS = (
    ("Optimisation", ("learning_rate", "num_epochs", "batch_size", "gradient_accumulation_steps", "lr_scheduler",
                      "warmup_ratio", "weight_decay", "max_grad_norm", "seed")),
    ("Sequences and loss", ("max_length", "min_prompt_tokens", "use_margins", "use_soft_labels",
                            "center_rewards_coefficient", "append_eos", "disable_dropout", "pooling",
                            "encoder_layout")),
    ("Validation and model selection", ("validation_share", "validation_seed", "eval_steps", "selection_metric",
                                        "early_stopping_patience", "calibrate", "ensemble_size")),
    ("Evaluation and checkpoints", ("eval_batch_size", "save_steps", "save_total_limit")),
    ("Efficiency", ("mixed_precision", "shared_prefix", "deduplicate_sequences", "gradient_checkpointing",
                    "chunk_overhead_tokens")),
    ("LoRA", ("use_lora", "lora_r", "lora_alpha", "lora_dropout")),
)  # fmt: skip


def _fields() -> list[dict[str, Any]]:
    return [field for field in TrainConfig.describe() if field["name"] != "base_model"]


def _hyperparameters_from_form(data) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values as hyperparameters: blank numbers take their defaults, unticked boxes are false.
    Returns the values and the fields that are not numbers; the service checks the rest."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in _fields():
        name, kind = field["name"], field["type"].removesuffix(" | None")
        if kind == "bool":
            values[name] = f"hp-{name}" in data
            continue
        raw = data.get(f"hp-{name}", "").strip()
        if raw == "":
            continue
        if kind == "int":
            try:
                values[name] = int(raw)
            except ValueError:
                problems[name] = f"must be a whole number, got {raw!r}"
        elif kind == "float":
            try:
                values[name] = float(raw)
            except ValueError:
                problems[name] = f"must be a number, got {raw!r}"
        else:
            values[name] = raw
    return values, problems


def _form_sections(values: dict[str, Any], errors: dict[str, str]) -> list[dict[str, Any]]:
    by_name = {field["name"]: field for field in _fields()}
    placed: set[str] = set()
    sections = []
    for title, names in SECTIONS:
        rows = []
        for name in names:
            if name in by_name:
                placed.add(name)
                rows.append(_form_field(by_name[name], values, errors))
        sections.append({"title": title, "fields": rows})
    rest = [_form_field(by_name[name], values, errors) for name in by_name if name not in placed]
    if rest:
        sections.append({"title": "More", "fields": rest})
    return sections


def _form_field(field: dict[str, Any], values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    name = field["name"]
    kind = field["type"].removesuffix(" | None")
    value = values.get(name, field["default"])
    widget = (
        "checkbox"
        if kind == "bool"
        else "select"
        if "choices" in field
        else "number"
        if kind in {"int", "float"}
        else "text"
    )
    step = "1" if kind == "int" else "any"
    return {
        **field,
        "label": name.replace("_", " ")
        .capitalize()
        .replace("Lr ", "LR ")
        .replace("Lora", "LoRA")
        .replace("eos", "EOS"),
        "widget": widget,
        "value": "" if value is None else value,
        "step": step,
        "min": field.get("ge", field.get("gt")),
        "max": field.get("le", field.get("lt")),
        "error": errors.get(name, ""),
    }


def _base_value(run: TrainingRun | None, installed: list[str]) -> str:
    """The base select's value for a run's choice (the form starts from the latest run's)."""
    if run is not None and run.base_reward_model_id is not None:
        return f"reward-model:{run.base_reward_model_id}"
    if run is not None and run.base_model in installed:
        return f"model:{run.base_model}"
    if run is not None and run.base_model and hub_models_allowed():
        return HUB_CHOICE
    return f"model:{installed[0]}" if installed else ""


def _base_choices(
    installed: dict[str, str], models: list[RewardModel]
) -> list[tuple[str, list[tuple[str, str]]]]:
    """The base select's groups: the installed base models, the hub where workers reach it, then the
    project's reward models."""
    groups = [
        (
            "Installed on the workers",
            [
                (f"model:{name}", f"{name} ({base_model_description(name, location)})")
                for name, location in installed.items()
            ],
        ),
        (
            "From the Hugging Face hub",
            [(HUB_CHOICE, "A Hugging Face id (type it below)")] if hub_models_allowed() else [],
        ),
        (
            "This project's reward models (train further)",
            [(f"reward-model:{model.pk}", f"Reward model v{model.version}") for model in models],
        ),
    ]
    return [(label, options) for label, options in groups if options]


def _base_from_form(value: str, hub_model: str) -> dict[str, Any]:
    """The base select's value (``model:<name>``, ``hub:`` with the typed id, or ``reward-model:<id>``) as
    the service's arguments."""
    kind, _, chosen = value.partition(":")
    if kind == "reward-model":
        return {"base_reward_model": int(chosen) if chosen.isdigit() else 0}
    if kind == "hub":
        return {"base_model": hub_model}
    return {"base_model": chosen if kind == "model" else ""}


def _runs(project: Project) -> tuple[list[TrainingRun], bool]:
    runs = list(
        TrainingRun.objects.filter(project=project)
        .select_related("export", "created_by", "reward_model", "base_reward_model")
        .defer("metrics", "log", "traceback")
        .order_by("-created_at", "-id")[:30]
    )
    return runs, any(run.status in {TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING} for run in runs)


@login_required
def project_training(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, TRAINING_ROLES)
    exports = list(
        Export.objects.filter(
            project=project, status=Export.Status.SUCCEEDED, policy__kind="preference"
        ).order_by("-version")[:50]
    )
    last = TrainingRun.objects.filter(project=project).order_by("-created_at", "-id").first()
    values: dict[str, Any] = dict(last.hyperparameters) if last else {}
    installed = base_models_installed()
    models = list(RewardModel.objects.filter(project=project).order_by("-version")[:50])
    form = {
        "source": "export" if exports else "policy",
        "export": str(exports[0].pk) if exports else "",
        "policy": json.dumps((exports[0].policy if exports else ExportPolicy().as_dict()), indent=2),
        "base": _base_value(last, list(installed)),
        "hub_model": last.base_model if last and last.base_model not in installed else "",
        "allow_below_target": False,
        "mode": last.mode if last else TrainingRun.Mode.TRAIN,
        "search": json.dumps(last.search if last and last.search else SearchConfig().to_dict(), indent=2),
    }
    errors: dict[str, str] = {}
    failure = ""
    if request.method == "POST":
        data = request.POST
        form = {
            "source": data.get("source", "export"),
            "export": data.get("export", ""),
            "policy": data.get("policy", ""),
            "base": data.get("base", ""),
            "hub_model": data.get("hub_model", "").strip(),
            "allow_below_target": "allow_below_target" in data,
            "mode": data.get("mode", TrainingRun.Mode.TRAIN),
            "search": data.get("search", ""),
        }
        values, errors = _hyperparameters_from_form(data)
        try:
            if errors:
                first = next(iter(errors))
                raise ApplicationError(f"{first}: {errors[first]}")
            source: dict[str, Any] = {}
            if form["source"] == "policy":
                try:
                    source["policy"] = json.loads(form["policy"] or "{}")
                except json.JSONDecodeError as error:
                    raise ApplicationError(
                        f"policy: not JSON ({error})", fields={"policy": ["not JSON"]}
                    ) from None
            else:
                source["export"] = int(form["export"]) if form["export"].isdigit() else None
                if source["export"] is None:
                    raise ApplicationError(
                        "export: choose an export", fields={"export": ["choose an export"]}
                    )
            search = None
            if form["mode"] == TrainingRun.Mode.SEARCH:
                try:
                    search = json.loads(form["search"] or "{}")
                except json.JSONDecodeError as error:
                    raise ApplicationError(
                        f"search: not JSON ({error})", fields={"search": ["not JSON"]}
                    ) from None
            run = training_run_create(
                project=project,
                hyperparameters=values,
                mode=form["mode"],
                search=search,
                created_by=request.user,
                allow_below_target=form["allow_below_target"],
                **_base_from_form(form["base"], form["hub_model"]),
                **source,
            )
        except ApplicationError as error:
            failure = error.message
            for key, messages_ in error.fields.items():
                errors[key.removeprefix("hyperparameters.")] = " ".join(messages_)
        else:
            messages.success(request, f"Run {run.pk} is queued; it shows below with its progress.")
            return redirect("project-training-run", slug=project.slug, run_id=run.pk)
    runs, any_running = _runs(project)
    return render(
        request,
        "rewardtrain/training.html",
        {
            "project": project,
            "role": role,
            "form": form,
            "errors": errors,
            "failure": failure,
            "sections": _form_sections(values, errors),
            "exports": exports,
            "gate": runs_service.training_gate(project=project),
            "runs": runs,
            "any_running": any_running,
            "retraining": retraining_settings_get(project=project),
            "base_choices": _base_choices(installed, models),
            "hub_models": hub_models_allowed(),
            "models": models[:10],
        },
    )


@login_required
def project_training_runs(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, TRAINING_ROLES)
    runs, any_running = _runs(project)
    return render(
        request, "rewardtrain/_runs.html", {"project": project, "runs": runs, "any_running": any_running}
    )


@login_required
@require_POST
def project_retraining(request: HttpRequest, slug: str) -> HttpResponse:
    project, _ = project_for_page(request, slug, TRAINING_ROLES)
    raw = request.POST.get("min_new_judgments", "").strip()
    try:
        retraining_settings_update(
            project=project,
            enabled="enabled" in request.POST,
            min_new_judgments=int(raw) if raw.isdigit() else -1,
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Retraining settings saved.")
    return redirect("project-training", slug=project.slug)


def _run_for_page(request: HttpRequest, slug: str, run_id: int) -> tuple[Project, str, TrainingRun]:
    project, role = project_for_page(request, slug, TRAINING_ROLES)
    run = get_object_or_404(
        TrainingRun.objects.select_related("export", "created_by", "reward_model", "base_reward_model"),
        pk=run_id,
        project=project,
    )
    return project, role, run


def _chart_data(run: TrainingRun) -> dict[str, Any]:
    return {
        "status": run.status,
        "metrics": run.metrics or [],
        "evaluation": {
            key: (run.evaluation or {}).get(key) for key in ("calibration", "length_bias", "histogram", "ece")
        },
    }


def _scoring(model: RewardModel) -> dict[str, Any]:
    """Batch scoring of the run's model: its latest job, and the reward hacking checks once it has scores
    (length bias, and drift from the previous version over the responses both scored)."""
    job = ScoringJob.objects.filter(reward_model=model).order_by("-created_at", "-id").first()
    has_scores = reward_model_has_scores(reward_model=model)
    previous = reward_model_previous(reward_model=model)
    length_bias = reward_model_length_bias(reward_model=model) if has_scores else None
    drift = None
    if has_scores and previous is not None and reward_model_has_scores(reward_model=previous):
        drift = reward_model_drift(before=previous, after=model)
    return {
        "model": model,
        "job": job,
        "pending": job is not None and job.status in {ScoringJob.Status.QUEUED, ScoringJob.Status.RUNNING},
        "has_scores": has_scores,
        "previous": previous,
        "length_bias": length_bias,
        "drift": drift,
        "chart": {
            "version": model.version,
            "previous": previous.version if previous else None,
            "lengthBias": length_bias,
            "drift": drift,
        },
    }


@login_required
def project_training_run(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, role, run = _run_for_page(request, slug, run_id)
    model = getattr(run, "reward_model", None)
    return render(
        request,
        "rewardtrain/run.html",
        {
            "project": project,
            "role": role,
            "run": run,
            "trials": training_run_trials(run=run),
            "chart": _chart_data(run),
            "hyperparameters_json": json.dumps(run.hyperparameters, indent=2),
            "search_json": json.dumps(run.search, indent=2),
            "policy_json": json.dumps(run.export.policy if run.export else run.policy, indent=2),
            "scoring": _scoring(model) if model is not None else None,
        },
    )


@login_required
def project_training_run_live(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, _, run = _run_for_page(request, slug, run_id)
    context = {"project": project, "run": run, "trials": training_run_trials(run=run), "poll": True}
    return render(request, "rewardtrain/_run_live.html", {**context, "chart": _chart_data(run)})


@login_required
@require_POST
def project_training_run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, _, run = _run_for_page(request, slug, run_id)
    try:
        run = training_run_cancel(run=run)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        done = run.status == TrainingRun.Status.CANCELLED
        messages.success(
            request, "Run cancelled." if done else "Stopping: the run ends after its current step."
        )
    return redirect("project-training-run", slug=project.slug, run_id=run.pk)


@login_required
@require_POST
def project_reward_model_activate(request: HttpRequest, slug: str, model_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, TRAINING_ROLES)
    model = get_object_or_404(RewardModel, pk=model_id, project=project)
    reward_model_activate(reward_model=model)
    messages.success(request, f"Reward model v{model.version} is now the project's active model.")
    return redirect("project-training-run", slug=project.slug, run_id=model.run_id)


@login_required
@require_POST
def project_reward_model_score(request: HttpRequest, slug: str, model_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, TRAINING_ROLES)
    model = get_object_or_404(RewardModel, pk=model_id, project=project)
    try:
        job = scoring_job_create(reward_model=model, created_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"Scoring job {job.pk} is queued: {job.total} responses for a gpu worker to score."
        )
    return redirect(reverse("project-training-run", args=[project.slug, model.run_id]) + "#scoring")


@login_required
def project_scoring_job_live(request: HttpRequest, slug: str, model_id: int) -> HttpResponse:
    """The batch scoring card (an htmx partial, polled while the job is pending)."""
    project, _ = project_for_page(request, slug, TRAINING_ROLES)
    model = get_object_or_404(RewardModel, pk=model_id, project=project)
    job = ScoringJob.objects.filter(reward_model=model).order_by("-created_at", "-id").first()
    pending = job is not None and job.status in {ScoringJob.Status.QUEUED, ScoringJob.Status.RUNNING}
    scoring = {"model": model, "job": job, "pending": pending}
    return render(request, "rewardtrain/_scoring_job.html", {"project": project, "scoring": scoring})
