"""The one import service, used by ``manage.py import_items``, the API and the import page.

An import is atomic: it runs in one transaction with the project row locked, and when any row fails
nothing is written and every error (up to ``MAX_REPORTED_ERRORS``) is reported with its place. Rows are
read and written in chunks, so memory stays flat however large the file is. On PostgreSQL rows go in
through COPY with ids drawn from the tables' sequences; elsewhere through ``bulk_create``.

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
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import F, Lookup, Q
from django.utils import timezone
from psycopg.types.json import set_json_dumps

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
)
from palate.errors import ApplicationError

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
    # "database" when PostgreSQL's triggers checked each row; empty elsewhere.
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
    problems = options.validate()
    if problems:
        raise ApplicationError("invalid import options", fields=problems)
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
    return result


def _statistics_refresh(result: ImportResult) -> None:
    """Refreshes PostgreSQL's statistics of the tables an import wrote. Until they are refreshed the planner
    believes a new project has no pairs, and the annotators' "next pair" query walks and sorts the whole
    project instead of reading the first rows of its index (measured: 14 ms instead of 0.1 ms per claim on
    2,000 pairs). Autovacuum would only get there once a tenth of the table has changed.

    Prompts and responses are analysed only in the columns that queries filter, join or group on: the
    statistics of their long texts (content, messages, metadata) serve no query and took two thirds of
    the time (0.8 s of 1.4 s after 100,000 pairs). Autovacuum's own analyses still cover every column."""
    if connection.vendor != "postgresql" or connection.in_atomic_block or not result.pairs_created:
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
            writer = _ChunkWriter(project, result, write_errors)
            chunks = _parsed_chunks(content, name, fmt, options, limits, result, parse_errors)
            for chunk in _read_ahead(chunks):
                # Chunks come only while every row so far was good; one that conflicts with stored data
                # stops the writing. Either way the transaction is rolled back below and nothing stays.
                if not write_errors:
                    writer.write(chunk)
                    if progress:
                        progress(result.rows, counter.count)
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
    if connection.vendor != "postgresql":
        return lambda: None
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
    seen_row_ids: dict[tuple[str, str], str] = {}
    chunk: list[RowItems] = []
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


def _check_unique_row_id(items: RowItems, raw: dict[str, Any], seen: dict[tuple[str, str], str]) -> None:
    if not items.row_id:
        return
    shape = "prompt" if "responses" in raw else "pair"
    key = (shape, items.row_id)
    if key in seen:
        raise RowError(
            items.location, f"duplicate id '{items.row_id}' (first used at {seen[key].split(', ', 1)[-1]})"
        )
    seen[key] = items.location


