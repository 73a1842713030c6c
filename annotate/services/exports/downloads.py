"""Reading a finished export back from the exports store: a file to download (a short-lived link to the
store where it can sign one, else streamed), the Hugging Face folder as a tar, the pair ids of a split."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
import orjson
import pyarrow.parquet as pq
from django.core.cache import cache
from numpy.typing import NDArray

from annotate.models import Export
from annotate.services.exports.formats import FORMATS, export_format_names
from annotate.services.exports.policy import DEFAULT_COLUMNS, SPLITS
from palate.errors import ApplicationError
from palate.storage import (
    EXPORTS,
    store_download_url,
    store_exists,
    store_open_seekable,
    store_reader,
    store_stream,
)

# What a download is sent as. Django would guess a file's type from its name through the machine's
# mime.types (text/markdown, application/gzip, …), which differs from one server to the next.
FILE_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ExportFile:
    """A stored file of an export: its name in the exports store and the file name to offer."""

    key: str
    download_name: str
    size: int

    def link(self) -> str | None:
        """A short-lived link that downloads it straight from the store, or None (stream it)."""
        return store_download_url(EXPORTS, self.key, filename=self.download_name, media_type=FILE_MEDIA_TYPE)

    def stream(self) -> IO[bytes]:
        """The file, read from the store as it is consumed; the caller closes it."""
        return store_stream(EXPORTS, self.key)


CARD = "card"


def _file_names(split: str, fmt: str) -> list[str]:
    """The files a download of ``split`` in ``fmt`` may serve, the first one made wins."""
    if fmt == CARD:
        return ["README.md"]
    export_format = FORMATS.get(fmt)
    if export_format is None or not export_format.downloadable:
        return []
    names = [export_format.path(split)]
    if export_format.fallback:
        names.append(FORMATS[export_format.fallback].path(split))
    return names


def export_file(*, export: Export, split: str = "train", fmt: str = "jsonl", name: str = "") -> ExportFile:
    """The stored file a download asks for, by ``name`` (a key of ``export.files``) or by split and format.
    Raises ApplicationError (404) when there is no such file."""
    if export.status != Export.Status.SUCCEEDED:
        raise ApplicationError(
            f"export v{export.version} has no files: it is {export.status}", code="not_ready", http_status=409
        )
    if not name:
        if split not in SPLITS:
            raise ApplicationError(
                f"split must be one of {', '.join(SPLITS)}", fields={"split": [f"got {split!r}"]}
            )
        candidates = _file_names(split, fmt)
        if not candidates:
            raise ApplicationError(
                f"format must be one of {', '.join([*export_format_names(), CARD])}",
                fields={"format": [f"got {fmt!r}"]},
            )
        name = next((candidate for candidate in candidates if candidate in export.files), "")
        if not name:
            raise ApplicationError(
                f"export v{export.version} has no {split} {fmt} file", code="not_found", http_status=404
            )
    record = export.files.get(name)
    if record is None:
        raise ApplicationError(
            f"export v{export.version} has no file {name!r}", code="not_found", http_status=404
        )
    if not store_exists(EXPORTS, record["path"]):
        raise ApplicationError(
            f"the file {name} of export v{export.version} is missing from the exports store",
            code="not_found",
            http_status=404,
        )
    download_name = f"{export.project.slug}-v{export.version}-{name.replace('/', '-')}"
    return ExportFile(key=record["path"], download_name=download_name, size=int(record.get("bytes") or 0))


def export_split_pair_ids(*, export: Export, split: str = "test") -> NDArray[np.int64] | None:
    """The ids of the pairs the export put in ``split`` (sorted, unique), read back from its files: for
    ``"test"``, the pairs a training run on this export held out. Empty when the split has no rows (a policy
    with ``split`` 1.0); None when the export cannot tell: it did not succeed, its policy left out the ``ids``
    columns, or it has no JSONL or Parquet file of the split in the store. Files never change once written,
    so the answer is cached by export id and creation time (a database made again reuses ids)."""
    if export.status != Export.Status.SUCCEEDED or "ids" not in export.policy.get("columns", DEFAULT_COLUMNS):
        return None
    if not (export.counts.get("rows") or {}).get(split):
        return np.zeros(0, dtype=np.int64)
    key = f"palate:export:{export.pk}:{export.created_at.timestamp()}:{split}:pair-ids"
    cached = cache.get(key)
    if cached is not None:
        return cached
    for fmt in ("parquet", "jsonl"):
        try:
            found = export_file(export=export, split=split, fmt=fmt)
        except ApplicationError:
            continue
        if fmt == "parquet":
            with store_open_seekable(EXPORTS, found.key) as handle:
                ids = pq.read_table(handle, columns=["pair_id"]).column("pair_id").to_numpy()
        else:
            with store_reader(EXPORTS, found.key) as stream:
                handle = gzip.GzipFile(fileobj=stream) if found.key.endswith(".gz") else stream
                ids = np.array([orjson.loads(line)["pair_id"] for line in handle if line.strip()])
        pair_ids = np.unique(ids.astype(np.int64))
        cache.set(key, pair_ids, timeout=None)
        return pair_ids
    return None


def export_hf_tar(*, export: Export) -> tuple[Iterator[bytes], str, int]:
    """The Hugging Face ``datasets`` folder as an uncompressed tar, streamed block by block (no file is held
    in memory); returns the chunks, a file name and the exact size."""
    names = sorted(name for name in export.files if name.startswith("hf/"))
    if export.status != Export.Status.SUCCEEDED or not names:
        raise ApplicationError(
            f"export v{export.version} has no Hugging Face folder", code="not_found", http_status=404
        )
    prefix = f"{export.project.slug}-v{export.version}"
    entries = []
    for name in names:
        key = export.files[name]["path"]
        info = tarfile.TarInfo(f"{prefix}/{name.removeprefix('hf/')}")
        info.size, info.mtime, info.mode = int(export.files[name]["bytes"]), 0, 0o644
        entries.append((info.tobuf(format=tarfile.USTAR_FORMAT), key, info.size))
    body = sum(len(header) + size + (-size % tarfile.BLOCKSIZE) for header, _, size in entries)
    end = 2 * tarfile.BLOCKSIZE
    total = body + end
    total += -total % tarfile.RECORDSIZE

    def chunks() -> Iterator[bytes]:
        for header, key, size in entries:
            yield header
            with store_reader(EXPORTS, key) as source:
                while block := source.read(1 << 20):
                    yield block
            if size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
        yield b"\0" * (total - body)

    return chunks(), f"{prefix}-hf.tar", total
