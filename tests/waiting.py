"""Waiting, in tests, for what a worker process does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], *, seconds: float = 60.0, every: float = 0.2, about: Callable[[], Any] = str
) -> Any:
    """``condition()``'s first true value, asked every ``every`` seconds; AssertionError after ``seconds``,
    saying ``about()`` (what was waited on, as it stands)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds} s waiting: {about()}")
