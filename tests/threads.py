"""Helpers for tests that run work on other threads, each with a database connection of its own."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connection


def in_thread(function):
    """Wraps ``function`` for another thread: it gets its own database connection, closed afterwards."""

    def run(*args):
        try:
            return function(*args)
        finally:
            connection.close()

    return run


def import_with_a_pause(project, path, meanwhile, *, release_when=None, seconds: float = 10.0):
    """Imports ``path`` into ``project`` on another thread and, once its first chunk is written (its
    transaction still open), runs ``meanwhile()`` on a third. The import goes on when ``meanwhile``
    returns, when ``release_when()`` says so, or after ``seconds``.

    Returns the import's result, what ``meanwhile`` returned, and whether it returned before the import
    went on."""
    from annotate.services.import_rows import ImportOptions
    from annotate.services.imports import items_import

    first_chunk_written, go_on = threading.Event(), threading.Event()

    def pause_after_the_first_chunk(rows: int, read: int) -> None:
        first_chunk_written.set()
        go_on.wait(timeout=30)

    @in_thread
    def run_import():
        with path.open("rb") as stream:
            return items_import(
                project=project,
                stream=stream,
                filename=path.name,
                options=ImportOptions(),
                progress=pause_after_the_first_chunk,
            )

    with ThreadPoolExecutor(max_workers=2) as pool:
        imported = pool.submit(run_import)
        assert first_chunk_written.wait(timeout=30), "the import did not write its first chunk"
        done = pool.submit(in_thread(meanwhile))
        deadline = time.monotonic() + seconds
        try:
            while not done.done() and time.monotonic() < deadline:
                if release_when is not None and release_when():
                    break
                time.sleep(0.05)
            returned_while_paused = done.done()
        finally:
            go_on.set()
        return imported.result(timeout=30), done.result(timeout=30), returned_while_paused
