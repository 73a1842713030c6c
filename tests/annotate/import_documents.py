"""Import files for the property tests (``test_import_properties``): Hypothesis strategies for uploads in
every format the importer reads, gzipped or not: any bytes; valid rows of the three shapes with any text, in
UTF-8 or another encoding; valid rows with one field made wrong in every way a field can be wrong (another
type, a huge number, text no database stores, nesting around each parser's limit, missing, extra, given
twice); valid files damaged byte by byte.

A row is a list of (key, value) couples rather than a dict, so that a row can hold a key twice; the writer
puts rows into a file byte for byte as a careless or hostile writer would.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import reject
from hypothesis import strategies as st

FORMATS = ["jsonl", "json", "csv", "parquet", "jsonl.gz", "json.gz", "csv.gz", "parquet.gz"]
TEXT_FORMATS = [fmt for fmt in FORMATS if not fmt.startswith("parquet")]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252"]

# The tests lower IMPORT_MAX_TEXT_CHARS to this, so that a text over the limit stays small.
TEXT_LIMIT = 1_000

Row = list[tuple[str, Any]]


@dataclass
class Expected:
    """What a file of valid rows must store: prompt and response contents, and the number of pairs."""

    prompts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    pairs: int = 0


@dataclass(frozen=True)
class Upload:
    """A file to import. ``expected`` is set when its rows are valid; ``place`` and ``field`` when one row
    was made wrong (the place as the importer names it: "line 3", "item 2", "row 2")."""

    fmt: str
    content: bytes
    encoding: str = "utf-8"
    expected: Expected | None = None
    place: str = ""
    field: str = ""

    @property
    def filename(self) -> str:
        return f"items.{self.fmt}"

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example: enough to rebuild it
        return f"Upload({self.fmt!r}, {self.content!r}, place={self.place!r}, field={self.field!r})"


# Values ----------------------------------------------------------------------------------------------

# Characters that have broken text handling somewhere: direction overrides, line and paragraph separators
# (which some readers split on), NEL, escape, a byte order mark inside the text, a combining mark, CSV's
# and JSON's own syntax.
TRICKY = "\u202e\u200f\u061c\u2028\u2029\x85\x1b\x7f\t\r\n\ufeff\u0301\U0001f600\ufffd\\\"',;[{"
ANY_CHARACTER = st.characters(exclude_categories=("Cs",), exclude_characters="\x00") | st.sampled_from(TRICKY)
# What latin-1 and cp1252 both hold, and hold alike.
LATIN_CHARACTER = st.characters(max_codepoint=0xFF, exclude_characters=["\x00", *map(chr, range(0x80, 0xA0))])


def texts(characters: st.SearchStrategy[str] = ANY_CHARACTER) -> st.SearchStrategy[str]:
    """Text a person could have written: any character but a NUL or half a surrogate pair, not blank."""
    return st.text(characters, min_size=1, max_size=20).filter(lambda text: not text.isspace())


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(texts(), children, max_size=3),
        max_leaves=6,
    )


PLAIN_JSON = json_values(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts()
)


@dataclass(frozen=True)
class Deep:
    """A list nested ``depth`` deep (inside an object when ``in_object``). Written as text for the JSON
    formats: no JSON library writes what the importer must refuse."""

    depth: int
    in_object: bool = False

    def text(self) -> str:
        nested = "[" * self.depth + "]" * self.depth
        return f'{{"k": {nested}}}' if self.in_object else nested

    def value(self) -> Any:
        nested: list = []
        for _ in range(self.depth - 1):
            nested = [nested]
        return {"k": nested} if self.in_object else nested


DEPTHS = st.sampled_from([2, 64, 254, 255, 256, 300, 1023, 1024, 1025, 5_000, 100_000])
# Kinds of wrong value, drawn one kind in ten each (see ``one_wrong_field``).
HOSTILE_KINDS = [
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30, 10**400]),
    st.floats(),
    st.sampled_from(["\ud800", "a\udfffb", "a\x00b", "\x00", "", " \t\n", "x" * (TEXT_LIMIT + 1)]),
    st.text(max_size=10),
    PLAIN_JSON,
    st.builds(Deep, DEPTHS),
    st.builds(Deep, DEPTHS, st.just(True)),
]

# Every field a row of any shape may have, for a field added where it does not belong.
FIELDS = [
    "id",
    "prompt",
    "messages",
    "category",
    "metadata",
    "responses",
    "response_a",
    "response_b",
    "system_a",
    "system_b",
    "gold",
    "chosen",
    "rejected",
    "system_chosen",
    "system_rejected",
]


# Valid rows ------------------------------------------------------------------------------------------


@st.composite
def valid_rows(draw: st.DrawFn, fmt: str, text: st.SearchStrategy[str]) -> tuple[list[Row], Expected]:
    """One to four valid rows of the three shapes, their ids and contents distinct, and what they must
    store. Parquet types a column from all its values, so a Parquet file keeps one type per column."""
    parquet = fmt.startswith("parquet")
    metadata = st.dictionaries(texts(), texts() if parquet else PLAIN_JSON, min_size=1, max_size=3)
    conversational = not parquet and draw(st.booleans())
    rows: list[Row] = []
    expected = Expected()
    for index in range(draw(st.integers(1, 4))):
        prompt = f"{index}: {draw(text)}"
        answers = [f"A: {draw(text)}", f"B: {draw(text)}"]
        shape = draw(st.sampled_from(["candidates", "pair", "preference", "implied prompt"]))
        if shape == "candidates":
            if draw(st.booleans()):
                row: Row = [("id", f"p{index}"), ("prompt", prompt)]
            else:
                messages = [{"role": "system", "content": draw(text)}, {"role": "user", "content": prompt}]
                row = [("id", f"p{index}"), ("messages", messages)]
            count = draw(st.integers(2, 4))
            responses = [{"id": f"r{n}", "system": draw(text), "content": draw(text)} for n in range(count)]
            row.append(("responses", responses))
            answers = [response["content"] for response in responses]
            expected.pairs += count * (count - 1) // 2
        elif shape == "pair":
            row = [("id", f"q{index}"), ("prompt", prompt), ("response_a", answers[0])]
            row += [("response_b", answers[1]), ("system_a", draw(text)), ("system_b", draw(text))]
            gold = draw(st.sampled_from(["", "a", "b", "tie", "both_bad", " A ", "TIE"]))
            row += [("gold", gold)] if gold else []
            expected.pairs += 1
        elif shape == "implied prompt":
            # The prompt is the text both answers start with, up to its last space.
            prompt += " "
            row = [("id", f"t{index}"), ("chosen", prompt + answers[0]), ("rejected", prompt + answers[1])]
            expected.pairs += 1
        else:
            chosen: Any = answers[0]
            rejected: Any = answers[1]
            if conversational:
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            row = [("id", f"t{index}"), ("prompt", prompt), ("chosen", chosen), ("rejected", rejected)]
            expected.pairs += 1
        expected.prompts.append(prompt)
        expected.responses += answers
        if draw(st.booleans()):
            row.append(("category", draw(text)))
        if draw(st.booleans()):
            row.append(("metadata", draw(metadata)))
        rows.append(row)
    return rows, expected


# Writing ---------------------------------------------------------------------------------------------


def _json(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Deep):
        return value.text()
    if isinstance(value, list):
        return "[" + ",".join(_json(item, ascii_only) for item in value) + "]"
    if isinstance(value, dict):
        return _json_object(value.items(), ascii_only)
    return json.dumps(value, ensure_ascii=ascii_only)


def _json_object(couples: Any, ascii_only: bool) -> str:
    return (
        "{"
        + ", ".join(
            f"{json.dumps(key, ensure_ascii=ascii_only)}: {_json(value, ascii_only)}"
            for key, value in couples
        )
        + "}"
    )


def _columns(rows: list[Row]) -> list[tuple[str, int]]:
    """Each key with its occurrence in a row (a key given twice is two columns), in the order first met."""
    columns: dict[tuple[str, int], None] = {}
    for row in rows:
        seen: dict[str, int] = {}
        for key, _ in row:
            seen[key] = seen.get(key, -1) + 1
            columns[(key, seen[key])] = None
    return list(columns)


def _cell(row: Row, column: tuple[str, int]) -> Any:
    values = [value for key, value in row if key == column[0]]
    return values[column[1]] if column[1] < len(values) else None


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict | Deep):
        return _json(value, ascii_only=False)
    return str(value)


def _csv(rows: list[Row]) -> tuple[str, list[int]]:
    """The CSV text, and the line each row ends on (a quoted cell may span lines), as the importer counts."""
    columns = _columns(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([key for key, _ in columns])
    ends = []
    for row in rows:
        writer.writerow([_csv_cell(_cell(row, column)) for column in columns])
        ends.append(out.getvalue().count("\n"))
    return out.getvalue(), ends


def _arrow(value: Any) -> Any:
    if isinstance(value, Deep):
        if value.depth > 5_000:
            reject()  # pyarrow overflows its stack building it: a crash, not an error
        return value.value()
    if isinstance(value, list):
        return [_arrow(item) for item in value]
    if isinstance(value, dict):
        return {key: _arrow(item) for key, item in value.items()}
    return value


def _parquet(rows: list[Row]) -> bytes:
    columns = _columns(rows)
    buffer = io.BytesIO()
    try:
        arrays = [pa.array([_arrow(_cell(row, column)) for row in rows]) for column in columns]
        pq.write_table(pa.Table.from_arrays(arrays, names=[key for key, _ in columns]), buffer)
    except (pa.ArrowException, UnicodeError, OverflowError, RecursionError, TypeError, ValueError):
        reject()  # a value Parquet cannot hold: no one can upload such a file
    return buffer.getvalue()


def write(
    rows: list[Row],
    fmt: str,
    *,
    encoding: str = "utf-8",
    ascii_only: bool = False,
    items_object: bool = False,
) -> bytes:
    """``rows`` as a file of ``fmt`` (gzipped for a ``.gz`` format) in ``encoding``. Half a surrogate pair
    is written as the UTF codecs' surrogatepass writes it, as a careless writer would."""
    base, _, compression = fmt.partition(".")
    if base == "parquet":
        data = _parquet(rows)
    else:
        if base == "jsonl":
            text = "".join(_json_object(row, ascii_only) + "\n" for row in rows)
        elif base == "json":
            text = "[\n" + ",\n".join(_json_object(row, ascii_only) for row in rows) + "\n]"
            text = f'{{"items": {text}}}' if items_object else text
        else:
            text = _csv(rows)[0]
        try:
            data = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "strict")
        except UnicodeEncodeError:
            reject()
    return gzip.compress(data, mtime=0) if compression == "gz" else data


