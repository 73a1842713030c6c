"""Writing an export's rows: every split to every chosen format as chunks arrive, straight into the exports
store (``files.ExportFolder``), then the formats' metadata, the dataset card and the list of files with their
sha256."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from numpy.typing import NDArray

from annotate.models import Project
from annotate.services.exports.card import dataset_card
from annotate.services.exports.files import ExportFolder
from annotate.services.exports.formats import FORMATS, Finished, Sink
from annotate.services.exports.policy import SPLITS, ExportPolicy


class DatasetWriter:
    """Writes each split to every format as rows arrive; files open on a split's first row, so an empty
    split leaves no file.

    The encoding and writing (JSON lines, Arrow tables, Parquet compression, gzip, the store) happen on a
    background thread, one chunk behind the reads: pyarrow, zlib and uploads release the GIL, so they
    overlap with the next chunk's database round trip and row building. At most two chunks wait, which
    keeps memory flat."""

    def __init__(self, *, folder: ExportFolder, formats: list[str], schema: pa.Schema) -> None:
        self.folder = folder
        self.formats = [FORMATS[name] for name in formats]
        self.schema = schema
        self.names = schema.names
        self.sinks: dict[str, list[tuple[str, Sink]]] = {}
        self.rows: dict[str, int] = {}
        self.prompts: dict[str, int] = {}
        self._prompt_sets: dict[str, set[int]] = {split: set() for split in SPLITS}
        self.systems: dict[str, Counter] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="export-writer", daemon=True)
        self._thread.start()

    def _open(self, split: str) -> list[tuple[str, Sink]]:
        sinks: list[tuple[str, Sink]] = []
        for export_format in self.formats:
            name = export_format.path(split)
            sinks.append((name, export_format.sink(self.folder.open(name), self.schema)))
        return sinks

    def write(
        self,
        columns: dict[str, list],
        *,
        is_test: NDArray[np.bool_],
        prompts: NDArray[np.int64],
        winners: list[str],
        losers: list[str],
        ties: NDArray[np.bool_],
    ) -> None:
        """Queues one chunk of rows (``columns`` in schema order), each row for its split; tallies prompts
        per split and, per system, how often it was chosen, rejected or tied."""
        if self._failure is not None:
            raise self._failure
        total = int(prompts.size)
        for split, mask in (("train", ~is_test), ("test", is_test)):
            count = int(mask.sum())
            if not count:
                continue
            if count == total:
                part = columns
            else:
                rows = np.flatnonzero(mask).tolist()
                part = {name: [values[row] for row in rows] for name, values in columns.items()}
            if split not in self.sinks:
                self.sinks[split] = []
                self.rows[split] = 0
            self._queue.put((split, part))
            self.rows[split] += count
            self._prompt_sets[split].update(np.unique(prompts[mask]).tolist())
        sided = (~ties).tolist()
        self._tally(Counter(name for name, flag in zip(winners, sided, strict=True) if flag), "chosen")
        self._tally(Counter(name for name, flag in zip(losers, sided, strict=True) if flag), "rejected")
        tied = ties.tolist()
        self._tally(Counter(name for name, flag in zip(winners, tied, strict=True) if flag), "tie")
        self._tally(Counter(name for name, flag in zip(losers, tied, strict=True) if flag), "tie")

    def _drain(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._write_split(*job)
                except BaseException as failure:  # handed to the reading thread at its next write or close
                    self._failure = failure

    def _write_split(self, split: str, columns: dict[str, list]) -> None:
        if not self.sinks[split]:
            self.sinks[split] = self._open(split)
        lines: list[bytes] = []
        if any(export_format.takes == "lines" for export_format in self.formats):
            names, dumps = self.names, orjson.dumps
            lines = [
                dumps(dict(zip(names, values, strict=True)))
                for values in zip(*(columns[name] for name in names), strict=True)
            ]
        table = None
        if any(export_format.takes == "table" for export_format in self.formats):
            table = pa.Table.from_pydict(columns, schema=self.schema)
        for _, sink in self.sinks[split]:
            sink.write(lines, table)

    def _tally(self, counts: Counter, outcome: str) -> None:
        for name, count in counts.items():
            self.systems.setdefault(name or "(none)", Counter())[outcome] += count

    def close(self) -> None:
        """Waits for the queued chunks, closes every file, and raises what went wrong on the way, if anything."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._failure is None:
            for sinks in self.sinks.values():
                for _, sink in sinks:
                    sink.close()
            self.folder.close()
        self.prompts = {split: len(ids) for split, ids in self._prompt_sets.items() if ids}
        self._prompt_sets = {}
        if self._failure is not None:
            raise self._failure

    def finish(
        self, *, project: Project, policy: ExportPolicy, counts: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Writes each format's metadata and the dataset card, and describes every file with its sha256."""
        splits = [split for split in SPLITS if split in self.sinks]
        row_counts = {name: self.rows[split] for split in splits for name, _ in self.sinks[split]}
        done = Finished(
            folder=self.folder,
            splits=splits,
            schema=self.schema,
            description=f"Preference data from the Palate project {project.name!r}.",
            license=policy.license,
        )
        for export_format in self.formats:
            if export_format.finish is not None:
                export_format.finish(done)
        files = self.folder.describe(row_counts)
        card = dataset_card(project=project, policy=policy, counts=counts, files=files, schema=self.schema)
        cards = ["README.md"] + [export_format.card for export_format in self.formats if export_format.card]
        for name in cards:
            self.folder.write_bytes(name, card.encode("utf-8"))
        return self.folder.describe(row_counts)
