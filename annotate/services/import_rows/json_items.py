"""A JSON file's rows one at a time: the bytes of each item of its list (the top-level list, or an
object's ``items`` list), found without parsing them. ``reading`` parses each item with orjson, as it parses
a JSONL line. Memory holds one item (at most ``IMPORT_MAX_LINE_BYTES``) whatever the size of the file.

Our own splitter rather than ijson: ijson's C backend silently changes text (a lone surrogate ``\\ud800``
becomes ``?``, ``\\ud800\\u0041`` another character) and gives every value the path of keys above it (memory
grows with the square of the nesting), and its Python backend is too slow for a large file. The splitter
only tracks brackets outside strings, so what an item says, and every error in it, is orjson's, as for
JSONL.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import IO

from annotate.services.import_rows.records import RowError

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
# Up to the next bracket, strings taken whole: what lies between the brackets of a list or an object.
_INSIDE = re.compile(rb'[^"\[\]{}]*(?:' + _STRING + rb'[^"\[\]{}]*)*', re.DOTALL)
# A value that is not a list or an object: up to the next comma or bracket.
_SCALAR = re.compile(rb'[^"\[\]{},]*(?:' + _STRING + rb'[^"\[\]{},]*)*', re.DOTALL)
_KEY = re.compile(_STRING, re.DOTALL)

NOT_A_LIST = "a JSON file must hold a list of rows (or an object with an 'items' list)"
BLOCK_BYTES = 1 << 16


class JsonItems:
    """Iterates over the items of a JSON file's list of rows as ``(number, item's bytes)``; ``item_place``
    says where the last one starts. A file that is not such a list raises RowError."""

    def __init__(self, stream: IO[bytes], name: str, max_item_bytes: int) -> None:
        self.stream = stream
        self.name = name
        self.max_item_bytes = max_item_bytes
        self.data = b""
        self.position = 0  # the next byte to look at, in ``data``
        self.lines_dropped = 0  # line breaks in the bytes already dropped from ``data``
        self.column_of_data = 1  # the column of ``data[0]``
        self.started = False
        self.item_start = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        first = self._next_byte()
        if first == b"[":
            self.position += 1
            yield from self._items()
        elif first == b"{":
            self.position += 1
            yield from self._object_items()
        elif first is not None:
            raise RowError(self.name, NOT_A_LIST)
        if self._next_byte() is not None:
            raise self._malformed("data after the end of the list")

    def item_place(self) -> tuple[int, int]:
        """The line and column where the item last given starts (ask before taking the next one)."""
        return self._place(self.item_start)

    def _items(self) -> Iterator[tuple[int, bytes]]:
        """The items of a list whose ``[`` was just read, up to and including its ``]``."""
        if self._next_byte() == b"]":
            self.position += 1
            return
        number = 0
        while True:
            number += 1
            self.item_start, end = self._value(keep=True, number=number)
            yield number, self.data[self.item_start : end]
            following = self._next_byte()
            if following == b"]":
                self.position += 1
                return
            if following != b",":
                raise self._malformed(f"expected ',' or ']' after item {number}")
            self.position += 1
            if self._next_byte() == b"]":
                raise self._malformed("a comma before the list's ']'")

    def _object_items(self) -> Iterator[tuple[int, bytes]]:
        """The ``items`` list of an object whose ``{`` was just read; its other members are skipped."""
        found = False
        following = self._next_byte()
        while following != b"}":
            if following != b'"':
                raise self._malformed("expected a key")
            key = self._key()
            if self._next_byte() != b":":
                raise self._malformed("expected ':' after a key")
            self.position += 1
            following = self._next_byte()
            if key == b'"items"':
                if following != b"[" or found:
                    raise RowError(self.name, NOT_A_LIST)
                found = True
                self.position += 1
                yield from self._items()
            elif following is None:
                raise self._malformed("the file ends inside the object")
            else:
                self._value(keep=False, number=0)
            following = self._next_byte()
            if following == b",":
                self.position += 1
                following = self._next_byte()
            elif following != b"}":
                raise self._malformed("expected ',' or '}' after a member")
        self.position += 1
        if not found:
            raise RowError(self.name, NOT_A_LIST)

    def _value(self, *, keep: bool, number: int) -> tuple[int, int]:
        """Finds the end of the value that starts at ``position`` (a list or an object to its matching
        bracket, anything else to the next comma or bracket) and returns where it starts and ends in
        ``data``. Brackets are only counted here: orjson says later whether they match. ``keep`` keeps the
        value's bytes in ``data`` (item ``number`` of the list); otherwise they are dropped as read, but for
        a string that goes on past what was read. Either way ``data`` holds at most ``max_item_bytes``."""
        start = self.position
        depth = 0
        while True:
            if self.position < len(self.data):
                byte = self.data[self.position]
                if byte in b"[{":
                    depth += 1
                    self.position += 1
                    continue
                if byte in b"]}" and depth:
                    depth -= 1
                    self.position += 1
                    if not depth:
                        break
                    continue
                if not depth and byte in b",]}":
                    break
            self.position = (_INSIDE if depth else _SCALAR).match(self.data, self.position).end()
            if self.position < len(self.data) and self.data[self.position] != ord('"'):
                continue  # at a bracket or a comma
            # At the end of what was read, or at a string that goes on past it.
            kept_from = start if keep else self.position
            if len(self.data) - kept_from > self.max_item_bytes:
                raise self._too_long(number if keep else 0, kept_from)
            dropped = self._read_more(keep_from=kept_from)
            if dropped is None:
                break  # the file ends inside the value: orjson names what is missing
            start -= dropped
        if keep and self.position - start > self.max_item_bytes:
            raise self._too_long(number, start)
        return start, self.position

    def _too_long(self, number: int, offset: int) -> RowError:
        limit = f"the limit of {self.max_item_bytes:,} bytes"
        if number:
            return RowError(f"{self.name}, item {number}", f"item is longer than {limit}")
        return RowError(f"{self.name}, line {self._place(offset)[0]}", f"a value is longer than {limit}")

    def _key(self) -> bytes:
        """The object key (a string, quotes included) that starts at ``position``."""
        while True:
            found = _KEY.match(self.data, self.position)
            if found is not None:
                self.position = found.end()
                return found.group()
            if len(self.data) - self.position > self.max_item_bytes:
                raise self._too_long(0, self.position)
            if self._read_more(keep_from=self.position) is None:
                raise self._malformed("the file ends inside a key")

    def _next_byte(self) -> bytes | None:
        """Skips whitespace and returns the byte that follows (without taking it), or None at the end."""
        while True:
            self.position = _WHITESPACE.match(self.data, self.position).end()
            if self.position < len(self.data):
                return self.data[self.position : self.position + 1]
            if self._read_more(keep_from=self.position) is None:
                return None

    def _read_more(self, *, keep_from: int) -> int | None:
        """Reads the next block of the file, dropping the bytes of ``data`` before ``keep_from``; returns
        how many bytes were dropped (positions in ``data`` move back by as many), or None at the end of the
        file. Blocks grow with what is kept, so that a long item is read in a few steps."""
        block = self.stream.read(max(BLOCK_BYTES, len(self.data) - keep_from))
        if not self.started:
            self.started = True
            block = block.removeprefix(codecs.BOM_UTF8)
        if not block:
            return None
        newline = self.data.rfind(b"\n", 0, keep_from)
        self.lines_dropped += self.data.count(b"\n", 0, keep_from)
        self.column_of_data = keep_from - newline if newline >= 0 else self.column_of_data + keep_from
        self.data = self.data[keep_from:] + block
        self.position -= keep_from
        return keep_from

    def _place(self, offset: int) -> tuple[int, int]:
        """The line and column of ``data[offset]``."""
        line = self.lines_dropped + self.data.count(b"\n", 0, offset) + 1
        newline = self.data.rfind(b"\n", 0, offset)
        return line, (offset - newline if newline >= 0 else self.column_of_data + offset)

    def _malformed(self, what: str) -> RowError:
        line, column = self._place(self.position)
        return RowError(f"{self.name}, line {line}", f"malformed JSON ({what} at column {column:,})")