class _AnyOf(Lookup):
    """``field = ANY(%s)`` with the values as one array."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%b)", [*lhs_params, list(self.rhs)]


def _among(field: str, values: Collection[Any]) -> Q | Lookup:
    """``field IN values``. On PostgreSQL spelled ``field = ANY(array)``: one parameter instead of a
    placeholder per value, which Django composes and psycopg parses again for every chunk's lookup of
    5,000 ids (20 ms of CPU each, most of a second per 100,000 pairs). The array goes in binary (``%b``):
    psycopg writes a text array in Python, quoting every element (5 µs each)."""
    if connection.vendor != "postgresql":
        return Q(**{f"{field}__in": values})
    return _AnyOf(F(field), values)


def _key_shared(rows: models.QuerySet) -> Iterable[tuple]:
    """The rows of a ``values_list`` query, locked FOR KEY SHARE on PostgreSQL, as a foreign-key trigger
    locks a parent row: until the import commits nobody can delete them or change their id, and a row
    deleted meanwhile by a transaction that committed is not returned. Django has no such locking mode."""
    if connection.vendor != "postgresql":
        return rows
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} FOR KEY SHARE", params)
        return cursor.fetchall()


def _stored_by_external_id(
    model: type[models.Model],
    project: Project,
    external_ids: Collection[str],
    columns: list[str],
    *,
    key_shared: bool,
) -> Iterable[tuple]:
    """``columns`` of the project's rows of ``model`` (prompts or pairs) whose external id is one of
    ``external_ids``, locked FOR KEY SHARE when ``key_shared`` (see ``_key_shared``).

    On PostgreSQL each id is one probe of the (project, external id) unique index. Asked as
    ``project_id = %s AND external_id = ANY(%s)``, the planner, which believes a project created since the
    last ANALYZE holds no rows, read the project's whole range of the index and filtered it: every row
    written by the import's earlier chunks, again for each chunk, so the lookups grew with the square of
    the file. Here each id is a LATERAL subquery, which a locking clause or OFFSET keeps from being
    merged into a join. The project is given as a subquery, a value unknown when the statement is planned:
    with the project's id in hand the planner (believing it empty) rated a scan of the project's range of
    another index that starts with the project (pairs have three) as cheap as the probe, and took it
    (32 s for one chunk); for an unknown project it expects a share of the table and probes."""
    if connection.vendor != "postgresql":
        rows = model.objects.filter(external_id__in=external_ids, project=project).order_by()
        return rows.values_list(*columns)
    with connection.cursor() as cursor:
        cursor.execute(
            _stored_by_external_id_sql(model, columns, key_shared=key_shared),
            [list(external_ids), project.pk],
        )
        return cursor.fetchall()


def _stored_by_external_id_sql(model: type[models.Model], columns: list[str], *, key_shared: bool) -> str:
    """``_stored_by_external_id``'s statement on PostgreSQL; its parameters are the ids and the project."""
    quote = connection.ops.quote_name
    # "Not empty" spelled out, as a literal, lets a partial unique index (pairs') serve the probe.
    return (
        f"SELECT {', '.join(f'found.{quote(column)}' for column in columns)}"
        " FROM unnest(%b::text[]) AS wanted(external_id) CROSS JOIN LATERAL"
        f" (SELECT {', '.join(quote(column) for column in columns)} FROM {quote(model._meta.db_table)} AS stored"
        " WHERE stored.project_id = (SELECT %s) AND stored.external_id = wanted.external_id"
        f" AND stored.external_id <> '' {'FOR KEY SHARE' if key_shared else 'OFFSET 0'}) AS found"
    )


