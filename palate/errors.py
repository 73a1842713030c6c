"""The one application error type, and the DRF exception handler that gives every API error one shape:

{"error": {"code": "...", "message": "...", "fields": {"field": ["message", ...]}}}

Django's own error views (``handler400`` … ``handler500`` in palate/urls.py) answer in that shape under
/api/ too: an address no endpoint matches (``/api/projects/x/``) is a JSON 404, not the 404 page.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A failure the user can act on. ``fields`` maps a field (or "line 17") to its messages."""

    code = "invalid"
    http_status = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


class Conflict(ApplicationError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turns DRF's nested error detail into {"field.sub": ["message"]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flatten(value, name))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_flatten(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
        return flat
    return {prefix or "non_field_errors": [str(detail)]}


def validation_error(detail: Any) -> ApplicationError:
    """A serializer's errors as the one error: the API answers with it, and a page shows the same message."""
    fields = _flatten(detail)
    first = next(iter(fields.items()))
    message = f"{first[0]}: {first[1][0]}" if first[0] != "non_field_errors" else first[1][0]
    return ApplicationError(message, fields=fields)


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("too_large", "the request body is larger than this server accepts"),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        error = validation_error(exc.detail)
        response.data = error_body(error.code, error.message, error.fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        if not isinstance(code, str):
            code = "error"
        response.data = error_body(code, str(detail))
    return response


def _api_or_page(page, *, status: int, code: str, message: str):
    """Django's error view ``page`` for pages; under /api/ the one error shape."""

    def view(request, *args, **kwargs):
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(code, message), status=status)
        return page(request, *args, **kwargs)

    return view


bad_request = _api_or_page(
    defaults.bad_request, status=400, code="bad_request", message="the request could not be read"
)
permission_denied = _api_or_page(
    defaults.permission_denied, status=403, code="permission_denied", message="you may not do this"
)
page_not_found = _api_or_page(
    defaults.page_not_found,
    status=404,
    code="not_found",
    message="no endpoint has this address (is every id in it a number?)",
)
server_error = _api_or_page(
    defaults.server_error, status=500, code="server_error", message="the server failed; the error is logged"
)
