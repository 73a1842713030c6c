"""Reading import files and turning their rows into prompts, responses and pairs. No database here.

Three row shapes are accepted, in JSONL, JSON, CSV and Parquet, each optionally gzipped:

1. a prompt with candidate responses: ``{"id", "prompt" | "messages", "category"?, "responses": [{"id", "system", "content"}]}``;
2. ready pairs: ``{"id"?, "prompt" | "messages", "response_a", "response_b", "system_a", "system_b", "gold"?}``;
3. preference data in TRL's shape: ``{"id"?, "prompt"?, "chosen", "rejected"}``, text or conversations.

Every problem is reported with its place: ``"items.jsonl, line 17: 'responses' must be a list of at least two items"``.

The package, one concern a module: ``records`` (options, limits, the records rows become, ``RowError``),
``reading`` (formats, gzip and size limits, raw rows), ``json_items`` (a JSON file's list, item by item),
``fields`` (checked access to one row's fields), ``shapes`` (the three row shapes to records), ``pairing``
(the pairs of a prompt's responses) and ``work`` (what a file will cost, read within a bound). What this module exports is the API; the modules'
own names are free to change.
"""

from annotate.services.import_rows.fields import MESSAGE_ROLES, NUL_REFUSED, SYSTEM_MAX_LENGTH
from annotate.services.import_rows.pairing import Couples, generate_pairs, pair_count
from annotate.services.import_rows.reading import (
    CountingReader,
    TooLarge,
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
from annotate.services.import_rows.shapes import row_to_items
from annotate.services.import_rows.work import work_within

__all__ = [
    "CHOICE_VALUES",
    "FORMATS",
    "MESSAGE_ROLES",
    "NUL_REFUSED",
    "SYSTEM_MAX_LENGTH",
    "CountingReader",
    "Couples",
    "ImportOptions",
    "Limits",
    "PairRecord",
    "PromptRecord",
    "ResponseRecord",
    "RowError",
    "RowItems",
    "TooLarge",
    "detect_format",
    "fingerprint",
    "generate_pairs",
    "iter_raw_rows",
    "open_decompressed",
    "pair_count",
    "prompt_record",
    "response_record",
    "row_to_items",
    "work_within",
]
