"""Reading an import file: its format, gzip, the size limits, and its rows as (location, row) in JSONL,
JSON, CSV or Parquet. What a row says is checked later.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import zlib
from collections.abc import Iterator
from typing import IO, Any

import orjson

from annotate.services.import_rows.records import Limits, RowError


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
            raise RowError(self.name, f"{self.what} is larger than the import limit of {self.limit:,} bytes")
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


def _lines(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[int, bytes]]:
    """(number, bytes) of every line, the first without a UTF-8 byte order mark."""
    for number in itertools.count(1):
        line = stream.readline(limits.max_line_bytes + 1)
        if not line:
            return
        if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
            raise RowError(
                f"{name}, line {number}", f"line is longer than the limit of {limits.max_line_bytes:,} bytes"
            )
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        yield number, line


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


def _jsonl_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    for number, line in _lines(stream, name, limits):
        if not line or line.isspace():  # isspace() copies nothing, unlike strip()
            continue
        location = f"{name}, line {number}"
        try:
            # orjson checks the bytes' UTF-8 itself; a line is decoded only to place an error (bench/README.md).
            yield location, orjson.loads(line)
        except orjson.JSONDecodeError:
            # The error says where in the line's text: found again on the text, as it is told.
            text = _decoded(line, location)
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                row = RowError(location, f"malformed JSON ({error.msg} at column {error.colno})")
            yield location, row


def _json_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    data = stream.read()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RowError(f"{name}, line {line}", f"not valid UTF-8 (byte 0x{data[error.start]:02x})") from error
    if not text.strip():
        return
    try:
        # orjson, as for JSONL: it refuses lone surrogates and nesting past 1,024 levels as malformed JSON,
        # where the json module accepts the first and overflows the stack on the second.
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise RowError(
            f"{name}, line {error.lineno}", f"malformed JSON ({error.msg} at column {error.colno})"
        ) from error
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        document = document["items"]
    if not isinstance(document, list):
        raise RowError(name, "a JSON file must hold a list of rows (or an object with an 'items' list)")
    for index, row in enumerate(document, start=1):
        yield f"{name}, item {index}", row


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


def _parquet_rows(stream: IO[bytes], name: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(stream.read()))
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:  # the last: a column's name
        raise RowError(name, f"not a readable Parquet file ({error})") from error
    _check_columns(parquet.schema_arrow.names, name)
    index = 0
    for rows in _parquet_batches(parquet, name):
        for row in rows:
            index += 1
            yield f"{name}, row {index}", {key: value for key, value in row.items() if value is not None}


def _parquet_batches(parquet: Any, name: str) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``parquet`` (a ``pyarrow.parquet.ParquetFile``), a batch at a time. Its pages are read
    only here, so damage past the footer is found here, and refused as the footer's is."""
    import pyarrow as pa

    batches = parquet.iter_batches(batch_size=10_000)
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            rows = batch.to_pylist()
        except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
            raise RowError(name, f"not a readable Parquet file ({error})") from error
        yield rows


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


def _csv_row(row: dict[str, str], location: str) -> dict[str, Any] | RowError:
    """CSV cells are text; columns that may hold structure (messages, responses, conversations) are read as
    JSON when they look like a JSON list or object."""
    parsed: dict[str, Any] = {}
    for key, value in row.items():
        key = (key or "").strip()
        # A row shorter than the header leaves its last cells None: empty, as DictReader means them.
        if value is None or value == "":
            continue
        if key in _CSV_JSON_COLUMNS and value.lstrip()[:1] in {"[", "{"}:
            try:
                parsed[key] = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                return RowError(location, f"column '{key}' looks like JSON but is malformed ({error.msg})")
        else:
            parsed[key] = value
    return parsed
