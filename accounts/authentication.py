"""User API tokens over HTTP: ``Authorization: Token <secret>``, django-rest-knox's tokens.

Knox's own class reads the token with an ORM query and then every other token of the user (deleting the
expired ones) on each request; the annotators' next and submit calls authenticate on every request, so
this class reads the token with its user in one hand-written statement and writes nothing: an expired
token is refused, and deleted when its user next logs in. ``request.auth`` is the ``AuthToken``.
"""

from __future__ import annotations

import threading
from functools import cache
from hmac import compare_digest

from cachetools import TTLCache
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Model
from django.db.models.base import ModelState
from django.utils import timezone
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions

from palate.sql import model_columns, model_from_row, model_width

INVALID = "Invalid token."


@cache
def _token_and_user_sql() -> str:
    user_model = get_user_model()
    quote = connection.ops.quote_name
    return (
        f"SELECT {model_columns(AuthToken, 't')}, {model_columns(user_model, 'u')} "
        f"FROM {quote(AuthToken._meta.db_table)} t JOIN {quote(user_model._meta.db_table)} u ON u.id = t.user_id "
        "WHERE t.token_key = %s"
    )


# Tokens this process accepted lately, by their hash: the annotators' next and submit calls then cost no
# round trip of their own. A revoked or expired token stops working here within USER_TOKEN_CACHE_SECONDS
# (at once in the process that revoked it); 0 turns the cache off.
_accepted: TTLCache | None = None
_accepted_guard = threading.Lock()


def _accepted_cache() -> TTLCache | None:
    global _accepted
    seconds = settings.USER_TOKEN_CACHE_SECONDS
    if seconds <= 0:
        return None
    if _accepted is None or _accepted.ttl != seconds:
        _accepted = TTLCache(maxsize=10_000, ttl=seconds)
    return _accepted


def accepted_tokens_forget() -> None:
    """Forgets every token this process accepted (call after revoking tokens)."""
    with _accepted_guard:
        if _accepted is not None:
            _accepted.clear()


def _instance_of_its_own(instance: Model) -> Model:
    """A copy of a cached row's instance for one request, without the pickling ``copy.copy`` goes through."""
    fresh = instance.__class__.__new__(instance.__class__)
    fresh.__dict__.update(instance.__dict__)
    fresh._state = ModelState()
    fresh._state.adding, fresh._state.db = False, instance._state.db
    return fresh


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request):
        # Every annotator request authenticates: a token accepted lately is found from the header alone,
        # before DRF's and knox's header parsing (the slow path below keeps their error messages).
        header = request._request.META.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Token ") and " " not in header[6:]:
            found = self._lately_accepted(hash_token(header[6:]))
            if found is not None:
                return found
        return super().authenticate(request)

    def _lately_accepted(self, digest: str):
        with _accepted_guard:
            cache = _accepted_cache()
            accepted = cache.get(digest) if cache is not None else None
        if accepted is None or (accepted[1].expiry is not None and accepted[1].expiry <= timezone.now()):
            return None
        # Each request gets instances of its own.
        user, auth_token = _instance_of_its_own(accepted[0]), _instance_of_its_own(accepted[1])
        auth_token.user = user
        return user, auth_token

    def authenticate_credentials(self, token: bytes):
        digest = hash_token(token.decode(errors="replace"))
        found = self._lately_accepted(digest)
        if found is not None:
            return found
        accepted = self._read(token)
        with _accepted_guard:
            cache = _accepted_cache()
            if cache is not None:
                cache[digest] = accepted
        return accepted

    def _read(self, token: bytes):
        try:
            secret = token.decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID) from None
        with connection.cursor() as cursor:
            cursor.execute(_token_and_user_sql(), [secret[: CONSTANTS.TOKEN_KEY_LENGTH]])
            rows = cursor.fetchall()
        digest = hash_token(secret)
        for row in rows:
            auth_token = model_from_row(AuthToken, row)
            if not compare_digest(digest, auth_token.digest):
                continue
            if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
                raise exceptions.AuthenticationFailed(
                    f"This token expired on {auth_token.expiry:%Y-%m-%d %H:%M} UTC: log in again "
                    "(POST /api/auth/token/) for a new one."
                )
            auth_token.user = model_from_row(get_user_model(), row, model_width(AuthToken))
            return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(INVALID)
