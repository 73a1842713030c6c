"""Reading import files and turning their rows into prompts, responses and pairs. No database here.

Three row shapes are accepted, in JSONL, JSON, CSV and Parquet, each optionally gzipped:

1. a prompt with candidate responses: ``{"id", "prompt" | "messages", "category"?, "responses": [{"id", "system", "content"}]}``;
2. ready pairs: ``{"id"?, "prompt" | "messages", "response_a", "response_b", "system_a", "system_b", "gold"?}``;
3. preference data in TRL's shape: ``{"id"?, "prompt"?, "chosen", "rejected"}``, text or conversations.

Every problem is reported with its place: ``"items.jsonl, line 17: 'responses' must be a list of at least two items"``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import itertools
import json
import os
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

FORMATS = ("jsonl", "json", "csv", "parquet")
MESSAGE_ROLES = {"system", "user", "assistant", "tool"}
SYSTEM_MAX_LENGTH = 200  # Response.system's
# PostgreSQL stores no NUL character in text or jsonb: the whole import would fail at the database.
NUL_REFUSED = "contains a NUL character (\\u0000), which cannot be stored"
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
    max_file_bytes: int
    max_line_bytes: int
    max_text_chars: int
    max_rows: int


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


# Reading -----------------------------------------------------------------------------------------


class CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying file, for progress, and refuses to read past a limit
    (which also stops a gzip bomb)."""

    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        self.raw = raw
        self.limit = limit
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise RowError(self.name, f"file is larger than the import limit of {self.limit:,} bytes")
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


class _LimitedGzip(io.RawIOBase):
    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        self.gzip = gzip.GzipFile(fileobj=raw)
        self.limit = limit
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.gzip.read(len(buffer))
        except (OSError, EOFError, zlib.error) as error:
            raise RowError(self.name, f"the gzip data is corrupt or truncated ({error})") from error
        self.count += len(data)
        if self.count > self.limit:
            raise RowError(
                self.name, f"the decompressed file is larger than the import limit of {self.limit:,} bytes"
            )
        buffer[: len(data)] = data
        return len(data)


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
            # orjson reads the bytes and checks their UTF-8 itself: decoding each line first took a
            # twentieth of an import's Python time.
            yield location, orjson.loads(line)
        except orjson.JSONDecodeError:
            # The error says where in the line's text: found again on the text, as it is told.
            text = _decoded(line, location)
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                row = RowError(location, f"malformed JSON ({error.msg} at column {error.colno})")
            yield location, row


