"""Project API tokens over HTTP: ``Authorization: Bearer plt_…``.

A token authenticates as nobody: ``request.user`` stays anonymous and ``request.auth`` is the
``ProjectApiToken``, so no code that acts for a user can act for its creator. The default permission
(``UserRequired``) refuses a token everywhere with 403 ``token_scope``; only views that list
``UserOrProjectApiToken`` (scoring and best-of-N) accept one, and they check the token's project themselves
(``api_token``): a token never reaches another project's models (404, as for an outsider).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import BasePermission

if TYPE_CHECKING:
    from annotate.models import ProjectApiToken

# DRF imports this module while rest_framework.views is still loading (its APIView reads the default
# classes), so the project's modules, which import DRF's views, are imported inside the functions. The
# schema extension for this class is in annotate/api/schema.py for the same reason.

KEYWORD = b"bearer"


class ProjectApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD:
            return None
        if len(header) != 2:
            raise AuthenticationFailed("give the token as 'Authorization: Bearer plt_…'")
        from django.contrib.auth.models import AnonymousUser

        from annotate.services.api_tokens import SECRET_PREFIX, api_token_authenticate
        from palate.errors import ApplicationError

        try:
            secret = header[1].decode()
        except UnicodeError:
            raise AuthenticationFailed("invalid API token") from None
        if not secret.startswith(SECRET_PREFIX):
            raise AuthenticationFailed(
                f"not a Palate API token (they start with '{SECRET_PREFIX}'); "
                "user tokens go as 'Authorization: Token …'"
            )
        try:
            token = api_token_authenticate(secret=secret)
        except ApplicationError as error:
            raise AuthenticationFailed(error.message) from None
        return AnonymousUser(), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def api_token(request) -> ProjectApiToken | None:
    """The project API token the request came with, if any."""
    from annotate.models import ProjectApiToken

    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ProjectApiToken) else None


class UserRequired(BasePermission):
    """The default permission: a logged-in user. A project API token is refused with 403 ``token_scope``
    (it is valid, but only for scoring)."""

    def has_permission(self, request, view) -> bool:
        token = api_token(request)
        if token is not None:
            raise PermissionDenied(
                f"this API token only scores and ranks responses with the reward models of project "
                f"{token.project_id} (…/score/ and …/best-of-n/); log in or use a user token for anything else",
                code="token_scope",
            )
        return bool(request.user and request.user.is_authenticated)


class UserOrProjectApiToken(BasePermission):
    """A logged-in user (whose role the view checks) or a project API token (whose project the view checks
    from ``api_token``)."""

    def has_permission(self, request, view) -> bool:
        return api_token(request) is not None or bool(request.user and request.user.is_authenticated)
