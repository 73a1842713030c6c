"""An export's files in the exports store, under ``exports/<id>/``: each written as a stream while its rows
are produced (``palate.storage.store_writer``: in S3 a multipart upload), its size and sha256 taken on the
way, so nothing is read back and no disk is needed."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from palate.storage import EXPORTS, StoredWriter, store_delete, store_writer

logger = logging.getLogger(__name__)


def export_prefix(export_id: int) -> str:
    """The export's folder in the exports store."""
    return f"exports/{export_id}/"


class ExportFolder:
    """The files of one export being written. ``open`` gives a file that stays open until ``close`` (a
    split's file is written chunk by chunk); ``write_bytes`` and ``write_json`` write a small file at once.
    ``abort`` drops what was written."""

    def __init__(self, export_id: int) -> None:
        self.prefix = export_prefix(export_id)
        self.written: dict[str, StoredWriter] = {}
        self._open: list[AbstractContextManager[StoredWriter]] = []

    def open(self, name: str) -> StoredWriter:
        opened = store_writer(EXPORTS, self.prefix + name)
        writer = opened.__enter__()
        self._open.append(opened)
        self.written[name] = writer
        return writer

    def write_bytes(self, name: str, data: bytes) -> None:
        with store_writer(EXPORTS, self.prefix + name) as writer:
            writer.write(data)
        self.written[name] = writer

    def write_json(self, name: str, data: Any) -> None:
        self.write_bytes(name, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    def sha256(self, name: str) -> str:
        return self.written[name].sha256

    def close(self) -> None:
        """Completes the files still open, all at once (in S3 each completion waits on its last parts and on
        the store putting the parts together)."""
        opened, self._open = self._open, []
        if opened:
            with ThreadPoolExecutor(max_workers=len(opened)) as closing:
                list(closing.map(lambda item: item.__exit__(None, None, None), opened))

    def abort(self) -> None:
        """Drops the files still open and those this folder completed (not the whole folder: an attempt
        that was taken over must not remove what the attempt that took over writes). It runs while the
        export's error is on its way, so a store that fails here too is logged, not raised: the next
        attempt, or the export's removal, clears the folder."""
        opened, self._open = self._open, []
        for item in opened:
            item.__exit__(RuntimeError, RuntimeError("export aborted"), None)  # drops the file
        for name in self.written:
            try:
                store_delete(EXPORTS, self.prefix + name)
            except Exception:
                logger.warning("could not remove %s of an aborted export", self.prefix + name, exc_info=True)

    def describe(self, row_counts: dict[str, int]) -> dict[str, dict[str, Any]]:
        """{name: {path, bytes, rows, sha256}} for each file, path as the exports store names it."""
        return {
            name: {
                "path": self.prefix + name,
                "bytes": writer.size,
                "rows": row_counts.get(name),
                "sha256": writer.sha256,
            }
            for name, writer in sorted(self.written.items())
        }
