"""The validation split held out of the training pairs when an export has none: prompt-disjoint and seeded.

A prompt's pairs all go to one side, so validation measures what the issue asks of a reward model, accuracy on
prompts it never saw. The rule is the export's own test split (``annotate.stats.aggregation.split_by_prompt``,
pure numpy): a prompt's side is decided by a hash of (seed, prompt), not by the rows' order, so the same rows
in any order give the same split and a prompt keeps its side when later exports add other prompts. Here a
prompt's id is a hash of its text (rows carry no database ids), and at least one prompt is always held out.
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


def _prompt_id(key: str) -> int:
    """A stable 63-bit id of a prompt's text, for the export's split rule, which takes integer ids."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def hold_out_validation(
    rows: Iterable[Mapping[str, Any]], *, share: float, seed: int
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], ValidationSplit]:
    """(training rows, validation rows, what was held out): ``share`` of the distinct prompts, at least one and
    never all of them, with every pair on them. Raises DataError when the rows have fewer than two prompts."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    rows = list(rows)
    from annotate.stats.aggregation import split_by_prompt

    keys = [prompt_key(index, row) for index, row in enumerate(rows)]
    prompts = sorted(set(keys))
    if len(prompts) < 2:
        raise DataError(
            None,
            f"a validation split needs pairs on at least two prompts, and these {len(rows)} pairs share "
            "one: add pairs on other prompts, or train on an export with a test split",
        )
    # A share too small for one prompt still holds one out (the rule keeps at least one for training).
    is_held = split_by_prompt(
        prompts=[_prompt_id(key) for key in prompts], test_share=max(share, 1 / len(prompts)), seed=seed
    )
    held = {key for key, held_out in zip(prompts, is_held, strict=True) if held_out}
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