def place(rows: list[Row], fmt: str, index: int) -> str:
    """Where the importer says row ``index`` (from 0) of ``rows`` is."""
    base = fmt.partition(".")[0]
    if base == "csv":
        return f"line {_csv(rows)[1][index]}"
    return {"jsonl": "line", "json": "item", "parquet": "row"}[base] + f" {index + 1}"


# Uploads ---------------------------------------------------------------------------------------------

_MAGIC = {
    "jsonl": [b'{"prompt": "', b'{"prompt": "p", "responses": ['],
    "json": [b"[", b'[{"prompt": "p", "response_a": "a", "response_b": ', b'{"items": ['],
    "csv": [b"prompt,responses\n", b"prompt,response_a,response_b\np,", b"\xef\xbb\xbfid,chosen,rejected\n"],
    "parquet": [b"PAR1"],
}


@st.composite
def any_bytes(draw: st.DrawFn) -> Upload:
    """Bytes of any kind, some starting as a file of the format would (so that its reader gets further
    than the first byte), some gzipped (so that the gzip variants get past the decompression)."""
    fmt = draw(st.sampled_from(FORMATS))
    base = fmt.partition(".")[0]
    content = draw(st.binary(max_size=400))
    if draw(st.booleans()):
        content = draw(st.sampled_from(_MAGIC[base])) + content
        content += b"PAR1" if base == "parquet" else b""
    if fmt.endswith(".gz") and draw(st.booleans()):
        content = gzip.compress(content, mtime=0)
    return Upload(fmt, content)


