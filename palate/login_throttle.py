"""Refuses logins for a username, or from an address, after repeated failures within a window.

Kept in the cache, which is shared by every process (a file cache by default, Redis in production).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, address: str) -> list[str]:
    return [
        f"palate:login-failures:user:{username.lower()[:150]}",
        f"palate:login-failures:address:{address}",
    ]


def login_blocked(*, username: str, address: str) -> bool:
    counts = cache.get_many(_keys(username, address))
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts.values())


def login_failed(*, username: str, address: str) -> None:
    for key in _keys(username, address):
        if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_succeeded(*, username: str) -> None:
    cache.delete(_keys(username, "")[0])


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


BLOCKED_MESSAGE = "Too many failed logins. Wait {minutes} minutes and try again."


def blocked_message() -> str:
    return BLOCKED_MESSAGE.format(minutes=max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60))
