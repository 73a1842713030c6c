"""How an import stores its rows: each chunk is checked against what is already stored (reusing prompts,
responses and pairs met before, refusing an id that now names different content) and written through
binary COPY, in a thread of its own, inside the import's transaction (``annotate.services.imports``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from django.db import connection, models
from django.utils import timezone
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps

from annotate.models import Judgment, Pair, Project, Prompt, Response
from annotate.services.import_rows import PromptRecord, ResponseRecord, RowItems

if TYPE_CHECKING:
    from annotate.services.imports import ImportResult


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


class ChunkWriter:
    """Writes a chunk of rows, reusing what earlier imports (or earlier chunks) already stored and refusing
    an id that now names different content.

    Stored rows are looked up a chunk at a time (``lookup``; prompts and responses locked FOR KEY SHARE,
    because new rows may refer to them). The storage runs lookups and inserts in the order they are
    given, and each chunk's lookup is given before the previous chunk's rows: so the lookup sees what was
    stored up to the chunk before the previous one, and the previous chunk's new rows are checked here,
    from memory (``self.recent``). The storage works in a thread of its own, and this ordering lets Python
    build a chunk's rows while PostgreSQL stores the previous chunk and answers the next chunk's lookup. Memory holds the rows of a few chunks, whatever the size of the file."""

    def __init__(self, project: Project, result: ImportResult, errors: list[str], storage: Storage) -> None:
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

    def lookup(self, chunk: list[RowItems]) -> Answer:
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


class Storage:
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
        # parameter, in binary (%b): cheaper than a placeholder per value or a text array (bench/README.md).
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

    def lookup(self, project: Project, prompt_keys: list[str], pair_names: list[str]) -> Answer:
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

        return Answer(self._submit(look_up))

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
        Answer(self._submit(lambda cursor: None)).result()

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


class Answer:
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
