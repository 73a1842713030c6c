"""Inviting someone to a project by email address, or making them an account with a one-time set-password
link: the account, its membership and the link, then the email."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string

from accounts.services import user_set_password_path
from annotate.models import Membership, Project
from annotate.services.members import membership_set
from palate.errors import ApplicationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invitation:
    membership: Membership
    # True also for an earlier invitee who never chose a password: they get a new link.
    account_created: bool
    # The absolute set-password link, for an account nobody has used yet; never for one someone uses.
    link: str = ""
    emailed: bool = False
    email_problem: str = ""


def _clean_email(email: str) -> str:
    email = email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ApplicationError(
                f"'{email}' is not an email address", fields={"email": ["enter a valid email address"]}
            ) from None
    return email


def _new_username(username: str, email: str) -> str:
    """The username asked for (refused when taken), or one made from the email address's local part."""
    User = get_user_model()
    if username:
        try:
            User.username_validator(username)
        except ValidationError as error:
            raise ApplicationError(
                f"username: {error.messages[0]}", fields={"username": error.messages}
            ) from None
        if len(username) > 150:
            raise ApplicationError("username: at most 150 characters", fields={"username": ["too long"]})
        if User.objects.filter(username=username).exists():
            raise ApplicationError(
                f"a user named '{username}' exists: add them by username instead",
                code="conflict",
                fields={"username": ["already taken"]},
                http_status=409,
            )
        return username
    base = re.sub(r"[^\w.@+-]", "", email.split("@")[0])[:140] or "user"
    candidate, number = base, 2
    while User.objects.filter(username=candidate).exists():
        candidate, number = f"{base}{number}", number + 1
    return candidate


@transaction.atomic
def _account_and_membership(
    *, project: Project, email: str, username: str, role: str
) -> tuple[Membership, bool]:
    User = get_user_model()
    existing = list(User.objects.filter(email__iexact=email)[:2]) if email else []
    if len(existing) > 1:
        raise ApplicationError(
            f"several accounts use '{email}': add the right one by username",
            fields={"email": ["used by several accounts"]},
        )
    if existing:
        membership, _ = membership_set(project=project, username=existing[0].username, role=role)
        # An invitee who never chose a password (their link expired, the email got lost) gets a new link.
        never_used = not existing[0].has_usable_password() and existing[0].last_login is None
        return membership, never_used
    user = User(username=_new_username(username, email), email=email)
    user.set_unusable_password()
    user.save()
    membership, _ = membership_set(project=project, username=user.username, role=role)
    return membership, True


def member_invite(
    *, project: Project, email: str = "", username: str = "", role: str, invited_by, site_url: str
) -> Invitation:
    """Adds the holder of ``email`` to the project, making them an account (with no password) when no
    account uses that address; a new account, or an invited one that never chose a password, gets a
    set-password link, emailed when there is an address.
    ``site_url`` is the origin the link starts with (``https://palate.example.org``).

    The email goes after the account is stored: a mail server that fails leaves the account and the link,
    which the lead can pass on another way."""
    email, username = _clean_email(email), username.strip()
    if not email and not username:
        raise ApplicationError(
            "give an email address, a username or both",
            fields={"email": ["email address or username needed"]},
        )
    membership, created = _account_and_membership(project=project, email=email, username=username, role=role)
    if not created:
        return Invitation(membership=membership, account_created=False)
    user = membership.user
    link = site_url.rstrip("/") + user_set_password_path(user=user)
    if not email:
        return Invitation(membership=membership, account_created=True, link=link)
    context = {
        "project": project,
        "user": user,
        "link": link,
        "invited_by": invited_by,
        "role": membership.get_role_display().lower(),
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    try:
        send_mail(
            render_to_string("registration/invitation_subject.txt", context).strip(),
            render_to_string("registration/invitation_email.txt", context),
            None,
            [email],
        )
    except OSError as error:  # smtplib's errors are OSErrors, as are refused connections
        logger.warning("invitation email to %s failed: %s", email, error)
        return Invitation(
            membership=membership, account_created=True, link=link, email_problem=str(error) or "unknown"
        )
    return Invitation(membership=membership, account_created=True, link=link, emailed=True)
