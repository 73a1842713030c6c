"""The truncation policy: fit a prompt and a response into ``max_length`` tokens, cutting the prompt's start
first, then the response's end, always keeping the special tokens that open a prompt and close a response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass
class TruncationReport:
    pairs: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0
    identical_pairs: int = 0
    dropped: int = 0  # always 0: the policy truncates, it never drops
    max_length: int = 0
    longest_sequence_before: int = 0
    tokens_before: int = 0
    tokens_after: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def cut_prompt(ids: Sequence[int], keep_head: int, keep: int) -> list[int]:
    """Keep the prompt's first ``keep_head`` tokens and its last ``keep - keep_head``."""
    ids = list(ids)
    if keep >= len(ids):
        return ids
    keep_head = min(keep_head, keep)
    rest = keep - keep_head
    return ids[:keep_head] + (ids[len(ids) - rest :] if rest > 0 else [])


def cut_response(ids: Sequence[int], keep_tail: int, keep: int) -> list[int]:
    """Keep the response's first ``keep - keep_tail`` tokens and its last ``keep_tail``."""
    ids = list(ids)
    if keep >= len(ids):
        return ids
    keep_tail = min(keep_tail, keep)
    return ids[: keep - keep_tail] + (ids[len(ids) - keep_tail :] if keep_tail else [])


def truncate_sequence(
    prefix: Sequence[int],
    continuation: Sequence[int],
    *,
    max_length: int,
    prompt_floor: int,
    keep_head: int = 0,
    keep_tail: int = 0,
) -> tuple[list[int], list[int], bool, bool]:
    """Fit ``prefix + continuation`` (a prompt and one response) into ``max_length`` tokens.

    The prompt is cut from its start first, down to ``prompt_floor`` tokens (or its own length); the response
    is cut from its end only when that is not enough. Returns the two token lists and whether the prompt and
    whether the response was cut.

    The one rule for training and scoring: a sequence's tokens depend on its prompt and response alone, never
    on the response it is compared with, so a reward model scores a response exactly as training saw it.
    """
    if len(prefix) + len(continuation) <= max_length:
        return list(prefix), list(continuation), False, False
    prompt_keep = min(len(prefix), max(max_length - len(continuation), min(prompt_floor, max_length - 1)))
    prompt_keep = max(prompt_keep, min(keep_head, len(prefix)))
    new_prefix = cut_prompt(prefix, keep_head, prompt_keep)
    new_continuation = cut_response(continuation, keep_tail, max(1, max_length - prompt_keep))
    return (
        new_prefix,
        new_continuation,
        len(new_prefix) < len(prefix),
        len(new_continuation) < len(continuation),
    )