class _ChunkWriter:
    """Writes a chunk of rows, reusing what earlier imports (or earlier chunks) already stored and refusing
    an id that now names different content. Stored prompts and responses are read locked (``_key_shared``)
    because new rows may refer to them."""

    def __init__(self, project: Project, result: ImportResult, errors: list[str]) -> None:
        self.project = project
        self.result = result
        self.errors = errors
        # Pair ids are unique within a file (checked while reading) and only imports, which hold the
        # project's lock, store pairs: when the project had no named pair before this import, no chunk
        # needs to look pair ids up.
        self.named_pairs_stored = (
            Pair.objects.filter(project=project)
            # The partial unique index answers this when "not empty" is a literal (see below).
            .extra(where=["annotate_pair.external_id <> ''"])
            .exists()
        )

    def write(self, chunk: list[RowItems]) -> None:
        prompt_ids = self._prompts(chunk)
        if self.errors:
            return
        response_ids = self._responses(chunk, prompt_ids)
        if self.errors:
            return
        self._pairs(chunk, prompt_ids, response_ids)

    def _prompts(self, chunk: list[RowItems]) -> dict[str, tuple[int, bool]]:
        """Maps each prompt's external id to (database id, existed before this import chunk)."""
        keys = {items.prompt.external_id for items in chunk}
        stored = {
            external_id: (pk, digest)
            for external_id, pk, digest in _stored_by_external_id(
                Prompt, self.project, keys, ["external_id", "id", "fingerprint"], key_shared=True
            )
        }
        ids: dict[str, tuple[int, bool]] = {}
        new_rows: list[tuple[str, tuple]] = []
        pending: dict[str, str] = {}
        now = timezone.now()
        for items in chunk:
            record = items.prompt
            if record.external_id in stored:
                pk, digest = stored[record.external_id]
                if digest != record.fingerprint:
                    self.errors.append(
                        f"{items.location}: id '{record.external_id}' was imported before with a different prompt"
                    )
                    continue
                if record.external_id not in ids:
                    self.result.prompts_existing += 1
                ids[record.external_id] = (pk, True)
            elif record.external_id in pending:
                if pending[record.external_id] != record.fingerprint:
                    self.errors.append(
                        f"{items.location}: id '{record.external_id}' is used for two different prompts"
                    )
            else:
                pending[record.external_id] = record.fingerprint
                new_rows.append(
                    (
                        record.external_id,
                        (
                            self.project.pk,
                            record.external_id,
                            record.content,
                            record.messages,
                            record.category,
                            record.metadata,
                            record.fingerprint,
                            now,
                        ),
                    )
                )
        if self.errors:
            return ids
        created = bulk_insert(
            Prompt,
            [
                "project_id",
                "external_id",
                "content",
                "messages",
                "category",
                "metadata",
                "fingerprint",
                "created_at",
            ],
            [row for _, row in new_rows],
        )
        for (external_id, _), pk in zip(new_rows, created, strict=True):
            ids[external_id] = (pk, False)
        self.result.prompts_created += len(created)
        return ids

    def _responses(
        self, chunk: list[RowItems], prompt_ids: dict[str, tuple[int, bool]]
    ) -> dict[tuple[int, str], int]:
        existing_prompts = {pk for pk, existed in prompt_ids.values() if existed}
        stored: dict[tuple[int, str], tuple[int, str]] = {}
        if existing_prompts:
            for prompt_id, external_id, pk, digest in _key_shared(
                Response.objects.filter(_among("prompt_id", existing_prompts))
                .order_by()
                .values_list("prompt_id", "external_id", "id", "fingerprint")
            ):
                stored[(prompt_id, external_id)] = (pk, digest)
        ids: dict[tuple[int, str], int] = {}
        new_keys: list[tuple[int, str]] = []
        new_rows: list[tuple] = []
        pending: dict[tuple[int, str], str] = {}
        now = timezone.now()
        for items in chunk:
            prompt_id = prompt_ids[items.prompt.external_id][0]
            for record in items.responses:
                key = (prompt_id, record.external_id)
                if key in stored:
                    pk, digest = stored[key]
                    if digest != record.fingerprint:
                        self.errors.append(
                            f"{items.location}: response id '{record.external_id}' was imported before with different content"
                        )
                    elif key not in ids:
                        self.result.responses_existing += 1
                        ids[key] = pk
                elif key in pending:
                    if pending[key] != record.fingerprint:
                        self.errors.append(
                            f"{items.location}: response id '{record.external_id}' is used for two different responses"
                        )
                else:
                    pending[key] = record.fingerprint
                    new_keys.append(key)
                    new_rows.append(
                        (
                            prompt_id,
                            record.external_id,
                            record.system,
                            record.content,
                            record.metadata,
                            record.fingerprint,
                            now,
                        )
                    )
        if self.errors:
            return ids
        created = bulk_insert(
            Response,
            ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
            new_rows,
        )
        ids.update(zip(new_keys, created, strict=True))
        self.result.responses_created += len(created)
        return ids

    def _pairs(
        self,
        chunk: list[RowItems],
        prompt_ids: dict[str, tuple[int, bool]],
        response_ids: dict[tuple[int, str], int],
    ) -> None:
        existing_prompts = {pk for pk, existed in prompt_ids.values() if existed}
        stored_couples: set[tuple[int, int]] = set()
        if existing_prompts:
            for first, second in (
                Pair.objects.filter(_among("prompt_id", existing_prompts))
                .order_by()
                .values_list("response_a_id", "response_b_id")
            ):
                stored_couples.add((min(first, second), max(first, second)))
        named = [pair.external_id for items in chunk for pair in items.pairs if pair.external_id]
        stored_names: dict[str, tuple[int, int]] = {}
        if named and self.named_pairs_stored:
            for external_id, first, second in _stored_by_external_id(
                Pair, self.project, named, ["external_id", "response_a_id", "response_b_id"], key_shared=False
            ):
                stored_names[external_id] = (min(first, second), max(first, second))

        new_rows: list[tuple] = []
        prior_choices: list[str] = []
        now = timezone.now()
        for items in chunk:
            prompt_id = prompt_ids[items.prompt.external_id][0]
            for pair in items.pairs:
                a_id, b_id = response_ids[(prompt_id, pair.a)], response_ids[(prompt_id, pair.b)]
                couple = (min(a_id, b_id), max(a_id, b_id))
                if pair.external_id in stored_names and stored_names[pair.external_id] != couple:
                    self.errors.append(
                        f"{items.location}: pair id '{pair.external_id}' was imported before for different responses"
                    )
                    continue
                if couple in stored_couples:
                    self.result.pairs_existing += 1
                    continue
                stored_couples.add(couple)
                new_rows.append(
                    (
                        self.project.pk,
                        prompt_id,
                        a_id,
                        b_id,
                        pair.external_id,
                        bool(pair.gold_choice),
                        pair.gold_choice,
                        now,
                    )
                )
                prior_choices.append(pair.prior_choice)
                self.result.gold_pairs_created += bool(pair.gold_choice)
        if self.errors:
            return
        created = bulk_insert(
            Pair,
            [
                "project_id",
                "prompt_id",
                "response_a_id",
                "response_b_id",
                "external_id",
                "is_gold",
                "gold_choice",
                "created_at",
            ],
            new_rows,
        )
        self.result.pairs_created += len(created)
        judgments = [
            (pair_id, None, Judgment.Origin.IMPORTED.value, choice, None, {}, "", False, None, now, now)
            for pair_id, choice in zip(created, prior_choices, strict=True)
            if choice
        ]
        bulk_insert(
            Judgment,
            [
                "pair_id",
                "annotator_id",
                "origin",
                "choice",
                "strength",
                "criteria",
                "rationale",
                "shown_swapped",
                "duration_ms",
                "created_at",
                "updated_at",
            ],
            judgments,
        )
        self.result.judgments_created += len(judgments)


