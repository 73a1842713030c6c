"""Reading import files and turning their rows into prompts, responses and pairs. No database here.

Three row shapes are accepted, in JSONL, JSON, CSV and Parquet, each optionally gzipped:

1. a prompt with candidate responses: ``{"id", "prompt" | "messages", "category"?, "responses": [{"id", "system", "content"}]}``;
2. ready pairs: ``{"id"?, "prompt" | "messages", "response_a", "response_b", "system_a", "system_b", "gold"?}``;
3. preference data in TRL's shape: ``{"id"?, "prompt"?, "chosen", "rejected"}``, text or conversations.

Every problem is reported with its place: ``"items.jsonl, line 17: 'responses' must be a list of at least two items"``.

The package, one concern a module: ``records`` (options, limits, the records rows become, ``RowError``),
``reading`` (formats, gzip and size limits, raw rows), ``fields`` (checked access to one row's fields) and
``shapes`` (the three row shapes to records, and pairing). What this module exports is the API; the modules'
own names are free to change.
"""

from annotate.services.import_rows.fields import MESSAGE_ROLES, NUL_REFUSED, SYSTEM_MAX_LENGTH
from annotate.services.import_rows.reading import (
    CountingReader,
    detect_format,
    iter_raw_rows,
    open_decompressed,
)
from annotate.services.import_rows.records import (
    CHOICE_VALUES,
    FORMATS,
    ImportOptions,
    Limits,
    PairRecord,
    PromptRecord,
    ResponseRecord,
    RowError,
    RowItems,
    fingerprint,
    prompt_record,
    response_record,
)
from annotate.services.import_rows.shapes import generate_pairs, row_to_items

__all__ = [
    "CHOICE_VALUES",
    "FORMATS",
    "MESSAGE_ROLES",
    "NUL_REFUSED",
    "SYSTEM_MAX_LENGTH",
    "CountingReader",
    "ImportOptions",
    "Limits",
    "PairRecord",
    "PromptRecord",
    "ResponseRecord",
    "RowError",
    "RowItems",
    "detect_format",
    "fingerprint",
    "generate_pairs",
    "iter_raw_rows",
    "open_decompressed",
    "prompt_record",
    "response_record",
    "row_to_items",
]
