"""The one import service, used by ``manage.py import_items``, the API and the import page.

An import is atomic: it runs in one transaction with the project row locked, and when any row fails
nothing is written and every error (up to ``MAX_REPORTED_ERRORS``) is reported with its place. Rows are
read and written in chunks, so memory stays flat however large the file is. Rows go in through binary
COPY with ids drawn from the tables' sequences.

Foreign keys. PostgreSQL checks each foreign key of each inserted row with a trigger that looks the
parent row up and locks it FOR KEY SHARE: six checks per imported pair, the largest single cost of an
import. When the database role may set ``session_replication_role`` (a superuser, or on PostgreSQL 15+
``GRANT SET ON PARAMETER session_replication_role``), the import turns those triggers off for its own
transaction and gives the same guarantee itself, in bulk: every row it writes refers only to the
project (locked FOR UPDATE for the whole import), to rows it inserted itself in the same transaction,
or to stored prompts and responses that it read with ``FOR KEY SHARE`` (one statement per chunk), so
none of them can be deleted before the import commits. Check constraints and unique indexes are not
triggers and still apply (no unique constraint here is deferrable, which would make its check a
trigger; a test keeps it so). Otherwise the database checks every row as usual (``ImportResult``'s
``foreign_keys_checked_by`` says which). Turning triggers off also skips any trigger a deployment may
have added to these tables; Palate defines none.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import ImportJob, Judgment, Pair, Project, Prompt, Response
from annotate.services.import_rows import (
    ImportOptions,
    Limits,
    RowError,
    RowItems,
    detect_format,
    iter_raw_rows,
    open_decompressed,
    row_to_items,
    work_within,
)
from annotate.services.import_storage import Answer, ChunkWriter, Storage
from annotate.services.search_documents import search_documents_fill_request
from palate.errors import ApplicationError
from palate.jobs.services import JobKind, job_claim, job_enqueue, job_fail, job_finish, job_heartbeat
from palate.storage import UPLOADS, store_reader, store_save

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5_000
MAX_REPORTED_ERRORS = 100

ProgressCallback = Callable[[int, int], None]


class ImportFailed(ApplicationError):
    code = "import_failed"

    def __init__(self, errors: list[str], *, more: bool = False) -> None:
        self.errors = errors
        suffix = f" (showing the first {len(errors)})" if more else ""
        summary = (
            errors[0]
            if len(errors) == 1
            else f"the file has {len(errors)} errors{suffix}; nothing was imported"
        )
        super().__init__(summary, fields={"file": errors})


@dataclass
class ImportResult:
    rows: int = 0
    prompts_created: int = 0
    prompts_existing: int = 0
    responses_created: int = 0
    responses_existing: int = 0
    pairs_created: int = 0
    pairs_existing: int = 0
    gold_pairs_created: int = 0
    judgments_created: int = 0
    # "importer" when the import checked its foreign keys itself (see the module's docstring),
    # "database" when PostgreSQL's triggers checked each row.
    foreign_keys_checked_by: str = ""

    def as_dict(self) -> dict[str, int]:
        counts = asdict(self)
        del counts["foreign_keys_checked_by"]
        return counts


def import_limits() -> Limits:
    return Limits(
        max_file_bytes=settings.IMPORT_MAX_FILE_BYTES,
        max_line_bytes=settings.IMPORT_MAX_LINE_BYTES,
        max_text_chars=settings.IMPORT_MAX_TEXT_CHARS,
        max_rows=settings.IMPORT_MAX_ROWS,
        max_pairs_per_prompt=settings.IMPORT_MAX_PAIRS_PER_PROMPT,
        max_pairs=settings.IMPORT_MAX_PAIRS,
    )


def import_options_check(options: ImportOptions) -> None:
    problems = options.validate()
    if problems:
        raise ApplicationError("invalid import options", fields=problems)


def import_size_check(filename: str, size: int) -> None:
    if size > settings.IMPORT_MAX_FILE_BYTES:
        raise ApplicationError(
            f"{filename}: file is {size:,} bytes, over the import limit of {settings.IMPORT_MAX_FILE_BYTES:,} bytes",
            fields={"file": ["file too large"]},
        )


def items_import(
    *,
    project: Project,
    stream: IO[bytes],
    filename: str,
    options: ImportOptions,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Imports every row of ``stream`` into ``project``, or nothing. Raises ImportFailed listing the errors."""
    import_options_check(options)
    limits = import_limits()
    name = Path(filename).name or "upload"
    try:
        fmt = detect_format(name, options.format)
    except RowError as error:
        raise ImportFailed([str(error)]) from None

    # The import allocates millions of small objects that all live until their chunk is written: the
    # cyclic garbage collector would rescan them again and again (a third of the time, measured) and finds
    # no cycles to free, so it is paused for the duration.
    collecting = gc.isenabled()
    gc.disable()
    try:
        result = _items_import(
            project=project,
            stream=stream,
            name=name,
            fmt=fmt,
            options=options,
            limits=limits,
            progress=progress,
        )
    finally:
        if collecting:
            gc.enable()
    _statistics_refresh(result)
    if result.prompts_created or result.responses_created:
        # Their search documents are built once the import commits, off the import's time.
        search_documents_fill_request(project_id=project.pk)
    return result


