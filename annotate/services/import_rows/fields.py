"""Field access on one row, each problem a RowError naming the field."""

from __future__ import annotations

import re
from typing import Any

import orjson

from annotate.services.import_rows.records import Limits, PromptRecord, RowError, prompt_record

MESSAGE_ROLES = {"system", "user", "assistant", "tool"}


SYSTEM_MAX_LENGTH = 200  # Response.system's


# PostgreSQL stores no NUL character in text or jsonb: the whole import would fail at the database.
NUL_REFUSED = "contains a NUL character (\\u0000), which cannot be stored"
# A NUL as JSON writes it: "\u0000" after an even number of backslashes. After an odd number, the last of
# them escapes the one before: that is the text "\u0000", which is stored as it is.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class RowFields:
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

    def response(self, name: str) -> str:
        """A response's text: required, but it may be empty (models do produce empty output, and judging
        it is data); only what is not text is refused."""
        return self.text(name, required=True, allow_empty=True)

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
        if not value:
            return value
        try:
            # orjson writes it to the database: what it cannot write (nesting past 255 levels, a Parquet
            # file's bytes or decimals) is this field's error, not the import's crash.
            stored = orjson.dumps(value)
        except orjson.JSONEncodeError as error:
            raise self.fail(f"'{name}' cannot be stored as JSON ({error})") from None
        if b"\\u0000" in stored and _ESCAPED_NUL.search(stored):
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
            # (A list or an object cannot be looked up in a set.)
            if not isinstance(role, str) or role not in MESSAGE_ROLES:
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

    def implied_prompt(self, value: str | list[dict[str, str]]) -> PromptRecord:
        """A prompt the row gives only as the start its responses share, with the row's category and
        metadata."""
        return prompt_record("", value, self.text("category", required=False).strip(), self.metadata())

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