def bulk_insert(model: type[models.Model], columns: list[str], rows: Iterable[tuple]) -> list[int]:
    """Inserts rows (values in ``columns`` order, by database column name; dicts and lists for JSON
    columns) and returns their new ids in order.

    On PostgreSQL the ids come from the table's sequence and the rows go in through one binary COPY:
    several times faster than INSERT. Binary rather than text because then nothing is escaped on the way
    out or parsed on the way in: psycopg's C code lays the values out as they are, and PostgreSQL spent
    about a third less time on the responses of 100,000 pairs."""
    rows = list(rows)
    if not rows:
        return []
    if connection.vendor != "postgresql":
        objects = model.objects.bulk_create(
            [model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=1000
        )
        return [obj.pk for obj in objects]

    table = model._meta.db_table
    with connection.cursor() as cursor:
        # Ids are drawn from the table's sequence (one round trip for the whole chunk). No table lock: a
        # running import must never make annotators wait, and claims and submits update pair rows.
        # The sequence is looked up once: pg_get_serial_sequence() in the nextval() call was evaluated for
        # every row, searching the catalogs each time (a sixth of PostgreSQL's time on 100,000 pairs).
        # A binary COPY must name each column's type.
        cursor.execute(
            "SELECT attname, atttypid, pg_get_serial_sequence(%s, 'id')::regclass::oid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table, connection.ops.quote_name(table)],
        )
        columns_found = cursor.fetchall()
        type_of = {name: type_id for name, type_id, _ in columns_found}
        cursor.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [columns_found[0][2], len(rows)]
        )
        ids = [row[0] for row in cursor.fetchall()]
        copying = cursor.cursor
        set_json_dumps(orjson.dumps, context=copying)
        column_list = ", ".join(connection.ops.quote_name(column) for column in ["id", *columns])
        with copying.copy(
            f"COPY {connection.ops.quote_name(table)} ({column_list}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([type_of[column] for column in ["id", *columns]])
            write_row = copy.write_row
            for pk, row in zip(ids, rows, strict=True):
                write_row((pk, *row))
    return ids


# Jobs -------------------------------------------------------------------------------------------------


def _progress_key(job_id: int) -> str:
    return f"palate:import-progress:{job_id}"


def import_job_progress(*, job: ImportJob) -> dict[str, int]:
    """Rows and bytes read so far by a running job (kept in the cache: the job's own row is inside its
    transaction until the end)."""
    return cache.get(_progress_key(job.pk)) or {"rows": job.rows_done, "bytes": job.bytes_done}


def import_job_create(
    *, project: Project, upload: IO[bytes], filename: str, size: int, options: ImportOptions, created_by: Any
) -> ImportJob:
    """Stores the upload and queues the import. Celery is told only after the job row is committed."""
    from annotate.tasks import import_job_run_task

    problems = options.validate()
    if problems:
        raise ApplicationError("invalid import options", fields=problems)
    if size > settings.IMPORT_MAX_FILE_BYTES:
        raise ApplicationError(
            f"{filename}: file is {size:,} bytes, over the import limit of {settings.IMPORT_MAX_FILE_BYTES:,} bytes",
            fields={"file": ["file too large"]},
        )
    folder = Path(settings.MEDIA_ROOT) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / f"{uuid.uuid4().hex}-{Path(filename).name}"
    with stored.open("wb") as target:
        shutil.copyfileobj(upload, target, length=1 << 20)
    job = ImportJob.objects.create(
        project=project,
        created_by=created_by,
        filename=Path(filename).name,
        stored_path=str(stored),
        options=asdict(options),
        bytes_total=size,
    )
    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))
    return job


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Runs a queued job. Claims it with a status transition, so a redelivered task does nothing."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        logger.info("import job %s was already claimed", job_id)
        return None
    job = ImportJob.objects.select_related("project").get(pk=job_id)

    def report(rows: int, read: int) -> None:
        cache.set(_progress_key(job.pk), {"rows": rows, "bytes": read, "at": time.time()}, timeout=24 * 3600)

    try:
        with open(job.stored_path, "rb") as stream:
            result = items_import(
                project=job.project,
                stream=stream,
                filename=job.filename,
                options=ImportOptions(**job.options),
                progress=report,
            )
    except ImportFailed as failure:
        job.status, job.errors = ImportJob.Status.FAILED, failure.errors
    except Exception as error:
        logger.exception("import job %s crashed", job.pk)
        job.status, job.errors = ImportJob.Status.FAILED, [f"{job.filename}: the import stopped: {error}"]
    else:
        job.status, job.counts, job.rows_done = ImportJob.Status.SUCCEEDED, result.as_dict(), result.rows
        job.bytes_done = job.bytes_total
    finally:
        Path(job.stored_path).unlink(missing_ok=True)
        cache.delete(_progress_key(job.pk))
    job.stored_path = ""
    job.finished_at = timezone.now()
    job.save(
        update_fields=["status", "errors", "counts", "rows_done", "bytes_done", "stored_path", "finished_at"]
    )
    return job


