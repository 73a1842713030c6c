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
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import psycopg
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps

from annotate.models import ImportJob, Judgment, Pair, Project, Prompt, Response
from annotate.services.import_rows import (
    ImportOptions,
    Limits,
    PromptRecord,
    ResponseRecord,
    RowError,
    RowItems,
    detect_format,
    iter_raw_rows,
    open_decompressed,
    row_to_items,
)
from palate.errors import ApplicationError
from palate.jobs.services import JobKind, job_claim, job_enqueue, job_fail, job_finish, job_heartbeat

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
            storage = _Storage()
            try:
                writer = _ChunkWriter(project, result, write_errors, storage)
                chunks = _parsed_chunks(content, name, fmt, options, limits, result, parse_errors)
                # Each chunk's lookup of stored rows is queued before the previous chunk's rows (see
                # _ChunkWriter), so the database answers it without waiting for those to be written.
                waiting: tuple[list[RowItems], _Answer] | None = None
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


def _stored_by_external_id_sql(model: type[models.Model], columns: list[str], *, key_shared: bool) -> str:
    """PostgreSQL's statement for ``columns`` of the project's rows of ``model`` (prompts or pairs) whose
    external id is one of a list, locked FOR KEY SHARE when ``key_shared``. Its parameters are the list of
    ids and the project's id.

    Each id is one probe of the (project, external id) unique index. Asked as ``project_id = %s AND
    external_id = ANY(%s)``, the planner, which believes a project created since the last ANALYZE holds no
    rows, read the project's whole range of the index and filtered it: every row written by the import's
    earlier chunks, again for each chunk, so the lookups grew with the square of the file. Here each id
    is a LATERAL subquery, which a locking clause or OFFSET keeps from being merged into a join. The
    project is given as a subquery, a value unknown when the statement is planned: with the project's id
    in hand the planner (believing it empty) rated a scan of the project's range of another index that
    starts with the project (pairs have three) as cheap as the probe, and took it (32 s for one chunk);
    for an unknown project it expects a share of the table and probes."""
    quote = connection.ops.quote_name
    # "Not empty" spelled out, as a literal, lets a partial unique index (pairs') serve the probe.
    return (
        f"SELECT {', '.join(f'found.{quote(column)}' for column in columns)}"
        " FROM unnest(%b::text[]) AS wanted(external_id) CROSS JOIN LATERAL"
        f" (SELECT {', '.join(quote(column) for column in columns)} FROM {quote(model._meta.db_table)} AS stored"
        " WHERE stored.project_id = (SELECT %s) AND stored.external_id = wanted.external_id"
        f" AND stored.external_id <> '' {'FOR KEY SHARE' if key_shared else 'OFFSET 0'}) AS found"
    )


@dataclass
class _Stored:
    """Rows a chunk names that are already stored: its prompts (by external id: id and fingerprint),
    those prompts' responses (by prompt id and external id: id and fingerprint) and pairs (as the couple
    of their response ids, smaller first), and the project's pairs named in the chunk (by external id:
    their couple). Also what one chunk created, in the same terms."""

    prompts: dict[str, tuple[int, str]] = field(default_factory=dict)
    responses: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)
    couples: set[tuple[int, int]] = field(default_factory=set)
    pair_names: dict[str, tuple[int, int]] = field(default_factory=dict)


