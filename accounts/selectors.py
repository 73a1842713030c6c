from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from knox.models import AuthToken


def user_token_list(*, user: AbstractBaseUser) -> QuerySet[AuthToken]:
    """The user's tokens, newest first, expired ones included until the user next logs in."""
    return AuthToken.objects.filter(user=user).order_by("-created")
