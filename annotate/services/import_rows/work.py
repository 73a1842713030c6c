"""What importing a file will cost, found by reading it within a bound. The import page and the API run an
upload in the request only when it is small by this measure (``annotate.services.imports.import_start``):
not by the size of the upload, since a small gzip can hold a gigabyte and a short row half a million pairs."""

from __future__ import annotations

from dataclasses import replace
from typing import IO

from annotate.services.import_rows.reading import TooLarge, iter_raw_rows, open_decompressed
from annotate.services.import_rows.records import ImportOptions, Limits, RowError
from annotate.services.import_rows.shapes import row_to_items


def work_within(
    stream: IO[bytes],
    name: str,
    fmt: str,
    options: ImportOptions,
    limits: Limits,
    *,
    content_bytes: int,
    pairs: int,
) -> bool:
    """Whether the file's content (gunzipped, and for Parquet decoded) is at most ``content_bytes`` and its
    rows make at most ``pairs`` pairs. Reading stops as soon as either is passed, so the answer costs no
    more than reading and checking a small file. A file that cannot be read to its end for another reason
    counts as small: its import stops at the same place, as soon.

    Parquet never counts as small: pyarrow decodes a batch of rows before its size is known, and a value
    stored once in a column's dictionary can stand for every row of a batch, so a small file can decode to
    gigabytes. A worker reads it."""
    if fmt == "parquet":
        return False
    bounded = replace(limits, max_file_bytes=min(content_bytes, limits.max_file_bytes))
    made = 0
    try:
        content, _ = open_decompressed(stream, name, bounded.max_file_bytes)
        for location, raw in iter_raw_rows(content, name, fmt, bounded):
            try:
                made += len(row_to_items(raw, location, options, bounded).pairs)
            except RowError:
                continue
            if made > pairs:
                return False
    except TooLarge:
        return False
    except RowError:
        return True
    return True
