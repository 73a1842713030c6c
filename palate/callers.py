"""Who calls the annotators' two busiest endpoints, when the endpoint itself checks the caller's token."""

from __future__ import annotations

from palate.errors import ApplicationError


class UncheckedToken:
    """``request.user`` of a request whose token the endpoint checks in its own statement.

    The annotators' two busiest endpoints (next pair, submit) resolve the token inside the database call
    they make anyway, instead of a round trip of its own: for views that set ``checks_user_tokens``,
    ``palate.authentication.TokenAuthentication`` passes the key on unchecked, and the services those
    views call raise ``TokenRejected`` when it is unknown or its user may not log in. It has no ``pk``:
    nothing can act for it before that check."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return "<UncheckedToken>"


class TokenRejected(ApplicationError):
    """An ``UncheckedToken`` that turned out to be unknown, or whose user may not log in (401)."""

    code = "authentication_failed"
    http_status = 401
