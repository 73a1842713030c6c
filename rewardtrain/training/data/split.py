"""The validation split held out of the training pairs when an export has none: prompt-disjoint and seeded.

A prompt's pairs all go to one side, so validation measures what the issue asks of a reward model, accuracy on
prompts it never saw. A prompt's side is decided by a hash of (seed, prompt), not by the rows' order: the same
rows in any order give the same split, and a prompt keeps its side when later exports add other prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rewardtrain.training.data.rows import parse_row
from rewardtrain.training.errors import DataError


@dataclass(frozen=True)
class ValidationSplit:
    """How the validation pairs were chosen: held out of the training pairs, or the export's own test split."""

    source: str  # "held_out" or "export"
    pairs: int
    prompts: int
    share: float | None = None
    seed: int | None = None
    train_pairs: int | None = None
    train_prompts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_key(index: int, row: Mapping[str, Any]) -> str:
    """The prompt a row's pairs are compared on (a conversation's shared leading messages when it gives no
    prompt), as text; raises DataError naming the row when it is malformed."""
    return json.dumps(parse_row(index, row).prompt, ensure_ascii=False)


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def hold_out_validation(
    rows: Iterable[Mapping[str, Any]], *, share: float, seed: int
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], ValidationSplit]:
    """(training rows, validation rows, what was held out): ``share`` of the distinct prompts, at least one and
    never all of them, with every pair on them. Raises DataError when the rows have fewer than two prompts."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    rows = list(rows)
    keys = [prompt_key(index, row) for index, row in enumerate(rows)]
    prompts = sorted(set(keys), key=lambda key: _rank(seed, key))
    if len(prompts) < 2:
        raise DataError(
            None,
            f"a validation split needs pairs on at least two prompts, and these {len(rows)} pairs share "
            "one: add pairs on other prompts, or train on an export with a test split",
        )
    held = set(prompts[: min(len(prompts) - 1, max(1, round(share * len(prompts))))])
    train = [row for row, key in zip(rows, keys, strict=True) if key not in held]
    validation = [row for row, key in zip(rows, keys, strict=True) if key in held]
    report = ValidationSplit(
        source="held_out",
        pairs=len(validation),
        prompts=len(held),
        share=share,
        seed=seed,
        train_pairs=len(train),
        train_prompts=len(prompts) - len(held),
    )
    return train, validation, report


def given_validation(rows: list[Mapping[str, Any]]) -> ValidationSplit:
    """The report of a validation split given with the data (an export's test split)."""
    prompts = {prompt_key(index, row) for index, row in enumerate(rows)}
    return ValidationSplit(source="export", pairs=len(rows), prompts=len(prompts))
