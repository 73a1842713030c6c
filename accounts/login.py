"""Failed logins, counted by django-axes for every way of logging in (the login page, the admin's and the
token endpoint all go through ``authenticate()``, where axes' backend refuses a locked account or address).

What axes is configured with (palate/settings.py names these):

- ``login_username``: the one normalisation of a typed username (surrounding whitespace, Unicode NFKC as
  Django's username field does), so that " hank" and "hank\\t" count against hank.
- ``client_address``: the client's address, from X-Forwarded-For only behind ``TRUSTED_PROXY_COUNT``
  proxies.
- ``LoginFailureHandler``: a limit for the account and a higher one for the address.
- ``lockout_response``: 429, in the API's error shape under /api/, else a page.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from palate.errors import error_body


def login_username(raw: str | None) -> str:
    """The username a login attempt names, as authentication compares it."""
    return get_user_model().normalize_username((raw or "").strip())


def axes_username(request: HttpRequest, credentials: dict | None) -> str:
    field = get_user_model().USERNAME_FIELD
    raw = credentials.get(field) if credentials else request.POST.get(field)
    return login_username(raw)


def client_address(request: HttpRequest) -> str | None:
    """The address of the client: REMOTE_ADDR, or behind ``TRUSTED_PROXY_COUNT`` proxies the address the
    outermost of them added to X-Forwarded-For (each proxy appends its peer, so the entries before are the
    client's to write and are ignored). django-ipware counts the proxies listed in the header instead,
    which nginx does not list, and gives no address at all when a client adds an entry of its own."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    candidate = hops[-min(proxies, len(hops))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def failure_limit(request: HttpRequest, credentials: dict | None) -> int:
    # Axes' one limit; LoginFailureHandler applies each parameter's own, which is never higher.
    return max(settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_ADDRESS_LIMIT)


def failure_window(request: HttpRequest | None) -> timedelta:
    return timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


class LoginFailureHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit for each lockout parameter: an account is refused after
    ``LOGIN_FAILURE_LIMIT`` failures, an address after ``LOGIN_FAILURE_ADDRESS_LIMIT`` (higher: an office
    or a NAT puts many people behind one address). Axes has one limit for all; its maintainers point to a
    handler for this (jazzband/django-axes#661). Relies on ``AXES_LOCKOUT_PARAMETERS`` being
    ``["username", "ip_address"]``, in that order."""

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        by_username, by_address = (
            attempts.aggregate(failures=Sum("failures_since_start"))["failures"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        return (
            by_username >= settings.LOGIN_FAILURE_LIMIT or by_address >= settings.LOGIN_FAILURE_ADDRESS_LIMIT
        )

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is not None:
            request.axes_locked_out = self.is_locked(request, credentials)
            request.axes_credentials = credentials


def lockout_message() -> str:
    minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
    return f"Too many failed logins. Wait {minutes} minutes and try again."


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """What a refused login gets, in place of the view's answer (axes' middleware calls this)."""
    status = settings.AXES_HTTP_RESPONSE_CODE
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("throttled", lockout_message()), status=status)
    return render(request, "registration/locked_out.html", {"message": lockout_message()}, status=status)
