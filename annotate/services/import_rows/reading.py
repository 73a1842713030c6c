"""Reading an import file: its format, gzip, the size limits, and its rows as (location, row) in JSONL,
JSON, CSV or Parquet, every format streamed (memory holds a line, an item or a batch of rows, whatever the
size of the file). What a row says is checked later.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

import orjson

from annotate.services.import_rows.json_items import JsonItems
from annotate.services.import_rows.records import Limits, RowError


class TooLarge(RowError):
    """The file, or its content once decompressed or decoded, is larger than the limit it is read under."""


class CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying stream, for progress, and refuses to read past a limit."""

    what = "file"

    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        self.raw = raw
        self.limit = limit
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def read_chunk(self, size: int) -> bytes:
        return self.raw.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read_chunk(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge(self.name, f"{self.what} is larger than the import limit of {self.limit:,} bytes")
        buffer[: len(data)] = data
        return len(data)


def detect_format(filename: str, explicit: str = "") -> str:
    if explicit:
        return explicit
    name = filename.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for extension, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".csv", "csv"),
        (".parquet", "parquet"),
    ):
        if name.endswith(extension):
            return fmt
    raise RowError(
        filename,
        "cannot tell the format from the file name: use .jsonl, .json, .csv or .parquet (optionally .gz), or name the format",
    )


def open_decompressed(raw: IO[bytes], name: str, limit: int) -> tuple[IO[bytes], CountingReader]:
    """Returns a binary stream of the file's content (gunzipped when it starts with gzip's magic bytes)
    and the counter on the raw file, whose ``count`` says how far the import has read."""
    counter = CountingReader(raw, limit, name)
    buffered = io.BufferedReader(counter, buffer_size=1 << 16)
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(_LimitedGzip(buffered, limit, name), buffer_size=1 << 16), counter
    return buffered, counter


class _LimitedGzip(CountingReader):
    """The gunzipped content, under the same limit as the file (which stops a gzip bomb)."""

    what = "the decompressed file"

    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        super().__init__(gzip.GzipFile(fileobj=raw), limit, name)

    def read_chunk(self, size: int) -> bytes:
        try:
            return self.raw.read(size)
        except (OSError, EOFError, zlib.error) as error:
            raise RowError(self.name, f"the gzip data is corrupt or truncated ({error})") from error


