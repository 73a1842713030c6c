"""Every CSV Palate writes goes through this writer, so that no cell can run as a spreadsheet formula.

Text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is what Excel, LibreOffice and
Google Sheets read as a formula (``=HYPERLINK(…)``, ``@SUM(…)``, ``+cmd|…``); such a cell gets a leading
``'``, as OWASP's "CSV Injection" page recommends. Only strings are guarded: numbers the product computed
(a rating of -2.3) stay numbers, while the same characters typed or imported as text ("-2.3") are quoted,
since the writer cannot know where text came from and text is what an attacker controls.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def guarded_cell(value: Any) -> Any:
    """``value`` as a spreadsheet will show it and never run it."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


class GuardedWriter:
    """``csv.writer`` with every cell passed through :func:`guarded_cell`."""

    def __init__(self, stream: Any, **options: Any) -> None:
        self._writer = csv.writer(stream, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([guarded_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def guarded_writer(stream: Any, **options: Any) -> GuardedWriter:
    """The writer for every CSV the product writes: ``csv.writer``'s arguments, formulas neutralised."""
    return GuardedWriter(stream, **options)


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """``rows`` (header first) as one guarded CSV document."""
    buffer = io.StringIO()
    guarded_writer(buffer).writerows(rows)
    return buffer.getvalue()
