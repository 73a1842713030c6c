"""Helpers for tests that run work on other threads, each with a database connection of its own."""

from __future__ import annotations

from django.db import connection


def in_thread(function):
    """Wraps ``function`` for another thread: it gets its own database connection, closed afterwards."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connection.close()

    return run
