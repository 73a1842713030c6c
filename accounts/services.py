"""User API tokens (django-rest-knox): one per login, kept as a SHA-512 hash with the secret's first 15
characters to find it by (``token_key``, which also names it in lists and URLs), expiring after
``USER_TOKEN_TTL_HOURS``. The secret is returned once, by ``user_token_create``. And the one-time link that
lets a user choose a password."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from knox.models import AuthToken

from accounts.authentication import accepted_tokens_forget


def user_token_create(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """A new token for the user, with its secret; the user's expired tokens are deleted on the way (the
    authentication of each request only refuses them, so that it never writes)."""
    AuthToken.objects.filter(user=user, expiry__lte=timezone.now()).delete()
    return AuthToken.objects.create(user=user, expiry=timedelta(hours=settings.USER_TOKEN_TTL_HOURS))


def user_token_revoke(*, user: AbstractBaseUser, token_key: str) -> bool:
    """Revokes one of the user's tokens; False when the user has no token by that key."""
    deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    accepted_tokens_forget()
    return deleted > 0


def user_tokens_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revokes every token of the user (on request, and when their password changes or they are
    deactivated); returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    accepted_tokens_forget()
    return deleted


def user_set_password_path(*, user: AbstractBaseUser) -> str:
    """The path of a link that lets the user choose a password, through Django's password reset views: it
    works once (the token is made from the password hash and the last login, which using it changes) and for
    PASSWORD_RESET_TIMEOUT seconds."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse(
        "password_reset_confirm", kwargs={"uidb64": uid, "token": default_token_generator.make_token(user)}
    )