def _statistics_refresh(result: ImportResult) -> None:
    """Refreshes PostgreSQL's statistics of the tables an import wrote. Until they are refreshed the planner
    believes a new project has no pairs, and the annotators' "next pair" query walks and sorts the whole
    project instead of reading the first rows of its index (measured: 14 ms instead of 0.1 ms per claim on
    2,000 pairs). Autovacuum would only get there once a tenth of the table has changed.

    Prompts and responses are analysed only in the columns that queries filter, join or group on: the
    statistics of their long texts (content, messages, metadata) serve no query and took two thirds of
    the time (0.8 s of 1.4 s after 100,000 pairs). Autovacuum's own analyses still cover every column."""
    if connection.in_atomic_block or not result.pairs_created:
        return
    tables = [
        (Prompt, "(id, project_id, external_id, category)"),
        (Response, "(id, prompt_id, external_id, system)"),
        (Pair, ""),
    ] + ([(Judgment, "")] if result.judgments_created else [])
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE "
            + ", ".join(
                f"{connection.ops.quote_name(model._meta.db_table)} {columns}" for model, columns in tables
            )
        )


def _items_import(
    *,
    project: Project,
    stream: IO[bytes],
    name: str,
    fmt: str,
    options: ImportOptions,
    limits: Limits,
    progress: ProgressCallback | None,
) -> ImportResult:
    parse_errors: list[str] = []
    write_errors: list[str] = []
    result = ImportResult()
    try:
        with transaction.atomic():
            # Held to the end: nothing can delete the project (which every row refers to) meanwhile.
            if Project.objects.select_for_update().filter(pk=project.pk).first() is None:
                raise ImportFailed([f"{name}: the project was deleted; nothing was imported"])
            restore_triggers = _foreign_key_checks_begin(result)
            content, counter = open_decompressed(stream, name, limits.max_file_bytes)
            storage = Storage()
            try:
                writer = ChunkWriter(project, result, write_errors, storage)
                chunks = _parsed_chunks(content, name, fmt, options, limits, result, parse_errors)
                # Each chunk's lookup of stored rows is queued before the previous chunk's rows (see
                # ChunkWriter), so the database answers it without waiting for those to be written.
                waiting: tuple[list[RowItems], Answer] | None = None
                for chunk in itertools.chain(_read_ahead(chunks), [None]):
                    # Chunks come only while every row so far was good; one that conflicts with stored
                    # data stops the writing. Either way the transaction is rolled back below.
                    if write_errors:
                        continue
                    looked_up = (chunk, writer.lookup(chunk)) if chunk is not None else None
                    if waiting is not None:
                        writer.write(waiting[0], waiting[1].result())
                        if progress:
                            progress(result.rows, counter.count)
                    waiting = looked_up
                storage.finish()
            finally:
                storage.close()
            # Chunks end before the first bad row, so conflicts found while writing come first in the file.
            errors = write_errors + parse_errors
            if not errors and result.rows == 0:
                errors.append(f"{name}: the file is empty: no rows to import")
            if errors:
                raise ImportFailed(errors[:MAX_REPORTED_ERRORS], more=len(errors) > MAX_REPORTED_ERRORS)
            if progress:
                progress(result.rows, counter.count)
            # A caller's enclosing transaction must not go on without its triggers. (When the import
            # fails instead, rolling its savepoint or transaction back undoes the setting.)
            restore_triggers()
    except RowError as error:
        errors = write_errors + parse_errors
        raise ImportFailed([*errors, str(error)][:MAX_REPORTED_ERRORS]) from None
    return result


