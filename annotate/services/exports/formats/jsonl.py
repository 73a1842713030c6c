"""JSON lines, plain or gzipped: what ``datasets.load_dataset("json", ...)`` and most tools read."""

from __future__ import annotations

import gzip
from typing import IO

import pyarrow as pa

from annotate.services.exports.formats import ExportFormat, register


class JsonlSink:
    def __init__(self, file: IO[bytes], *, compress: bool) -> None:
        self.file = file
        # No file name and mtime 0 in the gzip header: the same rows give the same bytes.
        self.stream: IO[bytes] = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self.file, mtime=0, compresslevel=6)
            if compress
            else self.file
        )

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.stream.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        if self.stream is not self.file:
            self.stream.close()


register(
    ExportFormat(
        name="jsonl",
        label="JSONL",
        extension="jsonl",
        sink=lambda file, schema: JsonlSink(file, compress=False),
        takes="lines",
        order=10,
        fallback="jsonl.gz",
    )
)
register(
    ExportFormat(
        name="jsonl.gz",
        label="JSONL, gzipped",
        extension="jsonl.gz",
        sink=lambda file, schema: JsonlSink(file, compress=True),
        takes="lines",
        order=20,
    )
)
