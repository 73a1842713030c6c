"""The scoring page: an engineer pastes a prompt and several responses and reads a reward model's score for
each and its best-of-N choice. Engineers, leads and site admins.

The page calls the same services as the scoring API (rewardtrain/services/scoring.py): the request goes to a
worker as a Celery task and the page waits for its answer, so the web process never loads a model. With
htmx the form and its result are swapped in place; without it the whole page is posted and rendered."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotate.models import Project
from annotate.views.access import project_for_page
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel
from rewardtrain.services.scoring import reward_model_best_of_n, reward_model_for_project, scoring_input_check
from rewardtrain.views import TRAINING_ROLES

ACTIVE = "active"
BOXES_AT_START = 2


def _model_choices(project: Project) -> tuple[list[tuple[str, str]], RewardModel | None]:
    """The model select's options (the active model first, then every version) and the active model."""
    models = list(RewardModel.objects.filter(project=project).order_by("-version")[:50])
    active = next((model for model in models if model.is_active), None)
    first = f"The active model (v{active.version})" if active else "The active model (none yet)"
    return [(ACTIVE, first)] + [(str(model.pk), f"v{model.version}") for model in models], active


def _form_from_post(data) -> dict[str, Any]:
    return {
        "model": data.get("model", ACTIVE),
        "prompt": data.get("prompt", ""),
        "responses": data.getlist("response"),
    }


def _blank_boxes_refused(form: dict[str, Any]) -> None:
    """A page rule, not the API's: an empty box is a box left unfilled (the API scores empty responses)."""
    fields: dict[str, list[str]] = {}
    if not form["prompt"].strip():
        fields["prompt"] = ["write the prompt the responses answer"]
    if not form["responses"]:
        fields["responses"] = ["add at least one response"]
    for index, response in enumerate(form["responses"]):
        if not response.strip():
            fields[f"responses.{index}"] = ["this box is empty: write a response or remove the box"]
    if fields:
        raise ApplicationError("Nothing was scored: fill in the boxes marked below.", fields=fields)


def _scored(project: Project, form: dict[str, Any]) -> dict[str, Any]:
    """The chosen model's scores of the form's responses, in the form's order, with its best-of-N choice."""
    _blank_boxes_refused(form)
    prompt = scoring_input_check(prompt=form["prompt"], messages=None, responses=form["responses"])
    chosen = form["model"]
    model = reward_model_for_project(project=project, reference=int(chosen) if chosen.isdigit() else ACTIVE)
    ranking = reward_model_best_of_n(reward_model=model, prompt=prompt, responses=form["responses"])
    rows = sorted(ranking, key=lambda row: row["index"])
    best = ranking[0]
    margin = best["raw"] - ranking[1]["raw"] if len(ranking) > 1 else None
    return {
        "model": model,
        "rows": rows,
        "best": best,
        "margin": margin,
        "tied": margin == 0,
        "normalised": best["normalised"] is not None,
    }


def _boxes(form: dict[str, Any], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    responses = form["responses"] or [""] * BOXES_AT_START
    return [
        {"number": index + 1, "text": text, "error": " ".join(errors.get(f"responses.{index}", []))}
        for index, text in enumerate(responses)
    ]


@login_required
def project_scoring(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, TRAINING_ROLES)
    choices, active = _model_choices(project)
    form: dict[str, Any] = {"model": ACTIVE, "prompt": "", "responses": []}
    result = None
    failure: ApplicationError | None = None
    if request.method == "POST":
        form = _form_from_post(request.POST)
        try:
            result = _scored(project, form)
        except ApplicationError as error:
            failure = error
    errors = failure.fields if failure else {}
    context = {
        "project": project,
        "role": role,
        "choices": choices,
        "active": active,
        "form": form,
        "boxes": _boxes(form, errors),
        "errors": {key: " ".join(value) for key, value in errors.items()},
        "failure": failure,
        "result": result,
        "max_responses": settings.SCORING_MAX_RESPONSES,
        "max_chars": settings.SCORING_MAX_CHARS,
        "max_chars_text": f"{settings.SCORING_MAX_CHARS:,}",
        "timeout": settings.SCORING_TIMEOUT_SECONDS,
    }
    template = "rewardtrain/_scoring_panel.html" if request.htmx else "rewardtrain/scoring.html"
    return render(request, template, context)