def _lines(
    stream: io.BufferedReader, name: str, limits: Limits, *, skip_blank: bool = False
) -> Iterator[tuple[int, bytes]]:
    """(number, bytes) of every line, the first without a UTF-8 byte order mark. With ``skip_blank``, a
    run of blank lines (whitespace only) is passed over a buffer at a time rather than a Python step per line
    (a small .jsonl.gz can hold tens of millions); a single blank line still comes through."""
    number = 0
    previous_blank = False
    while True:
        if skip_blank and previous_blank:
            number += _skip_blank_lines(stream)
        line = stream.readline(limits.max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
            raise RowError(
                f"{name}, line {number}", f"line is longer than the limit of {limits.max_line_bytes:,} bytes"
            )
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        previous_blank = line.isspace()  # isspace() copies nothing, unlike strip()
        yield number, line


_BLANK = re.compile(rb"[ \t\r\n\x0b\x0c]*")  # what bytes.isspace() calls whitespace


def _skip_blank_lines(stream: io.BufferedReader) -> int:
    """Takes the whole blank lines that come next in ``stream`` and returns how many it took."""
    skipped = 0
    while True:
        ahead = stream.peek(1 << 16)
        through = ahead.rfind(b"\n", 0, _BLANK.match(ahead).end()) + 1
        if not through:
            return skipped
        skipped += ahead.count(b"\n", 0, through)
        stream.read(through)


def _decoded(line: bytes, location: str) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RowError(
            location, f"not valid UTF-8 (byte 0x{line[error.start]:02x} at column {error.start + 1})"
        ) from error


def _decoded_lines(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[int, str]]:
    for number, line in _lines(stream, name, limits):
        yield number, _decoded(line, f"{name}, line {number}")


def _json_error(data: bytes, name: str, line: int, column: int) -> RowError:
    """What is wrong with JSON that orjson refused, placed in the file: ``data`` starts at ``line`` and
    ``column``. orjson refuses lone surrogates and nesting past 1,024 levels as malformed, where the json
    module accepts the first and overflows the stack on the second."""
    try:
        # orjson checks the bytes' UTF-8 itself; the text is made only to place an error (bench/README.md).
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        newline = before.rfind(b"\n")
        at = (line + before.count(b"\n"), error.start - newline if newline >= 0 else column + error.start)
        return RowError(
            f"{name}, line {at[0]}", f"not valid UTF-8 (byte 0x{data[error.start]:02x} at column {at[1]})"
        )
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as error:
        # The error says where in the text: found again on the text, as it is told.
        at = (line + error.lineno - 1, error.colno + (column - 1 if error.lineno == 1 else 0))
        return RowError(f"{name}, line {at[0]}", f"malformed JSON ({error.msg} at column {at[1]})")
    return RowError(f"{name}, line {line}", "malformed JSON")


def _jsonl_rows(stream: io.BufferedReader, name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    for number, line in _lines(stream, name, limits, skip_blank=True):
        if line.isspace():
            continue
        try:
            yield f"{name}, line {number}", orjson.loads(line)
        except orjson.JSONDecodeError:
            # Without its line break, which orjson would count as the start of a second line.
            yield f"{name}, line {number}", _json_error(line.rstrip(b"\r\n"), name, number, 1)


def _json_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    items = JsonItems(stream, name, limits.max_line_bytes)
    for number, item in items:
        try:
            yield f"{name}, item {number}", orjson.loads(item)
        except orjson.JSONDecodeError:
            raise _json_error(item, name, *items.item_place()) from None


def _csv_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    lines = (text for _, text in _decoded_lines(stream, name, limits))
    reader = csv.DictReader(lines)
    try:
        # Row keys are stripped names (see _csv_row).
        _check_columns([(column or "").strip() for column in reader.fieldnames or []], f"{name}, line 1")
        for row in reader:
            location = f"{name}, line {reader.line_num}"
            if None in row:
                yield (
                    location,
                    RowError(
                        location, f"more values than the {len(reader.fieldnames or [])} columns of the header"
                    ),
                )
                continue
            yield location, _csv_row(row, location)
    except csv.Error as error:
        # The csv reader's own count: DictReader's is updated only after a row is read whole, so it named the
        # line before the bad one (line 0 for a bad header).
        raise RowError(f"{name}, line {reader.reader.line_num}", f"malformed CSV ({error})") from error


PARQUET_BATCH_ROWS = 1_000


def _parquet_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    """Parquet's rows, a batch at a time. Parquet is read from its end (the footer says where each
    column's pages are), so the content is first copied to a temporary file (through ``stream``'s limits),
    never held in memory. Its decoded size counts against the same limit as a gunzipped file, first as
    the footer states it (before dictionaries are expanded), then as each batch turns out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryFile() as copy:
        shutil.copyfileobj(stream, copy, 1 << 20)
        copy.seek(0)
        try:
            parquet = pq.ParquetFile(copy)
            metadata = parquet.metadata
            stated = sum(
                metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups)
            )
            columns = parquet.schema_arrow.names
        except (pa.ArrowException, OSError, UnicodeDecodeError) as error:  # the last: a column's name
            raise RowError(name, f"not a readable Parquet file ({error})") from error
        _check_columns(columns, name)
        if stated > limits.max_file_bytes:
            raise _parquet_too_large(name, limits.max_file_bytes)
        decoded = 0
        index = 0
        for batch in _batches(parquet, name):
            decoded += batch.nbytes
            if decoded > limits.max_file_bytes:
                raise _parquet_too_large(name, limits.max_file_bytes)
            try:
                rows = batch.to_pylist()
            except (pa.ArrowException, UnicodeDecodeError) as error:
                raise RowError(name, f"not a readable Parquet file ({error})") from error
            for row in rows:
                index += 1
                yield f"{name}, row {index}", {key: value for key, value in row.items() if value is not None}


def _batches(parquet: Any, name: str) -> Iterator[Any]:
    """The file's batches of rows. Its pages are read only here, so damage past the footer is found here,
    and refused as the footer's is."""
    import pyarrow as pa

    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
            raise RowError(name, f"not a readable Parquet file ({error})") from error
        if batch is None:
            return
        yield batch


def _parquet_too_large(name: str, limit: int) -> TooLarge:
    return TooLarge(name, f"the decoded file is larger than the import limit of {limit:,} bytes")


_ROW_READERS = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows, "parquet": _parquet_rows}


def iter_raw_rows(stream: IO[bytes], name: str, fmt: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    """Yields (location, row) for every row of the file. Raises RowError for problems that make the
    rest of the file unreadable; a row that is not an object is yielded as is and rejected later."""
    read_rows = _ROW_READERS.get(fmt)
    if read_rows is None:
        raise RowError(name, f"unknown format {fmt!r}")
    yield from read_rows(stream, name, limits)


def _check_columns(columns: list[str], location: str) -> None:
    """Refuses a column named twice: each row would silently keep the last of its two cells, an empty one
    included."""
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            raise RowError(location, f"column '{column}' appears twice")
        seen.add(column)


_CSV_JSON_COLUMNS = {"messages", "responses", "chosen", "rejected", "prompt", "metadata"}
# A pair's two response columns. An empty cell beside a filled one is an empty response (data: models do
# produce empty output); both empty is a row of another shape in a file that mixes shapes.
_CSV_RESPONSE_PARTNERS = {
    "response_a": "response_b",
    "response_b": "response_a",
    "chosen": "rejected",
    "rejected": "chosen",
}


def _csv_row(row: dict[str, str], location: str) -> dict[str, Any] | RowError:
    """CSV cells are text; columns that may hold structure (messages, responses, conversations) are read as
    JSON when they look like a JSON list or object."""
    parsed: dict[str, Any] = {}
    empty: set[str] = set()
    for key, value in row.items():
        key = (key or "").strip()
        # A row shorter than the header leaves its last cells None: empty, as DictReader means them.
        if value is None or value == "":
            if value == "":
                empty.add(key)
            continue
        if key in _CSV_JSON_COLUMNS and value.lstrip()[:1] in {"[", "{"}:
            try:
                parsed[key] = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                return RowError(location, f"column '{key}' looks like JSON but is malformed ({error.msg})")
        else:
            parsed[key] = value
    for key, partner in _CSV_RESPONSE_PARTNERS.items():
        if key in empty and partner in parsed:
            parsed[key] = ""
    return parsed
