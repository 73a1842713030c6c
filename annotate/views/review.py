"""Pages after the judging: the lead's list of flags and the page that settles a pair; the annotator's own
history of judgments and the page that changes one (inside the project's edit window)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from annotate.models import Choice, Judgment, PairFlag
from annotate.selectors import judgment_history, pair_flag_list, pair_for_lead
from annotate.services.adjudication import pair_adjudicate
from annotate.services.flags import pair_flag_dismiss
from annotate.services.judgments import (
    RATIONALE_MAX_LENGTH,
    JudgmentInput,
    judgment_edit,
    judgment_editable_since,
    to_screen_terms,
)
from annotate.views.access import ANNOTATOR_ROLES, LEAD_ROLES, project_for_page
from annotate.views.quality import pair_detail_context
from annotate.views.workspace import SCREEN_CHOICE_ORDER
from palate.errors import ApplicationError

FLAGS_PER_PAGE = 25
HISTORY_PER_PAGE = 25
SCREEN_CHOICE_LABELS = {"left": "Left better", "right": "Right better", "tie": "Tie", "both_bad": "Both bad"}


def _page(request: HttpRequest, items, per_page: int):
    """One page of ``items`` (``?page=``, out-of-range numbers give the last page)."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


# Leads: flags and settling -------------------------------------------------------------------------------


@login_required
def project_flags(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, LEAD_ROLES)
    state = "closed" if request.GET.get("state") == "closed" else "open"
    return render(
        request,
        "annotate/flags.html",
        {
            "project": project,
            "role": role,
            "state": state,
            "page": _page(request, pair_flag_list(project=project, state=state), FLAGS_PER_PAGE),
            "open_count": pair_flag_list(project=project, state="open").count(),
            "state_query": "state=closed" if state == "closed" else "",
        },
    )


