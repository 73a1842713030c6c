"""The registry of export file formats.

A format is one module of this package that calls :func:`register` with an :class:`ExportFormat`: its name
(as the API, the page and ``export_dataset`` take it), its label, the file each split goes to, and the sink
that writes that file. Modules are found and imported here, so a new format needs no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from annotate.services.exports.files import ExportFolder


class Sink(Protocol):
    """Writes one split's file, a chunk of rows at a time."""

    def write(self, lines: list[bytes], table: pa.Table | None) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Finished:
    """What a format's ``finish`` hook gets once every split is written."""

    folder: ExportFolder
    splits: list[str]
    schema: pa.Schema
    description: str
    license: str


@dataclass(frozen=True)
class ExportFormat:
    name: str
    label: str
    extension: str
    # Opens the sink of one split's file, given that file open for writing (the sink leaves it open).
    sink: Callable[[IO[bytes], pa.Schema], Sink]
    # What the sink's ``write`` takes: "lines" (JSON lines, bytes) or "table" (an Arrow table).
    takes: str = "table"
    # The split's file, relative to the export folder; "{split}" is replaced.
    file: str = "{split}.{extension}"
    # Position in lists of formats (the page, the API's choices, ``Export.formats``).
    order: int = 100
    # Writes the format's metadata files once the splits are written.
    finish: Callable[[Finished], None] | None = None
    # Another copy of the dataset card that the format's folder needs, relative to the export folder.
    card: str = ""
    # The format whose file a download of this one falls back to when only that one was made.
    fallback: str = ""
    # False when the split's file is not offered on its own (it is part of a folder).
    downloadable: bool = True

    def path(self, split: str) -> str:
        return self.file.format(split=split, extension=self.extension)


FORMATS: dict[str, ExportFormat] = {}


def register(export_format: ExportFormat) -> ExportFormat:
    if export_format.name in FORMATS:
        raise ValueError(f"export format {export_format.name!r} is registered twice")
    FORMATS[export_format.name] = export_format
    return export_format


def export_format_names() -> tuple[str, ...]:
    return tuple(sorted(FORMATS, key=lambda name: (FORMATS[name].order, name)))


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_discover()
EXPORT_FORMATS: tuple[str, ...] = export_format_names()


def format_label(name: Any) -> str:
    export_format = FORMATS.get(str(name))
    return export_format.label if export_format else str(name)
