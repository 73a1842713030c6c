"""Rows and files for the import tests."""

from __future__ import annotations

import json
from typing import Any


def jsonl(*rows: dict[str, Any] | list | bytes) -> bytes:
    """A JSONL file of ``rows`` (bytes are taken as a line as it is)."""
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


def candidates_row(number: int, responses: int = 2) -> dict[str, Any]:
    """A prompt with ``responses`` candidate responses (every two make a pair)."""
    return {
        "id": f"p{number}",
        "prompt": f"Question {number}?",
        "responses": [{"id": f"r{index}", "content": f"Answer {index}."} for index in range(responses)],
    }