@login_required
@require_POST
def project_flag_dismiss(request: HttpRequest, slug: str, flag_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    try:
        pair_flag_dismiss(flag_id=flag_id, project=project, dismissed_by=request.user)
    except ApplicationError as error:
        if error.http_status == 404:
            raise Http404(error.message) from None
        messages.info(request, "That flag was already closed.")
    else:
        messages.success(request, "Flag dismissed. The pair stays as it is.")
    return redirect("project-flags", slug=project.slug)


def _back_to(request: HttpRequest, fallback: str) -> str:
    """Where the settle page goes back to: ``?next=`` when it is a page of this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


@login_required
def pair_settle(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    """One pair with its judgments and open flags, and the form that settles it."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    try:
        pair = pair_for_lead(project=project, pair_id=pair_id)
    except ApplicationError:
        raise Http404("No such pair in this project.") from None
    adjudication = getattr(pair, "adjudication", None)
    values = {
        "label": adjudication.label if adjudication else "",
        "note": adjudication.note if adjudication else "",
    }
    failure = None
    if request.method == "POST":
        values = {"label": request.POST.get("label", ""), "note": request.POST.get("note", "")}
        try:
            pair_adjudicate(pair=pair, label=values["label"], note=values["note"], decided_by=request.user)
        except ApplicationError as error:
            failure = error
        else:
            label = Choice(values["label"]).label
            messages.success(request, f"Pair {pair.external_id or pair.pk} settled: {label}.")
            return redirect(_back_to(request, reverse("project-pair-settle", args=[project.slug, pair.pk])))
    flags = (
        PairFlag.objects.filter(pair=pair).select_related("annotator", "resolved_by").order_by("-created_at")
    )
    return render(
        request,
        "annotate/settle.html",
        {
            **pair_detail_context(project=project, pair=pair),
            "role": role,
            "adjudication": adjudication,
            "flags": flags,
            "values": values,
            "failure": failure,
            "label_choices": Choice.choices,
            "next": _back_to(request, ""),
        },
        status=400 if failure else 200,
    )


# Annotators: their own history ----------------------------------------------------------------------------


def _history_row(judgment: Judgment, editable_since) -> dict:
    choice = to_screen_terms(judgment.choice, shown_swapped=judgment.shown_swapped)
    return {
        "judgment": judgment,
        "choice": SCREEN_CHOICE_LABELS.get(choice, choice),
        "editable": judgment.created_at >= editable_since,
    }


@login_required
def project_history(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, ANNOTATOR_ROLES)
    page = _page(request, judgment_history(project=project, annotator=request.user), HISTORY_PER_PAGE)
    since = judgment_editable_since(project=project)
    return render(
        request,
        "annotate/history.html",
        {
            "project": project,
            "role": role,
            "page": page,
            "rows": [_history_row(judgment, since) for judgment in page],
            "edit_minutes": project.edit_window_seconds // 60,
        },
    )


def _edit_form(project, data) -> JudgmentInput:
    """The edit form's fields as a judgment in screen terms, their shape checked as the API's serializer
    does; the service checks the judgment against the project."""
    strength = data.get("strength", "").strip()
    if strength and not (strength.isdigit() and 1 <= int(strength) <= 32767):
        raise ApplicationError(
            "strength: must be a whole number", fields={"strength": ["must be a whole number"]}
        )
    rationale = data.get("rationale", "")
    if len(rationale) > RATIONALE_MAX_LENGTH:
        message = f"must be at most {RATIONALE_MAX_LENGTH} characters"
        raise ApplicationError(f"rationale: {message}", fields={"rationale": [message]})
    return JudgmentInput(
        choice=data.get("choice", ""),
        strength=int(strength) if strength else None,
        criteria={
            str(name): data[f"criterion-{name}"] for name in project.criteria if data.get(f"criterion-{name}")
        },
        rationale=rationale,
    )


@login_required
def project_history_edit(request: HttpRequest, slug: str, judgment_id: int) -> HttpResponse:
    """Changes one of the annotator's judgments through the same service as the workspace's undo."""
    project, role = project_for_page(request, slug, ANNOTATOR_ROLES)
    judgment = (
        judgment_history(project=project, annotator=request.user)
        .select_related("pair__response_a", "pair__response_b")
        .filter(pk=judgment_id)
        .first()
    )
    if judgment is None:
        raise Http404("No such judgment of yours in this project.")
    swapped = judgment.shown_swapped
    values = {
        "choice": to_screen_terms(judgment.choice, shown_swapped=swapped),
        "strength": judgment.strength,
        "criteria": {
            name: to_screen_terms(value, shown_swapped=swapped) for name, value in judgment.criteria.items()
        },
        "rationale": judgment.rationale,
    }
    failure = None
    if request.method == "POST":
        values = {
            "choice": request.POST.get("choice", ""),
            "strength": request.POST.get("strength", ""),
            "criteria": {name: request.POST.get(f"criterion-{name}", "") for name in project.criteria or []},
            "rationale": request.POST.get("rationale", ""),
        }
        try:
            data = _edit_form(project, request.POST)
            values["strength"] = data.strength
            judgment_edit(judgment_id=judgment.pk, annotator=request.user, data=data)
        except ApplicationError as error:
            failure = error
        else:
            messages.success(request, "Change saved. Your earlier answer is kept in the history.")
            return redirect("project-history", slug=project.slug)
    pair = judgment.pair
    left, right = (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)
    return render(
        request,
        "annotate/history_edit.html",
        {
            "project": project,
            "role": role,
            "judgment": judgment,
            "prompt": pair.prompt,
            "left": left.content,
            "right": right.content,
            "editable": judgment.created_at >= judgment_editable_since(project=project),
            "edit_minutes": project.edit_window_seconds // 60,
            "values": values,
            "failure": failure,
            "choices": [
                (choice, SCREEN_CHOICE_LABELS[choice])
                for choice in SCREEN_CHOICE_ORDER
                if choice in project.allowed_choices
            ],
            "strengths": list(range(1, project.strength_scale + 1)),
            "criteria": [
                (str(name), values["criteria"].get(str(name), "")) for name in project.criteria or []
            ],
        },
        status=400 if failure else 200,
    )
