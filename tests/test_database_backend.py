"""palate.postgresql: Django's PostgreSQL backend whose per-request health check needs no round trip while
the connection is quiet, and still notices a connection the server has ended."""

from __future__ import annotations

import select
import time

import psycopg
import pytest
from django.db import connections

connection = connections["default"]  # the wrapper itself (django.db.connection is a proxy to it)

pytestmark = pytest.mark.django_db(transaction=True)


def _next_request() -> None:
    """What Django does between two requests on a persistent connection (request_finished, request_started)."""
    connection.close_if_unusable_or_obsolete()
    connection.close_if_health_check_failed()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.fixture
def round_trips_of_the_check(monkeypatch) -> list[None]:
    calls: list[None] = []
    full_check = connection.is_usable

    def counted() -> bool:
        calls.append(None)
        return full_check()

    monkeypatch.setattr(connection, "is_usable", counted)
    return calls


def test_the_backend_is_palates_with_health_checks_on():
    assert connection.settings_dict["ENGINE"] == "palate.postgresql"
    assert connection.health_check_enabled


def test_a_quiet_connection_passes_the_check_without_a_round_trip(round_trips_of_the_check):
    pid = _backend_pid()

    _next_request()

    assert connection.health_check_done
    assert round_trips_of_the_check == []
    assert _backend_pid() == pid


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it(round_trips_of_the_check):
    pid = _backend_pid()
    _terminate(pid)

    _next_request()

    assert len(round_trips_of_the_check) == 1  # the full check ran, and failed
    assert connection.connection is None
    assert _backend_pid() != pid  # the request's query reconnected instead of failing


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "select (no poll, as on Windows)"])
def test_the_server_ending_a_connection_is_seen_with_poll_or_with_select(monkeypatch, poll):
    pid = _backend_pid()
    if not poll:
        monkeypatch.delattr(select, "poll")
    assert connection._quiet()
    _terminate(pid)

    assert not connection._quiet()
    connection.close()


def test_a_connection_inside_a_transaction_gets_the_full_check(round_trips_of_the_check):
    _backend_pid()
    connection.connection.execute("BEGIN")
    connection.health_check_done = False

    connection.close_if_health_check_failed()

    assert len(round_trips_of_the_check) == 1
    connection.connection.execute("ROLLBACK")


def _terminate(pid: int) -> None:
    """Ends the backend from another session, and waits until its farewell reaches our socket."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while (
        not select.select([connection.connection.fileno()], [], [], 0.05)[0] and time.monotonic() < deadline
    ):
        pass