def _foreign_key_checks_begin(result: ImportResult) -> Callable[[], None]:
    """Chooses who checks the import's foreign keys (see the module's docstring), records it in
    ``result`` and returns what restores the session's setting once the rows are written. Call inside
    the import's transaction, with the project row locked."""
    permitted = (
        "has_parameter_privilege('session_replication_role', 'SET')"
        if connection.pg_version >= 150000
        else "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {permitted}, current_setting('session_replication_role')")
        allowed, previous = cursor.fetchone()
        if not allowed:
            # Checked at the end of each chunk's COPY rather than all at commit: the checks then run
            # while the reader thread parses the next chunk.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            result.foreign_keys_checked_by = "database"
            return lambda: None
        cursor.execute("SET LOCAL session_replication_role = replica")
    result.foreign_keys_checked_by = "importer"

    def restore() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('session_replication_role', %s, true)", [previous])

    return restore


def _parsed_chunks(
    content: IO[bytes],
    name: str,
    fmt: str,
    options: ImportOptions,
    limits: Limits,
    result: ImportResult,
    errors: list[str],
) -> Iterator[list[RowItems]]:
    """Reads and checks rows, in chunks of CHUNK_ROWS. Row errors go to ``errors`` (reading goes on, to
    report up to MAX_REPORTED_ERRORS of them, and one more to say there are more); a file that cannot be
    read at all raises RowError."""
    seen_row_ids: dict[str, dict[str, int]] = {}
    chunk: list[RowItems] = []
    pairs = 0
    for location, raw in iter_raw_rows(content, name, fmt, limits):
        result.rows += 1
        if result.rows > limits.max_rows:
            errors.append(f"{name}: more than {limits.max_rows:,} rows, the import limit")
            break
        try:
            items = row_to_items(raw, location, options, limits)
            _check_unique_row_id(items, raw, seen_row_ids)
        except RowError as error:
            errors.append(str(error))
            if len(errors) > MAX_REPORTED_ERRORS:
                break
            continue
        pairs += len(items.pairs)
        if pairs > limits.max_pairs:
            errors.append(
                f"{location}: the rows so far would make {pairs:,} pairs; the limit is {limits.max_pairs:,} "
                "per import (IMPORT_MAX_PAIRS): split the file"
            )
            break
        if not errors:
            chunk.append(items)
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
    if chunk and not errors:
        yield chunk


_DONE = object()