class _ChunkWriter:
    """Writes a chunk of rows, reusing what earlier imports (or earlier chunks) already stored and refusing
    an id that now names different content.

    Stored rows are looked up a chunk at a time (``lookup``; prompts and responses locked FOR KEY SHARE,
    because new rows may refer to them). The storage runs lookups and inserts in the order they are
    given, and each chunk's lookup is given before the previous chunk's rows: so the lookup sees what was
    stored up to the chunk before the previous one, and the previous chunk's new rows are checked here,
    from memory (``self.recent``). The storage works in a thread of its own, and this ordering lets Python
    build a chunk's rows while PostgreSQL stores the previous chunk and answers the next chunk's lookup. Memory holds the rows of a few chunks, whatever the size of the file."""

    def __init__(self, project: Project, result: ImportResult, errors: list[str], storage: _Storage) -> None:
        self.project = project
        self.result = result
        self.errors = errors
        self.storage = storage
        self.recent = _Stored()
        # Pair ids are unique within a file (checked while reading) and only imports, which hold the
        # project's lock, store pairs: when the project had no named pair before this import, no chunk
        # needs to look pair ids up.
        self.named_pairs_stored = (
            Pair.objects.filter(project=project)
            # The partial unique index answers this when "not empty" is a literal (see below).
            .extra(where=["annotate_pair.external_id <> ''"])
            .exists()
        )

    def lookup(self, chunk: list[RowItems]) -> _Answer:
        """Asks the storage for the stored rows that ``chunk`` names. Give each chunk's lookup before
        the previous chunk is written (see the class's docstring)."""
        prompt_keys = list({items.prompt.external_id for items in chunk})
        pair_names = (
            [pair.external_id for items in chunk for pair in items.pairs if pair.external_id]
            if self.named_pairs_stored
            else []
        )
        return self.storage.lookup(self.project, prompt_keys, pair_names)

    def write(self, chunk: list[RowItems], stored: _Stored) -> None:
        """Writes ``chunk`` given its lookup's answer, or adds to ``errors`` the rows that conflict."""
        created = _Stored()
        prompt_ids = self._prompts(chunk, stored, created)
        if self.errors:
            return
        response_ids = self._responses(chunk, stored, prompt_ids, created)
        if self.errors:
            return
        self._pairs(chunk, stored, prompt_ids, response_ids, created)
        self.recent = created

    def _prompts(self, chunk: list[RowItems], stored: _Stored, created: _Stored) -> dict[str, int]:
        """Maps each prompt's external id to its database id."""
        ids: dict[str, int] = {}
        pending: dict[str, PromptRecord] = {}  # the new prompts, in the order met
        earlier = _either(stored.prompts, self.recent.prompts)
        for items in chunk:
            record = items.prompt
            key = record.external_id
            found = earlier.get(key)
            if found is not None:
                pk, digest = found
                if digest != record.fingerprint:
                    self.errors.append(
                        f"{items.location}: id '{key}' was imported before with a different prompt"
                    )
                    continue
                if key not in ids:
                    self.result.prompts_existing += 1
                ids[key] = pk
            elif key in pending:
                if pending[key].fingerprint != record.fingerprint:
                    self.errors.append(f"{items.location}: id '{key}' is used for two different prompts")
            else:
                pending[key] = record
        if self.errors:
            return ids
        now, project_id = timezone.now(), self.project.pk
        new_ids = self.storage.insert(
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
            [
                (
                    project_id,
                    key,
                    record.content,
                    record.messages,
                    record.category,
                    record.metadata,
                    record.fingerprint,
                    now,
                )
                for key, record in pending.items()
            ],
        )
        _remember_created(pending, new_ids, ids, created.prompts)
        self.result.prompts_created += len(new_ids)
        return ids

    def _responses(
        self, chunk: list[RowItems], stored: _Stored, prompt_ids: dict[str, int], created: _Stored
    ) -> dict[tuple[int, str], int]:
        ids: dict[tuple[int, str], int] = {}
        pending: dict[tuple[int, str], ResponseRecord] = {}  # the new responses, in the order met
        earlier = _either(stored.responses, self.recent.responses)
        for items in chunk:
            prompt_id = prompt_ids[items.prompt.external_id]
            for record in items.responses:
                key = (prompt_id, record.external_id)
                found = earlier.get(key)
                if found is not None:
                    pk, digest = found
                    if digest != record.fingerprint:
                        self.errors.append(
                            f"{items.location}: response id '{record.external_id}' was imported before with different content"
                        )
                    elif key not in ids:
                        self.result.responses_existing += 1
                        ids[key] = pk
                elif key in pending:
                    if pending[key].fingerprint != record.fingerprint:
                        self.errors.append(
                            f"{items.location}: response id '{record.external_id}' is used for two different responses"
                        )
                else:
                    pending[key] = record
        if self.errors:
            return ids
        now = timezone.now()
        new_ids = self.storage.insert(
            Response,
            ["prompt_id", "external_id", "system", "content", "metadata", "fingerprint", "created_at"],
            [
                (
                    key[0],
                    record.external_id,
                    record.system,
                    record.content,
                    record.metadata,
                    record.fingerprint,
                    now,
                )
                for key, record in pending.items()
            ],
        )
        _remember_created(pending, new_ids, ids, created.responses)
        self.result.responses_created += len(new_ids)
        return ids

    def _pairs(
        self,
        chunk: list[RowItems],
        stored: _Stored,
        prompt_ids: dict[str, int],
        response_ids: dict[tuple[int, str], int],
        created: _Stored,
    ) -> None:
        earlier_couples = _either(stored.couples, self.recent.couples)
        new_couples, pair_names = created.couples, stored.pair_names
        new_rows: list[tuple] = []
        prior_choices: list[str] = []
        now, project_id = timezone.now(), self.project.pk
        for items in chunk:
            prompt_id = prompt_ids[items.prompt.external_id]
            for pair in items.pairs:
                a_id, b_id = response_ids[(prompt_id, pair.a)], response_ids[(prompt_id, pair.b)]
                couple = (a_id, b_id) if a_id < b_id else (b_id, a_id)
                named = pair_names.get(pair.external_id) if pair_names and pair.external_id else None
                if named is not None and named != couple:
                    self.errors.append(
                        f"{items.location}: pair id '{pair.external_id}' was imported before for different responses"
                    )
                    continue
                if couple in new_couples or couple in earlier_couples:
                    self.result.pairs_existing += 1
                    continue
                new_couples.add(couple)
                new_rows.append(
                    (
                        project_id,
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
        new_ids = self.storage.insert(
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
        self.result.pairs_created += len(new_ids)
        judgments = [
            (pair_id, None, Judgment.Origin.IMPORTED.value, choice, None, {}, "", False, None, now, now)
            for pair_id, choice in zip(new_ids, prior_choices, strict=True)
            if choice
        ]
        self.storage.insert(
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


def _remember_created(
    pending: dict[Any, PromptRecord | ResponseRecord],
    new_ids: list[int],
    ids: dict[Any, int],
    created: dict[Any, tuple[int, str]],
) -> None:
    """Records the ids of the rows just inserted from ``pending`` (in its order) in ``ids``, and with
    their fingerprints in ``created`` (what the next chunk checks from memory)."""
    for (key, record), pk in zip(pending.items(), new_ids, strict=True):
        ids[key] = pk
        created[key] = (pk, record.fingerprint)


def _either(stored: Any, recent: Any) -> Any:
    """What the database and the previous chunk hold (two dicts, or two sets, with no key in common) as
    one, to be asked once per row: a chunk of 5,000 pairs asks 10,000 times for responses alone. Usually
    one of the two is empty (the database's, in a new project) and is then not copied."""
    if not stored:
        return recent
    if not recent:
        return stored
    return stored | recent


class _Storage:
    """Looks the rows of a chunk up and inserts them. A thread of its own runs the lookups and COPYs, in
    the order they are asked for, on the import's connection and in its transaction, while the calling
    thread reads and builds the next rows. Without it the calling thread waited for each COPY to finish (a third of an import's time,
    with PostgreSQL and Python each busy about 60% of it: measured on 100,000 pairs); with it Python is
    busy throughout and PostgreSQL stores one chunk while Python builds the next.

    The ids of new rows come from the tables' sequences through a second connection, outside the
    transaction: the calling thread needs them at once, to build the rows that refer to them, and
    ``nextval()`` is never rolled back anyway (an import that fails leaves a gap in the ids, as before).
    The thread's statements bypass Django's cursor wrapper: its errors come back as Django's database
    errors through ``finish`` and the lookups' answers."""

    QUEUE_DEPTH = 6  # jobs: a chunk's lookup and COPYs, and half the next one's

    def __init__(self) -> None:
        self.session = connection.connection
        with connection.wrap_database_errors:
            self.sequences = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        # Stored prompts and responses are locked FOR KEY SHARE, as a foreign-key trigger locks a parent
        # row: until the import commits nobody can delete them or change their id, and a row deleted
        # meanwhile by a transaction that committed is not returned. Lists of ids go as one array
        # parameter, in binary (%b): a placeholder per value was composed by Django and parsed by psycopg
        # for every chunk (20 ms of CPU each), and psycopg writes a text array in Python (5 µs per id).
        quote = connection.ops.quote_name
        self.prompts_sql = _stored_by_external_id_sql(
            Prompt, ["external_id", "id", "fingerprint"], key_shared=True
        )
        self.responses_sql = (
            f"SELECT prompt_id, external_id, id, fingerprint FROM {quote(Response._meta.db_table)}"
            " WHERE prompt_id = ANY(%b) FOR KEY SHARE"
        )
        self.couples_sql = (
            f"SELECT response_a_id, response_b_id FROM {quote(Pair._meta.db_table)} WHERE prompt_id = ANY(%b)"
        )
        self.names_sql = _stored_by_external_id_sql(
            Pair, ["external_id", "response_a_id", "response_b_id"], key_shared=False
        )
        self.targets: dict[tuple[type[models.Model], tuple[str, ...]], _CopyTarget] = {}
        self.jobs: queue.Queue = queue.Queue(maxsize=self.QUEUE_DEPTH)
        self.thread = threading.Thread(target=self._work, name="import-writer", daemon=True)
        self.thread.start()

    def lookup(self, project: Project, prompt_keys: list[str], pair_names: list[str]) -> _Answer:
        """The stored prompts named ``prompt_keys``, their responses and pairs, and the pairs named
        ``pair_names`` (see ``_Stored``)."""

        def look_up(cursor: psycopg.Cursor) -> _Stored:
            stored = _Stored()
            cursor.execute(self.prompts_sql, [prompt_keys, project.pk])
            for external_id, pk, digest in cursor.fetchall():
                stored.prompts[external_id] = (pk, digest)
            prompt_ids = [pk for pk, _ in stored.prompts.values()]
            if prompt_ids:
                cursor.execute(self.responses_sql, [prompt_ids])
                for prompt_id, external_id, pk, digest in cursor.fetchall():
                    stored.responses[(prompt_id, external_id)] = (pk, digest)
                cursor.execute(self.couples_sql, [prompt_ids])
                for first, second in cursor.fetchall():
                    stored.couples.add((min(first, second), max(first, second)))
            if pair_names:
                cursor.execute(self.names_sql, [pair_names, project.pk])
                for external_id, first, second in cursor.fetchall():
                    stored.pair_names[external_id] = (min(first, second), max(first, second))
            return stored

        return _Answer(self._submit(look_up))

    def insert(self, model: type[models.Model], columns: list[str], rows: list[tuple]) -> list[int]:
        """Queues the COPY of ``rows`` (see ``bulk_insert``) and returns their new ids, in order."""
        if not rows:
            return []
        key = (model, tuple(columns))
        if key not in self.targets:
            with self.sequences.cursor() as cursor:
                self.targets[key] = _CopyTarget.find(cursor, model, columns)
        target = self.targets[key]
        with self.sequences.cursor() as cursor:
            ids = target.draw_ids(cursor, len(rows))
        self._submit(lambda cursor: target.copy(cursor, ids, rows))
        return ids

    def finish(self) -> None:
        """Returns once everything asked for is stored; raises the first error met."""
        _Answer(self._submit(lambda cursor: None)).result()

    def close(self) -> None:
        """Stops the storage's work, also after an error. Call before the transaction ends."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        self.sequences.close()

    def _submit(self, job: Callable[[psycopg.Cursor], Any]) -> Future:
        answer: Future = Future()
        self.jobs.put((job, answer))
        return answer

    def _work(self) -> None:
        """The thread: runs jobs until told to stop. After an error it answers every later job with that
        error: the transaction is aborted and the import will be rolled back."""
        failure: BaseException | None = None
        with self.session.cursor() as cursor:
            _json_through_orjson(cursor)
            while (item := self.jobs.get()) is not None:
                job, answer = item
                if failure is not None:
                    answer.set_exception(failure)
                    continue
                try:
                    answer.set_result(job(cursor))
                except BaseException as error:  # handed to the caller through the answer
                    failure = error
                    answer.set_exception(error)


class _Answer:
    """The storage's answer to a lookup, or to ``finish``: ``result()`` waits for it and raises psycopg's
    errors as Django's (``django.db.IntegrityError`` and so on), as statements run through Django's
    cursor do."""

    def __init__(self, answer: Future) -> None:
        self.answer = answer

    def result(self) -> Any:
        with connection.wrap_database_errors:
            return self.answer.result()


class _JsonbOrjsonDumper(Dumper):
    """jsonb in COPY's binary format, written by orjson in one call: psycopg's own dumper, given orjson,
    took three calls per value (metadata, on every prompt and response: 3% of an import's Python time)."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + orjson.dumps(obj)  # jsonb's binary format: a version byte, then the text


class _ByTypeOnly:
    """Never instantiated: registering a dumper needs a Python type, and this one keeps parameters of
    queries (a list is an array there) from being dumped as jsonb."""


def _json_through_orjson(cursor: psycopg.Cursor) -> None:
    """Sets ``cursor`` (a psycopg cursor) to write JSON with orjson: jsonb columns of a binary COPY (whose
    dumpers are chosen by column type, see ``_CopyTarget.copy``) and other JSON parameters."""
    set_json_dumps(orjson.dumps, context=cursor)
    cursor.adapters.register_dumper(_ByTypeOnly, _JsonbOrjsonDumper)


@dataclass(frozen=True)
class _CopyTarget:
    """A table's binary COPY of given columns, the id first: the statement, the type of each column (a
    binary COPY must name them) and the sequence the ids come from."""

    statement: str
    types: list[int]
    sequence: int

    @classmethod
    def find(cls, cursor: Any, model: type[models.Model], columns: list[str]) -> _CopyTarget:
        # The sequence is looked up once: pg_get_serial_sequence() in the nextval() call was evaluated for
        # every row, searching the catalogs each time (a sixth of PostgreSQL's time on 100,000 pairs).
        table = model._meta.db_table
        quote = connection.ops.quote_name
        cursor.execute(
            "SELECT attname, atttypid, pg_get_serial_sequence(%s, 'id')::regclass::oid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table, quote(table)],
        )
        found = cursor.fetchall()
        type_of = {name: type_id for name, type_id, _ in found}
        names = ["id", *columns]
        return cls(
            statement=f"COPY {quote(table)} ({', '.join(quote(name) for name in names)}) FROM STDIN (FORMAT BINARY)",
            types=[type_of[name] for name in names],
            sequence=found[0][2],
        )

    def draw_ids(self, cursor: Any, count: int) -> list[int]:
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [self.sequence, count])
        return [row[0] for row in cursor.fetchall()]

    def copy(self, cursor: psycopg.Cursor, ids: list[int], rows: list[tuple]) -> None:
        """Writes ``rows`` with ``ids`` through ``cursor``, a psycopg cursor whose JSON dumper is set."""
        with cursor.copy(self.statement) as copy:
            copy.set_types(self.types)
            write_row = copy.write_row
            for pk, row in zip(ids, rows, strict=True):
                write_row((pk, *row))


def bulk_insert(model: type[models.Model], columns: list[str], rows: Iterable[tuple]) -> list[int]:
    """Inserts rows (values in ``columns`` order, by database column name; dicts and lists for JSON
    columns) and returns their new ids in order.

    The ids come from the table's sequence and the rows go in through one binary COPY:
    several times faster than INSERT. Binary rather than text because then nothing is escaped on the way
    out or parsed on the way in: psycopg's C code lays the values out as they are, and PostgreSQL spent
    about a third less time on the responses of 100,000 pairs. No table lock: a running import must never
    make annotators wait, and claims and submits update pair rows."""
    rows = list(rows)
    if not rows:
        return []
    with connection.cursor() as cursor:
        target = _CopyTarget.find(cursor, model, columns)
        ids = target.draw_ids(cursor, len(rows))
        copying = cursor.cursor
        _json_through_orjson(copying)
        target.copy(copying, ids, rows)
    return ids


# Jobs -------------------------------------------------------------------------------------------------


def _send(job: ImportJob) -> None:
    from annotate.tasks import import_job_run_task

    import_job_run_task.delay(job.pk)


IMPORT_JOBS = JobKind(
    model=ImportJob,
    send=_send,
    noun="import",
    # The upload is kept while attempts remain: the next attempt reads it again.
    temporary_paths=lambda job: [Path(job.stored_path)] if job.stored_path else [],
    cleared_on_end={"stored_path": ""},
    failure_fields=lambda message: {"errors": [message]},
)


def import_job_progress(*, job: ImportJob) -> dict[str, int]:
    """Rows and bytes read so far by a job (a running job's heartbeat writes them)."""
    return {"rows": job.rows_done, "bytes": job.bytes_done}


def import_job_create(
    *, project: Project, upload: IO[bytes], filename: str, size: int, options: ImportOptions, created_by: Any
) -> ImportJob:
    """Stores the upload and queues the import. Celery is told only after the job row is committed."""
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
            with open(job.stored_path, "rb") as stream:
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
