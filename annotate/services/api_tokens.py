"""Project API tokens: secrets that score with one project's reward models, made and revoked by its leads.

The secret (``plt_`` and 43 URL-safe characters, 256 random bits) is returned once by
``api_token_create`` and never stored: the row keeps its SHA-256 (a lookup key, not a password hash: a
random 256-bit secret needs no salt or slow hash) and its first characters to recognise it by.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import status

from annotate.models import Project, ProjectApiToken
from palate.errors import ApplicationError

SECRET_PREFIX = "plt_"
VISIBLE_CHARACTERS = 12
NAME_MAX_LENGTH = 100
# last_used_at is written at most this often, so a busy token does not write a row per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def api_token_secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(
    *, project: Project, name: str, created_by, expires_at: datetime | None = None
) -> tuple[ProjectApiToken, str]:
    """Makes a token for the project and returns it with its secret, which is shown to the caller once and
    cannot be recovered later. ``name`` must be unique among the project's tokens that are not revoked."""
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        message = f"a name of 1 to {NAME_MAX_LENGTH} characters"
        raise ApplicationError(f"name: give {message}", fields={"name": [message]})
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            expires_at = timezone.make_aware(expires_at)
        if expires_at <= timezone.now():
            raise ApplicationError(
                "expires_at: must be in the future", fields={"expires_at": ["must be in the future"]}
            )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            token = ProjectApiToken.objects.create(
                project=project,
                name=name,
                prefix=secret[:VISIBLE_CHARACTERS],
                secret_hash=api_token_secret_hash(secret),
                created_by=created_by,
                expires_at=expires_at,
            )
    except IntegrityError:
        message = f"this project already has a token named '{name}' (revoke it first, or pick another name)"
        raise ApplicationError(f"name: {message}", fields={"name": [message]}) from None
    return token, secret


def api_token_revoke(*, token: ProjectApiToken, revoked_by) -> ProjectApiToken:
    """Revokes the token from now on (requests already past authentication finish). Revoking a revoked
    token keeps its first revocation."""
    ProjectApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=revoked_by
    )
    token.refresh_from_db()
    return token


def api_token_authenticate(*, secret: str) -> ProjectApiToken:
    """The token whose secret this is, if it is neither revoked nor expired; records its use (at most once
    a minute). Raises a 401 ApplicationError that says which, otherwise."""
    token = (
        ProjectApiToken.objects.select_related("project")
        .filter(secret_hash=api_token_secret_hash(secret))
        .first()
    )
    if token is None:
        raise _refused("invalid API token")
    now = timezone.now()
    state = token.state(now)
    if state == "revoked":
        raise _refused(f"this API token ('{token.name}', {token.prefix}…) was revoked")
    if state == "expired":
        raise _refused(
            f"this API token ('{token.name}', {token.prefix}…) expired on {token.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        # Conditional: of concurrent requests only one writes, and only once per interval.
        ProjectApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_PRECISION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


def _refused(message: str) -> ApplicationError:
    return ApplicationError(message, code="authentication_failed", http_status=status.HTTP_401_UNAUTHORIZED)
