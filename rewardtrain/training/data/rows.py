"""Preference rows checked and normalised: text or conversations, the prompt split off, the optional fields
read. No tokenizer here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardtrain.training.errors import DataError


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(m, Mapping) and "role" in m and "content" in m for m in value
    )


def _check_messages(index: int, name: str, value: Any) -> list[dict[str, str]]:
    if not _is_conversation(value):
        raise DataError(index, f"'{name}' must be text or a list of {{role, content}} messages")
    messages = []
    for message in value:
        if not isinstance(message["role"], str) or not isinstance(message["content"], str):
            raise DataError(index, f"'{name}': role and content must be strings")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def optional_number(index: int, row: Mapping, name: str, low: float | None = None, high: float | None = None):
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(index, f"'{name}' must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise DataError(index, f"'{name}' must be between {low} and {high}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Row:
    conversational: bool
    prompt: Any  # str or tuple of messages (hashable)
    chosen: Any
    rejected: Any


def _freeze(messages: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


def parse_row(index: int, row: Any) -> Row:
    if not isinstance(row, Mapping):
        raise DataError(index, f"must be an object, got {type(row).__name__}")
    for name in ("chosen", "rejected"):
        if name not in row or row[name] is None:
            raise DataError(index, f"'{name}' is missing")
    prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
    conversational = any(_is_conversation(v) and not isinstance(v, str) for v in (prompt, chosen, rejected))
    if not conversational:
        for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
            if value is not None and not isinstance(value, str):
                raise DataError(index, f"'{name}' must be text or a list of {{role, content}} messages")
        return Row(False, prompt or "", chosen, rejected)

    def as_messages(name: str, value: Any, role: str) -> list[dict[str, str]]:
        if isinstance(value, str):
            return [{"role": role, "content": value}]
        return _check_messages(index, name, value)

    chosen_messages = as_messages("chosen", chosen, "assistant")
    rejected_messages = as_messages("rejected", rejected, "assistant")
    if prompt is None:
        shared = 0
        while (
            shared < min(len(chosen_messages), len(rejected_messages)) - 1
            and chosen_messages[shared] == rejected_messages[shared]
        ):
            shared += 1
        prompt_messages = chosen_messages[:shared]
        chosen_messages, rejected_messages = chosen_messages[shared:], rejected_messages[shared:]
    else:
        prompt_messages = as_messages("prompt", prompt, "user")
    return Row(True, _freeze(prompt_messages), _freeze(chosen_messages), _freeze(rejected_messages))


def optional_fields(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The rows' optional fields as ``PairDataset``'s arrays: margin, vote share, weight and agreement, and
    whether any row gave each. Raises DataError naming the first bad row."""
    margin = np.zeros(len(rows), dtype=np.float32)
    vote_share = np.full(len(rows), np.nan, dtype=np.float32)
    weight = np.ones(len(rows), dtype=np.float32)
    agreement: list[Any] = []
    for index, row in enumerate(rows):
        value = optional_number(index, row, "margin")
        if value is not None:
            margin[index] = value
        value = optional_number(index, row, "vote_share", 0.0, 1.0)
        if value is not None:
            vote_share[index] = value
        value = optional_number(index, row, "weight", 0.0)
        if value is not None:
            weight[index] = value
        value = row.get("agreement")
        if value is not None and not isinstance(value, str):
            value = optional_number(index, row, "agreement", 0.0, 1.0)
        agreement.append(value)
    return {
        "margin": margin,
        "vote_share": vote_share,
        "weight": weight,
        "agreement": agreement,
        "has_margin": any(row.get("margin") is not None for row in rows),
        "has_vote_share": any(row.get("vote_share") is not None for row in rows),
        "has_weight": any(row.get("weight") is not None for row in rows),
    }
