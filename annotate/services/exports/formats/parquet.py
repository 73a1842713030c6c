"""Parquet, zstd-compressed, written with fixed settings so the same rows give the same bytes."""

from __future__ import annotations

from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from annotate.services.exports.formats import ExportFormat, register

COMPRESSION = "zstd"


class ParquetSink:
    def __init__(self, file: IO[bytes], schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(file, schema, compression=COMPRESSION)

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


register(ExportFormat(name="parquet", label="Parquet", extension="parquet", sink=ParquetSink, order=30))