def iter_raw_rows(stream: IO[bytes], name: str, fmt: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    """Yields (location, row) for every row of the file. Raises RowError for problems that make the
    rest of the file unreadable; a row that is not an object is yielded as is and rejected later."""
    if fmt == "jsonl":
        yield from _jsonl_rows(stream, name, limits)
    elif fmt == "json":
        data = stream.read()
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise RowError(
                f"{name}, line {line}", f"not valid UTF-8 (byte 0x{data[error.start]:02x})"
            ) from error
        if not text.strip():
            return
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RowError(
                f"{name}, line {error.lineno}", f"malformed JSON ({error.msg} at column {error.colno})"
            ) from error
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            document = document["items"]
        if not isinstance(document, list):
            raise RowError(name, "a JSON file must hold a list of rows (or an object with an 'items' list)")
        for index, row in enumerate(document, start=1):
            yield f"{name}, item {index}", row
    elif fmt == "csv":
        lines = (text for _, text in _decoded_lines(stream, name, limits))
        reader = csv.DictReader(lines)
        try:
            for row in reader:
                location = f"{name}, line {reader.line_num}"
                if None in row:
                    yield (
                        location,
                        RowError(
                            location,
                            f"more values than the {len(reader.fieldnames or [])} columns of the header",
                        ),
                    )
                    continue
                yield location, _csv_row(row, location)
        except csv.Error as error:
            raise RowError(f"{name}, line {reader.line_num}", f"malformed CSV ({error})") from error
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(io.BytesIO(stream.read()))
        except (pa.ArrowInvalid, OSError) as error:
            raise RowError(name, f"not a readable Parquet file ({error})") from error
        index = 0
        for batch in parquet.iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                index += 1
                yield f"{name}, row {index}", {key: value for key, value in row.items() if value is not None}
    else:
        raise RowError(name, f"unknown format {fmt!r}")


_CSV_JSON_COLUMNS = {"messages", "responses", "chosen", "rejected", "prompt", "metadata"}


def _csv_row(row: dict[str, str], location: str) -> dict[str, Any] | RowError:
    """CSV cells are text; columns that may hold structure (messages, responses, conversations) are read as
    JSON when they look like a JSON list or object."""
    parsed: dict[str, Any] = {}
    for key, value in row.items():
        key = (key or "").strip()
        if value == "":
            continue
        if key in _CSV_JSON_COLUMNS and value.lstrip()[:1] in {"[", "{"}:
            try:
                parsed[key] = json.loads(value)
            except json.JSONDecodeError as error:
                return RowError(location, f"column '{key}' looks like JSON but is malformed ({error.msg})")
        else:
            parsed[key] = value
    return parsed


# Rows to records -----------------------------------------------------------------------------------


class _Row:
    """Field access on one row that turns every problem into a RowError naming the field."""

    def __init__(self, data: dict[str, Any], location: str, limits: Limits) -> None:
        self.data = data
        self.location = location
        self.limits = limits

    def fail(self, message: str) -> RowError:
        return RowError(self.location, message)

    def text(self, name: str, *, required: bool, allow_empty: bool = False) -> str:
        value = self.data.get(name)
        # Called eight times per row: the common case (a str) takes the shortest path, and emptiness is
        # tested with isspace(), which copies nothing, rather than strip().
        if type(value) is not str:
            if value is None:
                if required:
                    raise self.fail(f"missing field '{name}'")
                return ""
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.fail(f"'{name}' must be text, got {type(value).__name__}")
            value = str(value)
        if required and not allow_empty and (not value or value.isspace()):
            raise self.fail(f"'{name}' must not be empty")
        if len(value) > self.limits.max_text_chars:
            raise self.fail(
                f"'{name}' is {len(value):,} characters, over the limit of {self.limits.max_text_chars:,}"
            )
        if "\x00" in value:
            raise self.fail(f"'{name}' {NUL_REFUSED}")
        return value

    def identifier(self, name: str = "id") -> str:
        value = self.text(name, required=False)
        if len(value) > 255:
            raise self.fail(f"'{name}' is longer than 255 characters")
        return value.strip()

    def system(self, name: str) -> str:
        value = self.text(name, required=False).strip()
        if len(value) > SYSTEM_MAX_LENGTH:
            raise self.fail(f"'{name}' is longer than {SYSTEM_MAX_LENGTH} characters")
        return value

    def metadata(self, name: str = "metadata") -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(f"'{name}' must be an object")
        if value and b"\\u0000" in orjson.dumps(value):
            raise self.fail(f"'{name}' {NUL_REFUSED}")
        return value

    def messages(self, name: str, value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list) or not value:
            raise self.fail(f"'{name}' must be a non-empty list of {{role, content}} messages")
        messages = []
        for index, message in enumerate(value):
            where = f"'{name}[{index}]'"
            if not isinstance(message, dict):
                raise self.fail(f"{where} must be an object with 'role' and 'content'")
            role, content = message.get("role"), message.get("content")
            if role not in MESSAGE_ROLES:
                raise self.fail(
                    f"{where}.role must be one of {', '.join(sorted(MESSAGE_ROLES))}, got {role!r}"
                )
            if not isinstance(content, str):
                raise self.fail(f"{where}.content must be text")
            if "\x00" in content:
                raise self.fail(f"{where}.content {NUL_REFUSED}")
            if len(content) > self.limits.max_text_chars:
                raise self.fail(
                    f"{where}.content is {len(content):,} characters, over the limit of {self.limits.max_text_chars:,}"
                )
            messages.append({"role": role, "content": content})
        return messages

    def prompt(self, row_id: str, *, required: bool = True) -> PromptRecord | None:
        has_prompt, has_messages = "prompt" in self.data, "messages" in self.data
        if has_prompt and has_messages:
            raise self.fail("give either 'prompt' or 'messages', not both")
        category = self.text("category", required=False).strip()
        if len(category) > 100:
            raise self.fail("'category' is longer than 100 characters")
        metadata = self.metadata()
        if has_messages or (has_prompt and isinstance(self.data["prompt"], list)):
            name = "messages" if has_messages else "prompt"
            messages = self.messages(name, self.data[name])
            return prompt_record(row_id, messages, category, metadata)
        if has_prompt:
            return prompt_record(row_id, self.text("prompt", required=True), category, metadata)
        if required:
            raise self.fail("missing field 'prompt' (or 'messages')")
        return None


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


def row_to_items(raw: Any, location: str, options: ImportOptions, limits: Limits) -> RowItems:
    if isinstance(raw, RowError):
        raise raw
    if not isinstance(raw, dict):
        raise RowError(location, f"each row must be an object, got {type(raw).__name__}")
    row = _Row(raw, location, limits)
    if "responses" in raw:
        return _candidates_row(row, options)
    if "response_a" in raw or "response_b" in raw:
        return _pair_row(row)
    if "chosen" in raw or "rejected" in raw:
        return _preference_row(row, options)
    raise RowError(
        location,
        "cannot tell the row's shape: expected 'responses' (a prompt with candidates), 'response_a'/'response_b' "
        "(a ready pair) or 'chosen'/'rejected' (preference data)",
    )


def _candidates_row(row: _Row, options: ImportOptions) -> RowItems:
    row_id = row.identifier()
    prompt = row.prompt(row_id)
    assert prompt is not None
    candidates = row.data["responses"]
    if not isinstance(candidates, list) or len(candidates) < 2:
        raise row.fail("'responses' must be a list of at least two items")
    responses: list[ResponseRecord] = []
    seen: dict[str, int] = {}
    for index, candidate in enumerate(candidates):
        where = f"'responses[{index}]'"
        if not isinstance(candidate, dict):
            raise row.fail(f"{where} must be an object with 'content' (and 'id', 'system')")
        item = _Row(candidate, row.location, row.limits)
        try:
            content = item.text("content", required=True)
            system = item.system("system")
            response_id = item.identifier()
            metadata = item.metadata()
        except RowError as error:
            raise row.fail(f"{where}: {error.message}") from None
        record = response_record(response_id, system, content, metadata)
        if record.external_id in seen:
            what = (
                f"duplicate response id '{response_id}'" if response_id else "the same response appears twice"
            )
            raise row.fail(f"{where}: {what} (also responses[{seen[record.external_id]}])")
        seen[record.external_id] = index
        responses.append(record)
    return RowItems(
        row.location, row_id, prompt, responses, generate_pairs(prompt.external_id, responses, options)
    )


def generate_pairs(
    prompt_key: str, responses: list[ResponseRecord], options: ImportOptions
) -> list[PairRecord]:
    """All pairs of a prompt's responses, or ``pairs_per_prompt`` of them drawn at random; the draw depends only
    on the seed and the prompt, so the same file and seed give the same pairs in any order or chunking."""
    ordered = sorted(responses, key=lambda response: response.external_id)
    couples = [
        (first, second)
        for first, second in itertools.combinations(ordered, 2)
        if not (options.cross_system_only and first.system and first.system == second.system)
    ]
    if options.pairing == "random" and len(couples) > options.pairs_per_prompt:
        generator = random.Random(f"{options.seed}:{prompt_key}")
        couples = generator.sample(couples, options.pairs_per_prompt)
    pairs = []
    generator = random.Random(f"{options.seed}:{prompt_key}:order")
    for first, second in couples:
        # Which response is A carries no meaning (the screen side is drawn per assignment), but a fixed
        # "earlier id is A" would leak the id order into every A/B statistic.
        if generator.random() < 0.5:
            first, second = second, first
        pairs.append(PairRecord(a=first.external_id, b=second.external_id))
    return pairs


def _pair_row(row: _Row) -> RowItems:
    row_id = row.identifier()
    prompt = row.prompt("")
    assert prompt is not None
    response_a = response_record("", row.system("system_a"), row.text("response_a", required=True))
    response_b = response_record("", row.system("system_b"), row.text("response_b", required=True))
    if response_a.external_id == response_b.external_id:
        raise row.fail("'response_a' and 'response_b' are the same response")
    gold = row.text("gold", required=False).strip().lower()
    if gold and gold not in CHOICE_VALUES:
        raise row.fail(f"'gold' must be one of a, b, tie, both_bad, got {gold!r}")
    pair = PairRecord(
        a=response_a.external_id, b=response_b.external_id, external_id=row_id, gold_choice=gold
    )
    return RowItems(row.location, row_id, prompt, [response_a, response_b], [pair])


def _preference_row(row: _Row, options: ImportOptions) -> RowItems:
    row_id = row.identifier()
    for name in ("chosen", "rejected"):
        if name not in row.data:
            raise row.fail(f"missing field '{name}'")
    chosen, rejected = row.data["chosen"], row.data["rejected"]
    conversational = isinstance(chosen, list)
    if conversational != isinstance(rejected, list):
        raise row.fail("'chosen' and 'rejected' must both be text or both be conversations")
    explicit_prompt = row.prompt("", required=False)
    if conversational:
        chosen = row.messages("chosen", chosen)
        rejected = row.messages("rejected", rejected)
        if explicit_prompt is None:
            shared = _common_prefix_length(chosen, rejected)
            if shared == 0:
                raise row.fail(
                    "no 'prompt', and 'chosen' and 'rejected' share no leading messages to take it from"
                )
            prompt = prompt_record(
                "", chosen[:shared], row.text("category", required=False).strip(), row.metadata()
            )
            chosen, rejected = chosen[shared:], rejected[shared:]
        else:
            prompt = explicit_prompt
        chosen_text = _single_reply(row, "chosen", chosen)
        rejected_text = _single_reply(row, "rejected", rejected)
    else:
        chosen_text = row.text("chosen", required=True)
        rejected_text = row.text("rejected", required=True)
        if explicit_prompt is None:
            shared = _common_text_prefix_length(chosen_text, rejected_text)
            if not chosen_text[:shared].strip():
                raise row.fail(
                    "no 'prompt', and 'chosen' and 'rejected' share no leading text to take it from"
                )
            prompt = prompt_record(
                "", chosen_text[:shared], row.text("category", required=False).strip(), row.metadata()
            )
            chosen_text, rejected_text = chosen_text[shared:], rejected_text[shared:]
            if not chosen_text.strip() or not rejected_text.strip():
                raise row.fail("no 'prompt', and one of 'chosen' and 'rejected' is the start of the other")
        else:
            prompt = explicit_prompt
    chosen_record = response_record("", row.system("system_chosen"), chosen_text)
    rejected_record = response_record("", row.system("system_rejected"), rejected_text)
    if chosen_record.external_id == rejected_record.external_id:
        raise row.fail("'chosen' and 'rejected' are the same response")
    pair = PairRecord(a=chosen_record.external_id, b=rejected_record.external_id, external_id=row_id)
    if options.label_as == "gold":
        pair.gold_choice = "a"
    elif options.label_as == "judgment":
        pair.prior_choice = "a"
    return RowItems(row.location, row_id, prompt, [chosen_record, rejected_record], [pair])


def _single_reply(row: _Row, name: str, messages: list[dict[str, str]]) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise row.fail(
            f"'{name}' must end with exactly one assistant message after the prompt, got {len(messages)} message(s)"
        )
    if not messages[0]["content"].strip():
        raise row.fail(f"'{name}' has an empty reply")
    return messages[0]["content"]


def _common_prefix_length(first: list[Any], second: list[Any]) -> int:
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return length


def _common_text_prefix_length(first: str, second: str) -> int:
    """The shared leading text, cut back to the last whitespace so that a word both answers start with
    stays in the answers (TRL's extract_prompt does the same for a shared leading space)."""
    # Character by character is what is wanted here: these are texts, not paths.
    length = len(os.path.commonprefix([first, second]))  # noqa: RUF071
    if length == min(len(first), len(second)):
        return length
    while length > 0 and not first[length - 1].isspace():
        length -= 1
    return length