@st.composite
def valid_uploads(draw: st.DrawFn) -> Upload:
    """Valid rows with any text, in UTF-8 with or without a byte order mark, non-ASCII escaped or not."""
    fmt = draw(st.sampled_from(FORMATS))
    rows, expected = draw(valid_rows(fmt, texts()))
    encoding = "utf-8" if fmt.startswith("parquet") else draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    content = write(
        rows, fmt, encoding=encoding, ascii_only=draw(st.booleans()), items_object=draw(st.booleans())
    )
    return Upload(fmt, content, encoding, expected)


@st.composite
def encoded_uploads(draw: st.DrawFn) -> Upload:
    """Valid rows with latin-1 text, in any of ENCODINGS, not compressed (the test compares the bytes)."""
    fmt = draw(st.sampled_from(TEXT_FORMATS)).partition(".")[0]
    rows, expected = draw(valid_rows(fmt, texts(LATIN_CHARACTER)))
    encoding = draw(st.sampled_from(ENCODINGS))
    return Upload(fmt, write(rows, fmt, encoding=encoding), encoding, expected)


@st.composite
def one_wrong_field(draw: st.DrawFn) -> Upload:
    """Valid rows but one, in which a field (of the row, of its metadata, or of an object in one of its lists:
    a response, a message) has a hostile value, is missing, was added where it does not belong or is given twice.
    ``field`` is the row's field that was made wrong, or holds the object that was."""
    fmt = draw(st.sampled_from(FORMATS))
    rows, _ = draw(valid_rows(fmt, texts()))
    # Which row, field and kind of value are picked with a Random that Hypothesis drives: its own choices
    # lean on the first of a list (a third of the examples changed the first field, 'id'), this one does not.
    pick = draw(st.randoms(use_true_random=False)).choice
    index = pick(range(len(rows)))
    row = list(rows[index])
    containers = [(at, key) for at, (key, value) in enumerate(row) if isinstance(value, list | dict)]
    inside = pick(containers) if containers and pick([True, False]) else None
    couples: Row = row
    if inside is not None and isinstance(row[inside[0]][1], dict):  # metadata
        couples = list(row[inside[0]][1].items())
    elif inside is not None:
        items = row[inside[0]][1]
        item = pick(range(len(items)))
        couples = list(items[item].items())
    keys = [key for key, _ in couples]
    how = pick(["replace", "remove", "add", "twice"])
    value = draw(pick(HOSTILE_KINDS))
    if how == "add":
        known = [key for key in [*FIELDS, "system", "content", "role"] if key not in keys]
        name = pick(known) if pick([True, True, False]) else draw(texts())
        couples.append((name, value))
    else:
        name = pick(keys)
        position = keys.index(name)
        if how == "replace":
            couples[position] = (name, value)
        elif how == "remove":
            del couples[position]
        else:
            couples.append((name, value))
    if inside is not None:
        # A dict: a key given twice inside an object is the last one given, as JSON readers take it.
        at, name = inside
        container = row[at][1]
        changed = dict(couples)
        row[at] = (
            name,
            changed if isinstance(container, dict) else [*container[:item], changed, *container[item + 1 :]],
        )
    rows = [*rows[:index], row, *rows[index + 1 :]]
    where = place(rows, fmt, index)
    if how == "twice" and inside is None and not fmt.startswith("json"):
        # A key given twice in a row of a CSV or Parquet file is a column named twice: the file's error.
        where = "line 1" if fmt.startswith("csv") else ""
    return Upload(fmt, write(rows, fmt), place=where, field=name)


@st.composite
def damaged_uploads(draw: st.DrawFn) -> Upload:
    """A valid file with a few bytes flipped, inserted or cut, or truncated (before or after gzip), as a bad
    disk or a broken transfer leaves it."""
    upload = draw(valid_uploads())
    data = upload.content
    inner = upload.fmt.endswith(".gz") and draw(st.booleans())
    if inner:
        data = gzip.decompress(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)) :]
        else:
            data = data[:at]
    return replace(upload, content=gzip.compress(data, mtime=0) if inner else data, expected=None)