def _read_ahead(chunks: Iterator[list[RowItems]], depth: int = 2) -> Iterator[list[RowItems]]:
    """Runs ``chunks`` in a thread, ``depth`` chunks ahead of the caller: parsing (Python) overlaps with
    PostgreSQL storing the previous chunk (the caller waits on the database with the GIL released).
    The thread's exception is raised in the caller; a caller that stops early stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    def hand_over(item: object) -> bool:
        while not stopping.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over(chunk):
                    return
            hand_over(_DONE)
        except BaseException as error:  # handed to the caller, which raises it
            hand_over(error)

    reader = threading.Thread(target=produce, name="import-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        reader.join()


def _check_unique_row_id(items: RowItems, raw: dict[str, Any], seen: dict[str, dict[str, int]]) -> None:
    """Refuses a row id met before in the file (per shape: a prompt's id and a pair's id may be equal).
    ``seen`` keeps each id with the number of its line (item, row) alone, not its whole location: it is
    the one thing an import holds for every row of the file (a third less memory per row)."""
    if not items.row_id:
        return
    first_at = seen.setdefault("prompt" if "responses" in raw else "pair", {})
    place, number = items.location.rsplit(" ", 2)[-2:]  # "items.jsonl, line 17" -> "line", "17"
    if items.row_id in first_at:
        raise RowError(
            items.location, f"duplicate id '{items.row_id}' (first used at {place} {first_at[items.row_id]})"
        )
    first_at[items.row_id] = int(number)


# Jobs -------------------------------------------------------------------------------------------------


def _send(job: ImportJob) -> None:
    from annotate.tasks import import_job_run_task

    import_job_run_task.delay(job.pk)


IMPORT_JOBS = JobKind(
    model=ImportJob,
    send=_send,
    noun="import",
    # The upload is kept while attempts remain: the next attempt reads it again.
    temporary_files=lambda job, status: [(UPLOADS, job.stored_path)] if job.stored_path else [],
    cleared_on_end={"stored_path": ""},
    failure_fields=lambda message: {"errors": [message]},
)


def import_job_progress(*, job: ImportJob) -> dict[str, int]:
    """Rows and bytes read so far by a job (a running job's heartbeat writes them)."""
    return {"rows": job.rows_done, "bytes": job.bytes_done}


def import_job_create(
    *, project: Project, upload: IO[bytes], filename: str, size: int, options: ImportOptions, created_by: Any
) -> ImportJob:
    """Streams the upload into the uploads store (the worker that runs the import may be on another machine)
    and queues the import. Celery is told only after the job row is committed."""
    import_options_check(options)
    import_size_check(filename, size)
    stored = import_upload_name(filename)
    store_save(UPLOADS, stored, upload)
    return import_job_queue(
        project=project, stored=stored, filename=filename, size=size, options=options, created_by=created_by
    )


def import_upload_name(filename: str) -> str:
    """A new name in the uploads store for an upload of ``filename``."""
    return f"imports/{uuid.uuid4().hex}-{Path(filename).name}"


def import_job_queue(
    *, project: Project, stored: str, filename: str, size: int, options: ImportOptions, created_by: Any
) -> ImportJob:
    """Records the job of an upload stored as ``stored`` and sends its task once committed."""
    job = ImportJob.objects.create(
        project=project,
        created_by=created_by,
        filename=Path(filename).name,
        stored_path=stored,
        options=asdict(options),
        bytes_total=size,
    )
    transaction.on_commit(lambda: job_enqueue(job))
    return job


def import_job_run(*, job_id: int, worker: str = "worker") -> ImportJob | None:
    """Claims the job (``palate.jobs.job_claim``: a redelivered task runs it again only when its worker was
    lost) and imports its upload; returns the job as it ended, or None when there was nothing to run. An
    attempt whose worker dies leaves nothing behind (its transaction is rolled back), so the next one starts
    over from the stored upload."""
    attempt = job_claim(ImportJob, job_id=job_id, worker=worker)
    if attempt is None:
        logger.info("import job %s is not claimable (finished, or running elsewhere)", job_id)
        return None
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    with job_heartbeat(ImportJob, job_id=job_id, attempt=attempt) as heartbeat:

        def report(rows: int, read: int) -> None:
            share = min(1.0, read / job.bytes_total) if job.bytes_total else 0.0
            heartbeat.report(rows_done=rows, bytes_done=read, progress=share)

        try:
            with store_reader(UPLOADS, job.stored_path) as stream:
                result = items_import(
                    project=job.project,
                    stream=stream,
                    filename=job.filename,
                    options=ImportOptions(**job.options),
                    progress=report,
                )
        except ImportFailed as failure:
            job_fail(ImportJob, job_id=job_id, attempt=attempt, error=failure.message, errors=failure.errors)
        except Exception as error:
            logger.exception("import job %s crashed", job_id)
            job_fail(
                ImportJob,
                job_id=job_id,
                attempt=attempt,
                error=f"{job.filename}: the import stopped: {error}",
            )
        else:
            job_finish(
                ImportJob,
                job_id=job_id,
                attempt=attempt,
                counts=result.as_dict(),
                rows_done=result.rows,
                bytes_done=job.bytes_total,
            )
    job.refresh_from_db()
    return job


def import_run_now(
    *, project: Project, upload: IO[bytes], filename: str, options: ImportOptions, created_by: Any
) -> tuple[ImportJob, ImportResult | None, ImportFailed | None]:
    """Imports a small upload inside the request and records it, once done, as a finished job for the
    history (never a running one: no worker would beat for it)."""
    started = timezone.now()
    result: ImportResult | None = None
    failure: ImportFailed | None = None
    try:
        result = items_import(project=project, stream=upload, filename=filename, options=options)
    except ImportFailed as error:
        failure = error
    if failure is not None:
        outcome: dict[str, Any] = {
            "status": ImportJob.Status.FAILED,
            "error": failure.message,
            "errors": failure.errors,
        }
    else:
        outcome = {
            "status": ImportJob.Status.SUCCEEDED,
            "counts": result.as_dict(),
            "rows_done": result.rows,
            "progress": 1.0,
        }
    job = ImportJob.objects.create(
        project=project,
        created_by=created_by,
        filename=Path(filename).name,
        options=asdict(options),
        attempts=1,
        started_at=started,
        finished_at=timezone.now(),
        **outcome,
    )
    return job, result, failure


@dataclass
class ImportStarted:
    """What ``import_start`` did: ran the import (``result``, or ``failure``) or queued it as ``job``."""

    job: ImportJob
    result: ImportResult | None = None
    failure: ImportFailed | None = None

    @property
    def queued(self) -> bool:
        return self.result is None and self.failure is None


def import_start(
    *,
    project: Project,
    upload: IO[bytes],
    filename: str,
    size: int,
    options: ImportOptions,
    created_by: Any,
) -> ImportStarted:
    """Imports an upload of the import page or the API: in the request when the work it will cost is small,
    else as a job (the one place this is decided). Small means content of at most
    ``IMPORT_ASYNC_THRESHOLD_BYTES`` once gunzipped making at most ``IMPORT_ASYNC_THRESHOLD_PAIRS`` pairs,
    found by reading the upload no further than those bounds (``import_rows.work_within``; Parquet is never
    small). ``upload`` must be seekable: a small one is read twice."""
    import_options_check(options)
    import_size_check(filename, size)
    if _is_small(upload, filename, options):
        job, result, failure = import_run_now(
            project=project, upload=upload, filename=filename, options=options, created_by=created_by
        )
        return ImportStarted(job, result, failure)
    job = import_job_create(
        project=project, upload=upload, filename=filename, size=size, options=options, created_by=created_by
    )
    return ImportStarted(job)


def _is_small(upload: IO[bytes], filename: str, options: ImportOptions) -> bool:
    name = Path(filename).name or "upload"
    try:
        fmt = detect_format(name, options.format)
    except RowError:
        return True  # the import says so at once
    upload.seek(0)
    try:
        return work_within(
            upload,
            name,
            fmt,
            options,
            import_limits(),
            content_bytes=settings.IMPORT_ASYNC_THRESHOLD_BYTES,
            pairs=settings.IMPORT_ASYNC_THRESHOLD_PAIRS,
        )
    finally:
        upload.seek(0)
