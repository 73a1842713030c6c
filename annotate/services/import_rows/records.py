"""What an import makes of a file, before the database: the options, the limits, the records of prompts,
responses and pairs, and the one error a row can raise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("jsonl", "json", "csv", "parquet")


CHOICE_VALUES = {"a", "b", "tie", "both_bad"}


class RowError(Exception):
    """One row (or the file) is unusable; ``location`` says where, ``message`` says what."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


@dataclass(frozen=True)
class ImportOptions:
    """How rows become pairs. ``label_as`` applies to TRL-shaped rows: keep the original label as a gold
    answer, as a prior judgment, or not at all."""

    pairing: str = "all"
    pairs_per_prompt: int = 0
    cross_system_only: bool = False
    seed: int = 0
    label_as: str = "gold"
    format: str = ""

    def validate(self) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        if self.pairing not in {"all", "random"}:
            problems["pairing"] = [f"must be 'all' or 'random', got {self.pairing!r}"]
        if self.pairing == "random" and self.pairs_per_prompt < 1:
            problems["pairs_per_prompt"] = ["must be at least 1 when pairing is 'random'"]
        if self.pairs_per_prompt < 0:
            problems["pairs_per_prompt"] = ["must not be negative"]
        if self.label_as not in {"gold", "judgment", "none"}:
            problems["label_as"] = [f"must be 'gold', 'judgment' or 'none', got {self.label_as!r}"]
        if self.format and self.format not in FORMATS:
            problems["format"] = [f"must be one of {', '.join(FORMATS)}, got {self.format!r}"]
        return problems


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int  # the file, and its content once gunzipped or decoded (Parquet)
    max_line_bytes: int  # a JSONL or CSV line, a JSON file's item
    max_text_chars: int
    max_rows: int
    max_pairs_per_prompt: int  # the pairs one row's responses make
    max_pairs: int  # the pairs all rows make


# Slotted: an import makes five of these per row, and each one's attribute dictionary cost memory and
# the time to make and free it.
@dataclass(slots=True)
class PromptRecord:
    external_id: str
    content: str
    messages: list[dict[str, str]] | None
    category: str
    metadata: dict[str, Any]
    fingerprint: str


@dataclass(slots=True)
class ResponseRecord:
    external_id: str
    system: str
    content: str
    metadata: dict[str, Any]
    fingerprint: str


@dataclass(slots=True)
class PairRecord:
    a: str
    b: str
    external_id: str = ""
    gold_choice: str = ""
    prior_choice: str = ""


@dataclass(slots=True)
class RowItems:
    """What one row contributes: one prompt, its responses, and pairs between them by response external id."""

    location: str
    row_id: str
    prompt: PromptRecord
    responses: list[ResponseRecord] = field(default_factory=list)
    pairs: list[PairRecord] = field(default_factory=list)


def fingerprint(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(value.encode("utf-8")).hexdigest()


def prompt_record(
    row_id: str, value: str | list[dict[str, str]], category: str, metadata: dict[str, Any]
) -> PromptRecord:
    digest = fingerprint(value)
    if isinstance(value, list):
        last_user = next((m["content"] for m in reversed(value) if m["role"] == "user"), value[-1]["content"])
        return PromptRecord(row_id or f"sha1:{digest}", last_user, value, category, metadata, digest)
    return PromptRecord(row_id or f"sha1:{digest}", value, None, category, metadata, digest)


def response_record(
    external_id: str, system: str, content: str, metadata: dict[str, Any] | None = None
) -> ResponseRecord:
    # A NUL cannot occur in a system name typed by a person, so it separates the two unambiguously.
    digest = hashlib.sha1(f"{system}\x00{content}".encode()).hexdigest()
    return ResponseRecord(external_id or f"sha1:{digest}", system, content, metadata or {}, digest)