def import_jobs_reap(*, stale_after_seconds: int = 1800) -> int:
    """Fails jobs whose worker died: running with no progress reported for ``stale_after_seconds``, or
    queued for a day. Their transaction was rolled back with the worker, so nothing was written."""
    now = timezone.now()
    reaped = 0
    for job in ImportJob.objects.filter(status=ImportJob.Status.RUNNING):
        progress = cache.get(_progress_key(job.pk)) or {}
        last_sign_of_life = progress.get("at") or (job.started_at or job.created_at).timestamp()
        if time.time() - last_sign_of_life > stale_after_seconds:
            reaped += ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
                status=ImportJob.Status.FAILED,
                errors=[
                    f"{job.filename}: the worker stopped while importing; nothing was imported. Try again."
                ],
                finished_at=now,
            )
    reaped += ImportJob.objects.filter(
        status=ImportJob.Status.QUEUED, created_at__lt=now - timezone.timedelta(days=1)
    ).update(
        status=ImportJob.Status.FAILED,
        errors=["no worker picked this import up within a day; is a Celery worker running?"],
        finished_at=now,
    )
    return reaped


def import_run_now(
    *, project: Project, upload: IO[bytes], filename: str, options: ImportOptions, created_by: Any
) -> tuple[ImportJob, ImportResult | None, ImportFailed | None]:
    """Imports a small upload inside the request and records it as a finished job, for the history."""
    job = ImportJob.objects.create(
        project=project,
        created_by=created_by,
        filename=Path(filename).name,
        options=asdict(options),
        status=ImportJob.Status.RUNNING,
        started_at=timezone.now(),
    )
    try:
        result = items_import(project=project, stream=upload, filename=filename, options=options)
    except ImportFailed as failure:
        job.status, job.errors, job.finished_at = ImportJob.Status.FAILED, failure.errors, timezone.now()
        job.save(update_fields=["status", "errors", "finished_at"])
        return job, None, failure
    except ApplicationError:
        job.delete()
        raise
    job.status, job.counts, job.rows_done, job.finished_at = (
        ImportJob.Status.SUCCEEDED,
        result.as_dict(),
        result.rows,
        timezone.now(),
    )
    job.save(update_fields=["status", "counts", "rows_done", "finished_at"])
    return job, result, None
