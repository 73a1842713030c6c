"""The best-of-N sampling page: a prompt, a system and N; the system writes N responses, the reward model
scores them (on the scoring worker) and the page shows them all, best first. Leads, engineers and site
admins. Nothing is stored. The service does the work (generation/services/best_of_n.py)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotate.rendering import render_untrusted
from annotate.views.access import READER_ROLES, project_for_page
from generation.models import System
from generation.selectors import systems_of_project
from generation.services.best_of_n import reward_model_sample_best_of_n
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel


@login_required
def project_sample_best_of_n(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, READER_ROLES)
    models = list(RewardModel.objects.filter(project=project).order_by("-is_active", "-version")[:50])
    systems = list(systems_of_project(project=project))
    form = {"prompt": "", "n": "4", "reward_model": "", "system": ""}
    outcome, failure = None, ""
    if request.method == "POST":
        form = {name: request.POST.get(name, "") for name in form}
        model = next((m for m in models if str(m.pk) == form["reward_model"]), None)
        system = (
            System.objects.filter(project=project, pk=form["system"] or 0).first()
            if form["system"].isdigit()
            else None
        )
        try:
            if model is None or system is None:
                raise ApplicationError("choose a reward model and a system")
            if not form["prompt"].strip():
                raise ApplicationError("write a prompt")
            outcome = reward_model_sample_best_of_n(
                reward_model=model,
                system=system,
                prompt=form["prompt"],
                n=int(form["n"]) if form["n"].isdigit() else 0,
            )
        except ApplicationError as error:
            failure = error.message
    samples = []
    if outcome is not None:
        samples = sorted(
            ({**sample, "html": render_untrusted(sample["response"])} for sample in outcome["samples"]),
            key=lambda sample: sample["rank"],
        )
    context = {
        "project": project,
        "role": role,
        "models": models,
        "systems": systems,
        "form": form,
        "failure": failure,
        "samples": samples,
    }
    return render(request, "generation/sample.html", context, status=400 if failure else 200)
