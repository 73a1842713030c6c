"""Where Palate's files live: three named storages of Django's storage API (``STORAGES`` in settings).

- ``uploads``: imports waiting for their worker (``imports/<uuid>-<name>``);
- ``exports``: finished exports (``exports/<id>/<file>``);
- ``artifacts``: training checkpoints and reward models (``runs/<id>/checkpoints/step-N/``, ``runs/<id>/model/``).

Each is a folder on this machine by default (``MEDIA_ROOT``, ``ARTIFACT_ROOT``) or one S3-compatible bucket
when ``STORAGE_S3_BUCKET`` is set (django-storages), so that web hosts and workers share no disk. The rest of
the code reads and writes files only through the functions here, by storage name and key.

What Django's API lacks is added here, for any backend: writing a file as a stream while it is produced (S3:
a multipart upload whose parts go up in the background while the next one fills: django-storages' own file
uploads each part in the writer's thread and reads a whole object into memory first), reading one as a
stream, folders (prefixes) removed at once, and short-lived download links where the store can sign them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, Storage, storages

logger = logging.getLogger(__name__)

UPLOADS = "uploads"
EXPORTS = "exports"
ARTIFACTS = "artifacts"

# A part of a multipart upload: S3 wants 5 MiB at least (but the last), and allows 10,000 parts (80 GB).
PART_BYTES = 8 * 1024 * 1024
COPY_BYTES = 1 << 20


class ArtifactFileSystemStorage(FileSystemStorage):
    """A folder under ``ARTIFACT_ROOT``, read when first used (as Django's own storage reads MEDIA_ROOT), so
    that tests and commands that change the setting are followed."""

    @cached_property
    def base_location(self) -> str:
        return self._value_or_setting(self._location, settings.ARTIFACT_ROOT)

    def _clear_cached_properties(self, setting: str, **kwargs: Any) -> None:
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "ARTIFACT_ROOT":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)


def store(alias: str) -> Storage:
    return storages[alias]


def _s3(storage: Storage) -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages is optional where every store is local
        return False
    return isinstance(storage, S3Storage)


_clients: weakref.WeakKeyDictionary[Storage, Any] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def _client(storage: Any) -> Any:
    """The S3 storage's botocore client, one per storage shared by every thread (clients are thread-safe):
    the storage's ``connection`` is a boto3 resource made, botocore's models loaded again, for each thread
    that asks, and an export writes from a new thread each time."""
    with _clients_lock:
        if storage not in _clients:
            _clients[storage] = storage.connection.meta.client
        return _clients[storage]


def _key(storage: Any, name: str) -> str:
    """The object key of ``name`` in an S3 storage (its ``location`` prefix included)."""
    from storages.utils import clean_name

    return storage._normalize_name(clean_name(name))


# ----------------------------------------------------------------------------------------------------------
# Writing


class StoredWriter(io.RawIOBase):
    """A file being written to a store: counts its bytes and hashes them as they go by (sha256), so that
    nothing is read back to describe it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.size = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.target.write(view)
        self.digest.update(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class _MultipartUpload(io.RawIOBase):
    """An S3 object written as a multipart upload. Bytes are copied once, into a part buffer of
    ``PART_BYTES``; a full buffer is sent whole by a background thread while the next one fills, and is
    filled again once its part is stored, so at most ``IN_FLIGHT`` parts are under way and memory stays at
    ``IN_FLIGHT + 1`` parts whatever the size. ``close`` completes the upload (a small object is one PUT);
    ``abort`` drops it. A part the store refuses fails the next write or the close, naming the object.
    Not boto3's ``upload_fileobj``: it pulls from a readable file, and an export pushes what it encodes,
    so it would take a pipe and a thread per file, and copy every byte once more."""

    IN_FLIGHT = 3
    _sender = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-upload")

    def __init__(self, storage: Any, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.failures = (BotoCoreError, ClientError)
        self.client = _client(storage)
        self.bucket, self.key = storage.bucket_name, _key(storage, name)
        self.part = bytearray(PART_BYTES)
        self.filled = 0
        self.upload_id = ""
        self.parts: list[Future] = []
        self.sending: deque[tuple[Future, bytearray]] = deque()
        self.done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        taken = 0
        while taken < view.nbytes:
            count = min(PART_BYTES - self.filled, view.nbytes - taken)
            self.part[self.filled : self.filled + count] = view[taken : taken + count]
            self.filled += count
            taken += count
            if self.filled == PART_BYTES:
                self._send(self.part)
                self._next_part()
        return taken

    def _send(self, body: bytearray) -> None:
        if not self.upload_id:
            self.upload_id = self._call(
                self.client.create_multipart_upload, Bucket=self.bucket, Key=self.key
            )["UploadId"]
        future = self._sender.submit(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=len(self.parts) + 1,
            Body=body,
        )
        self.parts.append(future)
        self.sending.append((future, body))

    def _next_part(self) -> None:
        """The buffer to fill next: the oldest part's once it is stored (the writer waits here when
        ``IN_FLIGHT`` parts are under way), a new one until then."""
        self.filled = 0
        if len(self.sending) <= self.IN_FLIGHT:
            self.part = bytearray(PART_BYTES)
            return
        future, self.part = self.sending.popleft()
        self._call(future.result)

    def _call(self, function: Any, **arguments: Any) -> Any:
        """``function``'s result; a store's refusal or a broken connection becomes an OSError naming the
        object."""
        try:
            return function(**arguments)
        except self.failures as error:
            raise OSError(f"the object store did not take {self.key}: {error}") from error

    def close(self) -> None:
        if self.done or self.closed:
            return super().close()
        try:
            self._complete()
        except BaseException:
            self.abort()  # a part refused at the end leaves no unfinished upload either
            raise
        self.done = True
        self._release()

    def _complete(self) -> None:
        if not self.upload_id:
            self._call(
                self.client.put_object, Bucket=self.bucket, Key=self.key, Body=self.part[: self.filled]
            )
            return
        if self.filled:
            self._send(self.part[: self.filled])
        parts = [
            {"ETag": self._call(future.result)["ETag"], "PartNumber": number}
            for number, future in enumerate(self.parts, start=1)
        ]
        self._call(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        """Drops the upload. It runs while another error is on its way, so it raises nothing of its own: an
        upload it could not drop is removed with its export's folder (``store_delete``)."""
        self.done = True
        wait(self.parts)
        if self.upload_id:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            except self.failures:
                logger.warning("could not abort the upload of %s", self.key, exc_info=True)
        self._release()

    def _release(self) -> None:
        self.part = bytearray()
        self.sending.clear()
        super().close()


class _SpooledSave(io.RawIOBase):
    """Any other backend: the file is spooled to a temporary file (memory up to a few MiB) and saved on
    close."""

    def __init__(self, storage: Storage, name: str) -> None:
        import tempfile

        self.storage, self.name = storage, name
        self.spool = tempfile.SpooledTemporaryFile(max_size=PART_BYTES)  # noqa: SIM115 - closed in close()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.spool.write(data)

    def close(self) -> None:
        if not self.closed:
            self.spool.seek(0)
            self.storage.delete(self.name)
            self.storage.save(self.name, File(self.spool))
            self.spool.close()
        super().close()

    def abort(self) -> None:
        self.spool.close()
        super().close()


@contextmanager
def store_writer(alias: str, name: str) -> Iterator[StoredWriter]:
    """Writes the file ``name`` of the store as a stream, replacing any file of that name; it exists only
    once the block ends without an error (an error leaves nothing). The writer says its size and sha256."""
    storage = store(alias)
    target: Any
    if isinstance(storage, FileSystemStorage):
        path = Path(storage.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        target = path.open("wb")
    elif _s3(storage):
        target = _MultipartUpload(storage, name)
    else:
        target = _SpooledSave(storage, name)
    writer = StoredWriter(target)
    try:
        yield writer
    except BaseException:
        if isinstance(storage, FileSystemStorage):
            target.close()
            path.unlink(missing_ok=True)
        else:
            target.abort()
        raise
    target.close()


def store_save(alias: str, name: str, source: IO[bytes]) -> StoredWriter:
    """Copies the stream ``source`` into the store as ``name``, a block at a time."""
    with store_writer(alias, name) as writer:
        shutil.copyfileobj(source, writer, COPY_BYTES)
    return writer


def store_write_bytes(alias: str, name: str, data: bytes) -> StoredWriter:
    with store_writer(alias, name) as writer:
        writer.write(data)
    return writer


# ----------------------------------------------------------------------------------------------------------
# Reading


class _Body(io.RawIOBase):
    """An S3 object's body as a readable stream (botocore's has no ``readinto``)."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.body.close()
        super().close()


def store_stream(alias: str, name: str) -> IO[bytes]:
    """The file ``name`` opened as a stream read from the store as it is consumed (not seekable); the caller
    closes it. Raises FileNotFoundError when there is no such file."""
    storage = store(alias)
    if _s3(storage):
        client = _client(storage)
        try:
            body = client.get_object(Bucket=storage.bucket_name, Key=_key(storage, name))
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(name) from None
        return io.BufferedReader(_Body(body["Body"]), buffer_size=COPY_BYTES)
    if not storage.exists(name):
        raise FileNotFoundError(name)
    return storage.open(name, "rb")


def store_open_seekable(alias: str, name: str) -> IO[bytes]:
    """The file ``name`` opened for reading anywhere in it (Parquet reads from its end): in S3 a copy in a
    temporary file of this machine, removed on close."""
    return store(alias).open(name, "rb")


@contextmanager
def store_reader(alias: str, name: str) -> Iterator[IO[bytes]]:
    """``store_stream`` as a block that closes it."""
    stream = store_stream(alias, name)
    try:
        yield stream
    finally:
        stream.close()


def store_read_bytes(alias: str, name: str) -> bytes:
    with store_reader(alias, name) as stream:
        return stream.read()


def store_exists(alias: str, name: str) -> bool:
    return store(alias).exists(name)


def store_size(alias: str, name: str) -> int:
    return store(alias).size(name)


def store_local_path(alias: str, name: str) -> Path | None:
    """Where ``name`` lies on this machine when the store is a local folder, else None (fetch it)."""
    storage = store(alias)
    return Path(storage.path(name)) if isinstance(storage, FileSystemStorage) else None


def store_list(alias: str, prefix: str) -> list[str]:
    """The names of every file under the folder ``prefix`` ("runs/7/model/"), relative to it, sorted."""
    storage = store(alias)
    prefix = prefix.rstrip("/") + "/"
    if _s3(storage):
        root = _key(storage, prefix)
        paginator = _client(storage).get_paginator("list_objects_v2")
        names = [
            item["Key"][len(root) :]
            for page in paginator.paginate(Bucket=storage.bucket_name, Prefix=root)
            for item in page.get("Contents", [])
        ]
        return sorted(names)
    if isinstance(storage, FileSystemStorage):
        folder = Path(storage.path(prefix))
        if not folder.is_dir():
            return []
        return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    found: list[str] = []

    def walk(folder: str, relative: str) -> None:
        if not storage.exists(folder):
            return
        folders, files = storage.listdir(folder)
        found.extend(relative + name for name in files)
        for sub in folders:
            walk(f"{folder}{sub}/", f"{relative}{sub}/")

    walk(prefix, "")
    return sorted(found)


# ----------------------------------------------------------------------------------------------------------
# Removing


def store_delete(alias: str, name: str) -> None:
    """Removes the file ``name``, or with a name ending in "/" everything under that folder (and, in S3,
    the unfinished multipart uploads there). Nothing there is no error."""
    storage = store(alias)
    if not name.endswith("/"):
        storage.delete(name)
        return
    if _s3(storage):
        root = _key(storage, name)
        if not root.endswith("/"):
            root += "/"
        bucket = storage.bucket
        bucket.objects.filter(Prefix=root).delete()
        from botocore.exceptions import ClientError

        try:
            for upload in bucket.multipart_uploads.filter(Prefix=root):
                upload.abort()
        except ClientError as error:
            # Some S3-compatible stores cannot list unfinished uploads; their lifecycle rules expire them.
            if error.response.get("Error", {}).get("Code") != "NotImplemented":
                raise
            logger.info(
                "the store cannot list unfinished uploads under %s: left to its lifecycle rules", root
            )
        return
    if isinstance(storage, FileSystemStorage):
        shutil.rmtree(storage.path(name), ignore_errors=True)
        return
    for relative in store_list(alias, name):
        storage.delete(name + relative)


# ----------------------------------------------------------------------------------------------------------
# Folders


def store_upload_directory(alias: str, local: Path, prefix: str, *, last: str = "") -> dict[str, str]:
    """Uploads every file of the local folder under ``prefix`` ("runs/7/model/"), ``last`` (a file name in
    it) after all the others: a folder whose ``last`` is stored is complete. Returns {name: sha256}."""
    prefix = prefix.rstrip("/") + "/"
    names = sorted(path.relative_to(local).as_posix() for path in local.rglob("*") if path.is_file())
    if last in names:
        names.remove(last)
        names.append(last)
    digests = {}
    for name in names:
        with (local / name).open("rb") as source:
            digests[name] = store_save(alias, prefix + name, source).sha256
    return digests


def store_download_directory(alias: str, prefix: str, local: Path) -> dict[str, str]:
    """Copies every file under ``prefix`` into the local folder; returns {name: sha256}."""
    names = store_list(alias, prefix)
    prefix = prefix.rstrip("/") + "/"
    digests = {}
    for name in names:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with store_reader(alias, prefix + name) as source, target.open("wb") as copy:
            writer = StoredWriter(copy)
            shutil.copyfileobj(source, writer, COPY_BYTES)
        digests[name] = writer.sha256
    return digests


def content_hash(digests: dict[str, str]) -> str:
    """One sha256 for a folder, from its files' names and sha256s: the same files give the same hash."""
    whole = hashlib.sha256()
    for name in sorted(digests):
        whole.update(f"{name}\0{digests[name]}\n".encode())
    return whole.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Downloads


def link_seconds() -> int:
    return int(getattr(settings, "STORAGE_S3_URL_SECONDS", 300))


_public_stores: dict[tuple[str, str], Any] = {}


def _signing(alias: str) -> Any:
    """The S3 storage that signs links: for ``STORAGE_S3_PUBLIC_ENDPOINT_URL`` when set (the address clients
    reach the store at; made once per process, as a client costs tens of milliseconds), else the store
    itself; None when the store cannot sign (a local folder)."""
    storage = store(alias)
    if not _s3(storage):
        return None
    public = getattr(settings, "STORAGE_S3_PUBLIC_ENDPOINT_URL", "")
    if not public:
        return storage
    options = {**settings.STORAGES[alias].get("OPTIONS", {}), "endpoint_url": public}
    key = (alias, repr(sorted(options.items())))
    if key not in _public_stores:
        _public_stores[key] = type(storage)(**options)
    return _public_stores[key]


def store_upload_url(alias: str, name: str) -> str | None:
    """A link that PUTs a file as ``name`` straight into the store, working for ``STORAGE_S3_URL_SECONDS``;
    None when the store cannot sign one."""
    storage = _signing(alias)
    if storage is None:
        return None
    return _client(storage).generate_presigned_url(
        "put_object",
        Params={"Bucket": storage.bucket_name, "Key": _key(storage, name)},
        ExpiresIn=link_seconds(),
    )


def store_download_url(alias: str, name: str, *, filename: str, media_type: str) -> str | None:
    """A link that downloads ``name`` straight from the store for ``STORAGE_S3_URL_SECONDS``, offered as
    ``filename``; None when the store cannot sign one (a local folder: stream it instead)."""
    storage = _signing(alias)
    if storage is None:
        return None
    safe = filename.replace('"', "")
    return storage.url(
        name,
        parameters={
            "ResponseContentDisposition": f'attachment; filename="{safe}"',
            "ResponseContentType": media_type,
        },
        expire=link_seconds(),
    )
