"""Request body parsers: DRF's, with every way a JSON body can fail answered as a 400 in the one error shape,
and an upload stopped for its size as a 413."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        where = _nul_at(data)
        if where is not None:
            # PostgreSQL stores no NUL character in text or jsonb: refused here, once, for every endpoint.
            raise ValidationError({where or "non_field_errors": ["contains a NUL character (\\u0000)"]})
        return data


def _nul_at(value: Any, where: str = "") -> str | None:
    """Where the first NUL character in a parsed JSON value is ("criteria.helpfulness"), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if "\x00" in key:
                return where  # a key is named by the object that holds it
            found = _nul_at(item, name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


class MultiPartParser(parsers.MultiPartParser):
    """DRF's, through ``FILE_UPLOAD_HANDLERS``: a file stopped while it streamed (``palate.uploads``) is
    answered with its refusal rather than as a missing field."""

    def parse(self, stream, media_type=None, parser_context=None):
        # Imported here: palate.uploads needs palate.errors, which imports DRF's views, which import this.
        from palate.uploads import upload_refusal

        parsed = super().parse(stream, media_type, parser_context)
        refusal = upload_refusal((parser_context or {}).get("request"))
        if refusal is not None:
            raise refusal
        return parsed
