"""A project's members and its API tokens (leads)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotate.models import Membership, Project, ProjectApiToken
from annotate.selectors import api_token_list, member_removal_consequences, membership_list
from annotate.services.api_tokens import api_token_create, api_token_revoke
from annotate.services.invitations import Invitation, member_invite
from annotate.services.members import membership_remove, membership_set
from annotate.views.access import LEAD_ROLES, project_for_page
from palate.errors import ApplicationError


def _parse_attributes(text: str) -> dict[str, str]:
    attributes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ApplicationError(
                f"attribute {item!r} must look like key=value", fields={"attributes": ["key=value"]}
            )
        attributes[key.strip()] = value.strip()
    return attributes


@login_required
def project_members(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_page(request, slug, LEAD_ROLES)
    form_values: dict[str, str] = {"role": Membership.Role.ANNOTATOR}
    if request.method == "POST":
        form_values = {key: request.POST.get(key, "") for key in ("username", "role", "attributes")}
        try:
            membership, created = membership_set(
                project=project,
                username=form_values["username"].strip(),
                role=form_values["role"],
                attributes=_parse_attributes(form_values["attributes"]),
            )
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            verb = "added as" if created else "is now"
            messages.success(
                request, f"{membership.user.username} {verb} {membership.get_role_display().lower()}."
            )
            return redirect("project-members", slug=project.slug)
    return _members_page(request, project, role, form_values=form_values)


# The expiry choices of the token form, in days ("" for never).
API_TOKEN_EXPIRY_DAYS = (("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year"))


def _members_page(
    request: HttpRequest,
    project: Project,
    role: str,
    *,
    form_values: dict[str, str] | None = None,
    token_values: dict[str, str] | None = None,
    new_token: tuple[ProjectApiToken, str] | None = None,
    invite_values: dict[str, str] | None = None,
    invitation: Invitation | None = None,
) -> HttpResponse:
    now = timezone.now()
    tokens = [(token, token.state(now)) for token in api_token_list(project=project)]
    response = render(
        request,
        "annotate/members.html",
        {
            "project": project,
            "role": role,
            "memberships": membership_list(project=project),
            "roles": Membership.Role.choices,
            "form_values": form_values or {"role": Membership.Role.ANNOTATOR},
            "api_tokens": tokens,
            "token_values": token_values or {"expires": ""},
            "token_expiry_days": API_TOKEN_EXPIRY_DAYS,
            "new_token": new_token,
            "invite_values": invite_values or {"role": Membership.Role.ANNOTATOR},
            "invitation": invitation,
            "password_link_days": settings.PASSWORD_RESET_TIMEOUT // 86400,
        },
    )
    if new_token is not None or invitation is not None:
        # The secret (a token, a set-password link) is in this page and nowhere else: no cache may keep it.
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def project_api_token_create(request: HttpRequest, slug: str) -> HttpResponse:
    """Makes a token and shows its secret on this response only (a reload asks to send the form again)."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    values = {key: request.POST.get(key, "") for key in ("name", "expires")}
    try:
        if values["expires"] not in dict(API_TOKEN_EXPIRY_DAYS):
            raise ApplicationError("expires: choose one of the listed expiries")
        days = int(values["expires"] or 0)
        expires_at = timezone.now() + timedelta(days=days) if days else None
        token, secret = api_token_create(
            project=project, name=values["name"], expires_at=expires_at, created_by=request.user
        )
    except ApplicationError as error:
        messages.error(request, error.message)
        return _members_page(request, project, role, token_values=values)
    return _members_page(request, project, role, new_token=(token, secret))


@login_required
@require_POST
def project_api_token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    project, _ = project_for_page(request, slug, LEAD_ROLES)
    token = ProjectApiToken.objects.filter(pk=token_id, project=project).first()
    if token is None:
        raise Http404("No such API token.")
    api_token_revoke(token=token, revoked_by=request.user)
    messages.success(request, f"The API token '{token.name}' ({token.prefix}…) is revoked.")
    return redirect("project-members", slug=project.slug)


@login_required
@require_POST
def project_member_invite(request: HttpRequest, slug: str) -> HttpResponse:
    """Adds the holder of an email address, or makes a new account; a new account's set-password link is
    shown on this response only, and emailed when there is an address."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    values = {key: request.POST.get(key, "") for key in ("email", "username", "role")}
    try:
        invitation = member_invite(
            project=project,
            email=values["email"],
            username=values["username"],
            role=values["role"],
            invited_by=request.user,
            site_url=f"{request.scheme}://{request.get_host()}",
        )
    except ApplicationError as error:
        messages.error(request, error.message)
        return _members_page(request, project, role, invite_values=values)
    membership = invitation.membership
    if not invitation.account_created:
        messages.success(
            request,
            f"{membership.user.username} already has an account with that address: added as "
            f"{membership.get_role_display().lower()}.",
        )
        return redirect("project-members", slug=project.slug)
    return _members_page(request, project, role, invitation=invitation)


@login_required
def project_member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    """Asks first (GET), saying what the removal touches; removes on POST."""
    project, role = project_for_page(request, slug, LEAD_ROLES)
    if request.method != "POST":
        membership = (
            Membership.objects.filter(project=project, user__username=username).select_related("user").first()
        )
        if membership is None:
            raise Http404("No such member.")
        consequences = member_removal_consequences(membership=membership)
        return render(
            request,
            "annotate/member_remove.html",
            {"project": project, "role": role, "membership": membership, "consequences": consequences},
        )
    try:
        membership_remove(project=project, username=username)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{username} was removed from the project.")
    return redirect("project-members", slug=project.slug)
