"""Dataset exports: judgments in, preference datasets in TRL's format out.

One service serves ``manage.py export_dataset``, the API and the exports page. An export is an ``Export`` row
(its policy with defaults filled in, formats, status, counts and files with sha256) and a folder
``ARTIFACT_ROOT/exports/<id>/``.

How it runs, and why:

1. **Who counts.** Annotators are excluded first (flagged on the quality dashboard, or below a gold
   accuracy), then, inside one read-only REPEATABLE READ transaction on PostgreSQL, so every later query
   sees the same data:
2. **Labels** (pass 1): pairs are read by keyset pagination in id order, each chunk's judgments as plain
   numbers; ``annotate/stats/aggregation.py`` turns the votes into labels. Only a few numbers per kept pair
   stay in memory, never text.
3. **Split**: by prompt (``split_by_prompt``), so no prompt is in both train and test.
4. **Rows** (pass 2): the kept pairs' texts are read in chunks and written at once to every format (JSONL,
   gzipped JSONL, Parquet, a Hugging Face ``datasets`` folder): memory stays flat however large the export.

Rows are written in pair id order, gzip has no timestamp or file name, Parquet and Arrow files are written
with fixed settings and the dataset card has no date, so the same data, policy and seed give byte-identical
files. An export whose policy leaves no pair fails with a message that says which rule removed them.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import queue
import shutil
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from numpy.typing import NDArray

from annotate.models import Export, Project, Prompt
from annotate.services.leaderboard import integer_rows
from annotate.stats import aggregation
from annotate.stats.ratings import prompt_response_scores
from palate.errors import ApplicationError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]

PAIR_CHUNK = 20_000
WRITE_CHUNK = 5_000
PARQUET_COMPRESSION = "zstd"
CHOICE_CODES = {
    "a": aggregation.A,
    "b": aggregation.B,
    "tie": aggregation.TIE,
    "both_bad": aggregation.BOTH_BAD,
}
CHOICE_NAMES = {code: name for name, code in CHOICE_CODES.items()}

EXPORT_FORMATS = ("jsonl", "jsonl.gz", "parquet", "hf")
SPLITS = ("train", "test")
OPTIONAL_COLUMNS = (
    "margin",
    "score_chosen",
    "score_rejected",
    "vote_share",
    "n_votes",
    "agreement",
    "system_chosen",
    "system_rejected",
    "category",
    "ids",
)
DEFAULT_COLUMNS = ("vote_share", "n_votes", "agreement", "system_chosen", "system_rejected", "ids")
ID_COLUMNS = ("prompt_id", "pair_id", "chosen_id", "rejected_id")
DROP_OR_KEEP = ("drop", "keep")


class ExportFailed(ApplicationError):
    code = "export_failed"


# ----------------------------------------------------------------------------------------------------------
# Policy


@dataclass(frozen=True)
class ExportPolicy:
    """What an export contains. Saved, with every default filled in, on the Export row and in the card."""

    kind: str = field(
        default="preference",
        metadata={"choices": ("preference", "raw"), "help": "one row per labelled pair, or one per judgment"},
    )
    # Which judgments count.
    exclude_flagged: bool = field(
        default=False, metadata={"help": "leave out annotators flagged on the quality dashboard"}
    )
    exclude_gold: bool = field(default=True, metadata={"help": "leave gold pairs out of the dataset"})
    min_gold_accuracy: float | None = field(
        default=None, metadata={"help": "leave out annotators below this accuracy on gold pairs"}
    )
    min_gold_judgments: int = field(
        default=1, metadata={"help": "gold votes an annotator needs before min_gold_accuracy applies"}
    )
    include_imported: bool = field(
        default=False, metadata={"help": "count labels imported with the data as one vote each"}
    )
    # How votes become a label.
    label: str = field(
        default="majority",
        metadata={
            "choices": ("majority", "unanimous", "weighted"),
            "help": "weighted: votes weigh the annotator's smoothed gold accuracy",
        },
    )
    tied_vote: str = field(
        default="drop",
        metadata={
            "choices": ("drop", "tie"),
            "help": "a vote split evenly at the top: drop the pair, or make it a tie row",
        },
    )
    min_votes: int = field(default=1, metadata={"help": "pairs with fewer counted votes are dropped"})
    min_agreement: float = field(
        default=0.0, metadata={"help": "pairs whose winning share of the votes is lower are dropped"}
    )
    ties: str = field(
        default="drop",
        metadata={
            "choices": DROP_OR_KEEP,
            "help": "a pair labelled tie: drop, or keep as a tie row (vote_share 0.5)",
        },
    )
    both_bad: str = field(
        default="drop",
        metadata={
            "choices": DROP_OR_KEEP,
            "help": "a pair labelled both bad: drop, or keep as a tie row",
        },
    )
    criterion: str = field(
        default="", metadata={"help": "label by this criterion's votes instead of the overall choice"}
    )
    # Rows and files.
    shape: str = field(
        default="auto",
        metadata={
            "choices": ("auto", "text", "conversational"),
            "help": "auto: conversational when any prompt is a conversation",
        },
    )
    columns: tuple[str, ...] = field(
        default=DEFAULT_COLUMNS,
        metadata={"choices": OPTIONAL_COLUMNS, "help": "optional columns after prompt, chosen, rejected"},
    )
    split: float = field(
        default=0.9, metadata={"help": "share of prompts in the train split (1 for no test split)"}
    )
    seed: int = field(default=0, metadata={"help": "seeds the split"})
    stratify: bool = field(
        default=False, metadata={"help": "split each prompt category in the same proportion"}
    )
    license: str = field(default="", metadata={"help": "licence named in the dataset card, e.g. cc-by-4.0"})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns"] = list(self.columns)
        return data

    @property
    def keeps_tie_rows(self) -> bool:
        return self.ties == "keep" or self.both_bad == "keep"


POLICY_KEYS = tuple(item.name for item in fields(ExportPolicy))


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _check_int(value: Any, minimum: int, maximum: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, got {value!r}"
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        return f"must be at least {minimum}{upper}, got {value}"
    return None


def _check_share(value: Any, *, low_open: bool = False) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        return f"must be a number between 0 and 1, got {value!r}"
    if value > 1 or value < 0 or (low_open and value == 0):
        bound = "above 0" if low_open else "at least 0"
        return f"must be {bound} and at most 1, got {value}"
    return None


def export_policy_parse(data: Any, *, project: Project) -> ExportPolicy:
    """Validates a policy (a dict; missing keys take their defaults) against the project.

    Raises ApplicationError naming every bad field as ``policy.<key>``; unknown keys are errors too, so a
    typo never silently falls back to a default."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApplicationError("policy must be a JSON object", fields={"policy": ["must be a JSON object"]})
    problems: dict[str, list[str]] = {}

    def problem(key: str, message: str | None) -> None:
        if message:
            problems.setdefault(f"policy.{key}", []).append(message)

    for key in data:
        if key not in POLICY_KEYS:
            problem(str(key), f"unknown policy key; known keys: {', '.join(POLICY_KEYS)}")
    values = {key: data[key] for key in POLICY_KEYS if key in data}
    defaults = ExportPolicy()
    choices = {item.name: item.metadata.get("choices") for item in fields(ExportPolicy)}
    for key in ("kind", "label", "tied_vote", "ties", "both_bad", "shape"):
        if key in values and values[key] not in choices[key]:
            problem(key, f"must be one of {', '.join(choices[key])}, got {values[key]!r}")
    for key in ("exclude_flagged", "exclude_gold", "include_imported", "stratify"):
        if key in values:
            problem(key, _check_bool(values[key]))
    if values.get("min_gold_accuracy") is not None:
        problem("min_gold_accuracy", _check_share(values["min_gold_accuracy"]))
    if "min_gold_judgments" in values:
        problem("min_gold_judgments", _check_int(values["min_gold_judgments"], 1))
    if "min_votes" in values:
        problem("min_votes", _check_int(values["min_votes"], 1, 1000))
    if "min_agreement" in values:
        problem("min_agreement", _check_share(values["min_agreement"]))
    if "split" in values:
        problem("split", _check_share(values["split"], low_open=True))
    if "seed" in values:
        problem("seed", _check_int(values["seed"], 0, 2**63 - 1))
    for key in ("criterion", "license"):
        if key in values and not isinstance(values[key], str):
            problem(key, f"must be a string, got {values[key]!r}")
    if "license" in values and isinstance(values["license"], str) and len(values["license"]) > 100:
        problem("license", "must be at most 100 characters")
    if "columns" in values:
        columns = values["columns"]
        if not isinstance(columns, list | tuple) or not all(isinstance(column, str) for column in columns):
            problem("columns", "must be a list of column names")
        else:
            unknown = [column for column in columns if column not in OPTIONAL_COLUMNS]
            if unknown:
                problem(
                    "columns",
                    f"unknown column {unknown[0]!r}; optional columns: {', '.join(OPTIONAL_COLUMNS)}",
                )
            else:
                values["columns"] = tuple(column for column in OPTIONAL_COLUMNS if column in columns)

    if not problems:
        policy = ExportPolicy(
            **{**asdict(defaults), **values, "columns": values.get("columns", defaults.columns)}
        )
        if policy.criterion and policy.criterion not in (project.criteria or []):
            known = ", ".join(map(str, project.criteria or [])) or "none"
            problem("criterion", f"the project has no criterion {policy.criterion!r} (its criteria: {known})")
        if policy.tied_vote == "tie" and policy.ties == "drop":
            problem("tied_vote", "'tie' makes tie rows, which ties='drop' would remove: set ties to 'keep'")
        if "margin" in policy.columns and not project.strength_scale:
            problem("columns", "'margin' is the mean strength, but this project does not ask for a strength")
        if policy.shape == "text" and _project_has_conversations(project):
            problem(
                "shape",
                "the project has conversation prompts, which text rows cannot hold: use 'conversational' or 'auto'",
            )
        if policy.kind == "raw" and policy.label == "weighted":
            problem("label", "raw exports carry every vote and no label; leave label at its default")
    if problems:
        first_field, first_messages = next(iter(problems.items()))
        raise ApplicationError(f"{first_field}: {first_messages[0]}", code="invalid_policy", fields=problems)
    return policy


def export_formats_parse(formats: Any) -> list[str]:
    """Validates the list of formats; returns them de-duplicated in a fixed order."""
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list | tuple) or not formats:
        raise ApplicationError(
            "formats: name at least one format",
            fields={"formats": [f"choose from {', '.join(EXPORT_FORMATS)}"]},
        )
    unknown = [item for item in formats if item not in EXPORT_FORMATS]
    if unknown:
        message = f"unknown format {unknown[0]!r}; formats: {', '.join(EXPORT_FORMATS)}"
        raise ApplicationError(f"formats: {message}", fields={"formats": [message]})
    return [item for item in EXPORT_FORMATS if item in formats]


def _project_has_conversations(project: Project) -> bool:
    return Prompt.objects.filter(project=project, messages__isnull=False).exists()


# ----------------------------------------------------------------------------------------------------------
# Creating and running exports


def export_create(
    *, project: Project, policy: Any, formats: Any, created_by: Any, enqueue: bool = True
) -> Export:
    """Validates the request, records a queued Export with the next version number and, with ``enqueue``,
    queues the Celery task once the row is committed."""
    from annotate.tasks import export_run_task

    parsed = export_policy_parse(policy, project=project)
    chosen_formats = export_formats_parse(formats)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        version = (Export.objects.filter(project=project).aggregate(last=Max("version"))["last"] or 0) + 1
        export = Export.objects.create(
            project=project,
            version=version,
            created_by=created_by,
            policy=parsed.as_dict(),
            formats=chosen_formats,
        )
        if enqueue:
            transaction.on_commit(lambda: export_run_task.delay(export.pk))
    return export


def _progress_key(export_id: int) -> str:
    return f"palate:export-progress:{export_id}"


def export_progress(*, export: Export) -> float:
    """How far a running export is, 0..1 (kept in the cache while it runs: its reads happen inside one
    transaction, so its own row cannot show progress until the end)."""
    if export.status == Export.Status.RUNNING:
        live = cache.get(_progress_key(export.pk))
        if live is not None:
            return float(live["done"])
    return float(export.progress)


def export_run(*, export_id: int, progress: ProgressCallback | None = None) -> Export | None:
    """Runs a queued export. Claims it with a status transition, so a redelivered task does nothing;
    returns None when the export was not (or no longer) queued."""
    claimed = Export.objects.filter(pk=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        logger.info("export %s was already claimed", export_id)
        return None
    export = Export.objects.select_related("project").get(pk=export_id)

    def report(done: float) -> None:
        cache.set(_progress_key(export.pk), {"done": round(done, 4), "at": time.time()}, timeout=24 * 3600)
        if progress:
            progress(done)

    folder = export_folder(export=export)
    partial = folder.with_name(f"{folder.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        result = _build(export=export, folder=partial, progress=report)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except ApplicationError as failure:
        shutil.rmtree(partial, ignore_errors=True)
        export.status, export.error = Export.Status.FAILED, failure.message
    except Exception as error:
        logger.exception("export %s crashed", export.pk)
        shutil.rmtree(partial, ignore_errors=True)
        export.status, export.error = Export.Status.FAILED, f"the export stopped: {error}"
    else:
        export.status, export.counts, export.files, export.progress = (
            Export.Status.SUCCEEDED,
            result.counts,
            result.files,
            1.0,
        )
    finally:
        cache.delete(_progress_key(export.pk))
    export.finished_at = timezone.now()
    export.save(update_fields=["status", "error", "counts", "files", "progress", "finished_at"])
    return export


def exports_reap(*, stale_after_seconds: int = 1800) -> int:
    """Fails exports whose worker died: running with no progress reported for ``stale_after_seconds``
    (every chunk reports), or queued for a day. Their unfinished folders are removed. Returns how many."""
    now = timezone.now()
    reaped = 0
    for export in Export.objects.filter(status=Export.Status.RUNNING):
        live = cache.get(_progress_key(export.pk)) or {}
        last_sign_of_life = live.get("at") or (export.started_at or export.created_at).timestamp()
        if time.time() - last_sign_of_life > stale_after_seconds:
            failed = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
                status=Export.Status.FAILED,
                error="the worker stopped while exporting; start the export again",
                finished_at=now,
            )
            if failed:
                folder = export_folder(export=export)
                shutil.rmtree(folder.with_name(f"{folder.name}.partial"), ignore_errors=True)
            reaped += failed
    reaped += Export.objects.filter(
        status=Export.Status.QUEUED, created_at__lt=now - timezone.timedelta(days=1)
    ).update(
        status=Export.Status.FAILED,
        error="no worker picked this export up within a day; is a Celery worker running?",
        finished_at=now,
    )
    return reaped


def export_folder(*, export: Export) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "exports" / str(export.pk)


# ----------------------------------------------------------------------------------------------------------
# Downloads


def export_file(
    *, export: Export, split: str = "train", fmt: str = "jsonl", name: str = ""
) -> tuple[Path, str]:
    """The stored file a download asks for, by ``name`` (a key of ``export.files``) or by split and format;
    returns its path and the file name to offer. Raises ApplicationError (404) when there is no such file."""
    if export.status != Export.Status.SUCCEEDED:
        raise ApplicationError(
            f"export v{export.version} has no files: it is {export.status}", code="not_ready", http_status=409
        )
    if not name:
        if split not in SPLITS:
            raise ApplicationError(
                f"split must be one of {', '.join(SPLITS)}", fields={"split": [f"got {split!r}"]}
            )
        candidates = {
            "jsonl": [f"{split}.jsonl", f"{split}.jsonl.gz"],
            "jsonl.gz": [f"{split}.jsonl.gz"],
            "parquet": [f"{split}.parquet"],
            "card": ["README.md"],
        }.get(fmt)
        if candidates is None:
            raise ApplicationError(
                "format must be one of jsonl, jsonl.gz, parquet, hf, card",
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
    path = Path(settings.ARTIFACT_ROOT) / record["path"]
    if not path.is_file():
        raise ApplicationError(
            f"the file {name} of export v{export.version} is missing on disk",
            code="not_found",
            http_status=404,
        )
    download_name = f"{export.project.slug}-v{export.version}-{name.replace('/', '-')}"
    return path, download_name


def export_split_pair_ids(*, export: Export, split: str = "test") -> NDArray[np.int64] | None:
    """The ids of the pairs the export put in ``split`` (sorted, unique), read back from its files: for
    ``"test"``, the pairs a training run on this export held out. Empty when the split has no rows (a policy
    with ``split`` 1.0); None when the export cannot tell: it did not succeed, its policy left out the ``ids``
    columns, or it has no JSONL or Parquet file of the split on disk. Files never change once written, so
    the answer is cached by export id."""
    if export.status != Export.Status.SUCCEEDED or "ids" not in export.policy.get("columns", DEFAULT_COLUMNS):
        return None
    if not (export.counts.get("rows") or {}).get(split):
        return np.zeros(0, dtype=np.int64)
    key = f"palate:export:{export.pk}:{split}:pair-ids"
    cached = cache.get(key)
    if cached is not None:
        return cached
    for fmt in ("parquet", "jsonl"):
        try:
            path, _ = export_file(export=export, split=split, fmt=fmt)
        except ApplicationError:
            continue
        if fmt == "parquet":
            ids = pq.read_table(path, columns=["pair_id"]).column("pair_id").to_numpy()
        else:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as handle:
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
        path = Path(settings.ARTIFACT_ROOT) / export.files[name]["path"]
        info = tarfile.TarInfo(f"{prefix}/{name.removeprefix('hf/')}")
        info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
        entries.append((info.tobuf(format=tarfile.USTAR_FORMAT), path, info.size))
    body = sum(len(header) + size + (-size % tarfile.BLOCKSIZE) for header, _, size in entries)
    end = 2 * tarfile.BLOCKSIZE
    total = body + end
    total += -total % tarfile.RECORDSIZE

    def chunks() -> Iterator[bytes]:
        for header, path, size in entries:
            yield header
            with path.open("rb") as source:
                while block := source.read(1 << 20):
                    yield block
            if size % tarfile.BLOCKSIZE:
                yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
        yield b"\0" * (total - body)

    return chunks(), f"{prefix}-hf.tar", total


# ----------------------------------------------------------------------------------------------------------
# Building


@dataclass
class _BuildResult:
    counts: dict[str, Any]
    files: dict[str, dict[str, Any]]


@dataclass
class _Kept:
    """Pass 1's output: a few numbers per pair that will have rows, in pair id order."""

    pair: NDArray[np.int64]
    prompt: NDArray[np.int64]
    response_a: NDArray[np.int64]
    response_b: NDArray[np.int64]
    label: NDArray[np.int64]
    votes: NDArray[np.int64]
    agreement: NDArray[np.float64]
    share_a: NDArray[np.float64]
    margin_a: NDArray[np.float64]


_CHOICE_CASE = (
    f"CASE {{vote}} WHEN 'a' THEN {aggregation.A:d} WHEN 'b' THEN {aggregation.B:d} "
    f"WHEN 'tie' THEN {aggregation.TIE:d} WHEN 'both_bad' THEN {aggregation.BOTH_BAD:d} ELSE -1 END"
)


def _build(*, export: Export, folder: Path, progress: ProgressCallback) -> _BuildResult:
    project = export.project
    policy = export_policy_parse(export.policy, project=project)
    formats = export_formats_parse(export.formats)
    conversational = policy.shape == "conversational" or (
        policy.shape == "auto" and _project_has_conversations(project)
    )
    flagged = _flagged_annotators(project) if policy.exclude_flagged else set()
    with _consistent_reads():
        reader = _Reader(project=project, policy=policy, flagged=flagged, progress=progress)
        kept = reader.label_pass()
        if kept.pair.size == 0:
            raise ExportFailed(reader.nothing_message())
        prompt_is_test, prompt_ids = _split(project=project, policy=policy, prompts=kept.prompt)
        folder.mkdir(parents=True, exist_ok=True)
        writer = _DatasetWriter(
            folder=folder,
            formats=formats,
            schema=_schema(policy=policy, project=project, conversational=conversational),
        )
        try:
            if policy.kind == "raw":
                _RawRows(export=export, policy=policy, reader=reader, conversational=conversational).write(
                    kept, prompt_ids, prompt_is_test, writer, progress
                )
            else:
                _PreferenceRows(policy=policy, reader=reader, conversational=conversational).write(
                    kept, prompt_ids, prompt_is_test, writer, progress
                )
        finally:
            writer.close()
        counts = reader.counts(kept=kept, writer=writer, conversational=conversational)
    files = writer.finish(project=project, policy=policy, counts=counts)
    progress(1.0)
    return _BuildResult(counts=counts, files=files)


class _consistent_reads:
    """One read-only REPEATABLE READ transaction on PostgreSQL, so that the two passes and every chunk see
    the same data even while annotators keep judging. Inside an outer transaction (tests) it is only a
    savepoint: the isolation level can be set only by the first statement of a transaction."""

    def __enter__(self) -> None:
        self.atomic = transaction.atomic()
        outermost = not connection.in_atomic_block
        self.atomic.__enter__()
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def __exit__(self, *exc_info: Any) -> None:
        self.atomic.__exit__(*exc_info)


def _flagged_annotators(project: Project) -> set[int]:
    """Annotators with a standing flag on the quality dashboard (brought up to date first)."""
    from annotate.selectors import agreement_snapshot_latest
    from annotate.services.agreement import agreement_figures, agreement_snapshot_refresh

    agreement_snapshot_refresh(project_id=project.pk)
    snapshot = agreement_snapshot_latest(project=project)
    if snapshot is None:
        return set()
    figures = agreement_figures(snapshot=snapshot, project=project)
    return {int(row["id"]) for row in figures.get("annotators", []) if row.get("flags")}


class _Reader:
    """Reads a project's judgments under a policy, chunk by chunk, and keeps the tallies for the counts.

    Numbers come through ``integer_rows`` (COPY in binary on PostgreSQL straight into numpy), never through
    model instances: a million judgments are read in about a second."""

    def __init__(
        self, *, project: Project, policy: ExportPolicy, flagged: set[int], progress: ProgressCallback
    ) -> None:
        self.project = project
        self.policy = policy
        self.progress = progress
        self.excluded: dict[int, str] = dict.fromkeys(flagged, "flagged")
        self.weight_ids = np.empty(0, dtype=np.int64)
        self.weights = np.empty(0)
        self.reasons = np.zeros(len(aggregation.Reason), dtype=np.int64)
        self.pairs_seen = 0
        self.judgments_counted = 0
        self.judgments_excluded = 0
        self.annotators_counted: set[int] = set()
        self.coincidence = np.zeros((aggregation.OUTCOMES, aggregation.OUTCOMES))
        self.battles: list[tuple[NDArray, ...]] = []
        gold = " AND NOT p.is_gold" if policy.exclude_gold else ""
        self.pair_filter = f"p.project_id = %s{gold}"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM annotate_pair p WHERE {self.pair_filter}", [project.pk])
            self.pair_total = int(cursor.fetchone()[0])

    def _vote_sql(self) -> tuple[str, list[Any]]:
        """The SQL that codes a judgment's vote (the overall choice, or one criterion's), -1 for none."""
        if self.policy.criterion and self.policy.kind == "preference":
            if connection.vendor == "postgresql":
                return _CHOICE_CASE.format(vote="(j.criteria ->> %s)"), [self.policy.criterion]
            return _CHOICE_CASE.format(vote="json_extract(j.criteria, %s)"), [
                '$."' + self.policy.criterion + '"'
            ]
        return _CHOICE_CASE.format(vote="j.choice"), []

    # Who counts ------------------------------------------------------------------------------------------

    def _gold_figures(self) -> None:
        """Gold accuracy per annotator, for min_gold_accuracy and the weighted rule."""
        table = integer_rows(
            f"SELECT CAST(j.annotator_id AS BIGINT), CAST({_CHOICE_CASE.format(vote='j.choice')} AS BIGINT), "
            f"CAST({_CHOICE_CASE.format(vote='p.gold_choice')} AS BIGINT) "
            "FROM annotate_judgment j JOIN annotate_pair p ON p.id = j.pair_id "
            "WHERE p.project_id = %s AND p.is_gold AND j.origin = 'human'",
            [self.project.pk],
            3,
        ).astype(np.float64)
        table[table < 0] = np.nan
        annotator_ids, coder = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
        accuracy, judged = aggregation.gold_accuracy(
            annotators=coder, choices=table[:, 1], gold=table[:, 2], annotator_count=annotator_ids.size
        )
        self.weight_ids, self.weights = annotator_ids, aggregation.reliability(accuracy, judged)
        minimum = self.policy.min_gold_accuracy
        if minimum is not None:
            for pk, share, count in zip(annotator_ids, accuracy, judged, strict=True):
                if count >= self.policy.min_gold_judgments and share < minimum:
                    self.excluded.setdefault(int(pk), "gold_accuracy")

    def _weights_of(self, annotators: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each vote's reliability weight; 0.5 for an annotator without gold votes or an imported label."""
        weights = np.full(annotators.size, 0.5)
        if self.weight_ids.size:
            known = ~np.isnan(annotators)
            ids = annotators[known].astype(np.int64)
            position = np.minimum(np.searchsorted(self.weight_ids, ids), self.weight_ids.size - 1)
            found = self.weight_ids[position] == ids
            values = np.full(ids.size, 0.5)
            values[found] = self.weights[position[found]]
            weights[known] = values
        return weights

    # Pass 1 ----------------------------------------------------------------------------------------------

    def _pair_chunks(self) -> Iterator[NDArray[np.int64]]:
        """(id, prompt, response_a, response_b) of the pairs, PAIR_CHUNK at a time, in id order."""
        last = 0
        while True:
            chunk = integer_rows(
                "SELECT CAST(p.id AS BIGINT), CAST(p.prompt_id AS BIGINT), CAST(p.response_a_id AS BIGINT), "
                f"CAST(p.response_b_id AS BIGINT) FROM annotate_pair p WHERE {self.pair_filter} AND p.id > %s "
                "ORDER BY p.id LIMIT %s",
                [self.project.pk, last, PAIR_CHUNK],
                4,
            )
            if not chunk.shape[0]:
                return
            last = int(chunk[-1, 0])
            yield chunk

    def _excluded_mask(self, annotators: NDArray[np.float64]) -> NDArray[np.bool_]:
        if not self.excluded:
            return np.zeros(annotators.size, dtype=bool)
        return np.isin(annotators, np.fromiter(self.excluded, dtype=np.float64, count=len(self.excluded)))

    def chunk_votes(self, first: int, last: int) -> NDArray[np.float64]:
        """Counted votes on the pairs with ids in [first, last], in (pair, annotator) order, as rows of
        (pair id, annotator id, vote code, strength); NaN for an imported label's annotator, a missing vote
        or strength. Ordered, so that weighted sums add up in the same order every time (the unique
        (pair, annotator) index gives that order for free); the range on both tables lets PostgreSQL merge
        two index range scans instead of hashing the whole project's pairs for every chunk."""
        vote, params = self._vote_sql()
        origin = "" if self.policy.include_imported else " AND j.origin = 'human'"
        table = integer_rows(
            f"SELECT CAST(j.pair_id AS BIGINT), CAST(COALESCE(j.annotator_id, -1) AS BIGINT), CAST({vote} AS BIGINT), "
            "CAST(COALESCE(j.strength, -1) AS BIGINT) "
            "FROM annotate_judgment j JOIN annotate_pair p ON p.id = j.pair_id "
            f"WHERE {self.pair_filter} AND p.id BETWEEN %s AND %s AND j.pair_id BETWEEN %s AND %s{origin} "
            "ORDER BY j.pair_id, j.annotator_id",
            [*params, self.project.pk, first, last, first, last],
            4,
        ).astype(np.float64)
        table[:, 1:][table[:, 1:] < 0] = np.nan
        excluded = self._excluded_mask(table[:, 1])
        self.judgments_excluded += int(excluded.sum())
        return table[~excluded]

    def label_pass(self) -> _Kept:
        if self.policy.min_gold_accuracy is not None or self.policy.label == "weighted":
            self._gold_figures()
        parts: list[_Kept] = []
        for chunk in self._pair_chunks():
            table = self.chunk_votes(int(chunk[0, 0]), int(chunk[-1, 0]))
            parts.append(self._label_chunk(chunk, table))
            self.pairs_seen += chunk.shape[0]
            self.progress(0.5 * self.pairs_seen / max(self.pair_total, 1))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return _Kept(empty, empty, empty, empty, empty, empty, np.empty(0), np.empty(0), np.empty(0))
        return _Kept(
            *(np.concatenate([getattr(part, name.name) for part in parts]) for name in fields(_Kept))
        )

    def _label_chunk(self, chunk: NDArray[np.int64], table: NDArray[np.float64]) -> _Kept:
        pair_ids = chunk[:, 0]
        units = np.searchsorted(pair_ids, table[:, 0].astype(np.int64))
        annotators = table[:, 1]
        present = ~np.isnan(table[:, 2])
        self.judgments_counted += int(present.sum())
        self.annotators_counted.update(
            np.unique(annotators[present & ~np.isnan(annotators)]).astype(np.int64).tolist()
        )
        weights = self._weights_of(annotators) if self.policy.label == "weighted" else None
        votes = aggregation.vote_table(
            units=units, choices=table[:, 2], pair_count=pair_ids.size, weights=weights, strength=table[:, 3]
        )
        self.coincidence += aggregation.coincidences(votes.counts)
        if self.policy.kind == "raw":
            keep = votes.votes > 0
            self.reasons[aggregation.Reason.NO_VOTES] += int((~keep).sum())
            zeros = np.zeros(int(keep.sum()))
            return _Kept(
                pair_ids[keep], chunk[keep, 1], chunk[keep, 2], chunk[keep, 3],
                np.full(int(keep.sum()), aggregation.NO_LABEL), votes.votes[keep], zeros, zeros, zeros,
            )  # fmt: skip
        if "score_chosen" in self.policy.columns or "score_rejected" in self.policy.columns:
            self.battles.append((chunk[:, 1], chunk[:, 2], chunk[:, 3], votes.weights))
        labels = aggregation.label_pairs(
            votes,
            rule=self.policy.label,
            tied_vote=self.policy.tied_vote,
            min_votes=self.policy.min_votes,
            min_agreement=self.policy.min_agreement,
            ties=self.policy.ties,
            both_bad=self.policy.both_bad,
        )
        self.reasons += np.bincount(labels.reason, minlength=len(aggregation.Reason))
        keep = labels.reason == aggregation.Reason.KEPT
        return _Kept(
            pair_ids[keep],
            chunk[keep, 1],
            chunk[keep, 2],
            chunk[keep, 3],
            labels.label[keep],
            labels.votes[keep],
            labels.agreement[keep],
            labels.share_a[keep],
            labels.margin_a[keep],
        )

    def response_scores(self) -> dict[int, float]:
        """Per-prompt Bradley-Terry scores of the responses, from every counted vote (dropped pairs too)."""
        if not self.battles:
            return {}
        prompt = np.concatenate([part[0] for part in self.battles])
        response_a = np.concatenate([part[1] for part in self.battles])
        response_b = np.concatenate([part[2] for part in self.battles])
        weights = np.concatenate([part[3] for part in self.battles])
        self.battles = []
        outcome = np.repeat(np.arange(aggregation.OUTCOMES)[None, :], prompt.size, axis=0).ravel()
        flat = weights.ravel()
        present = flat > 0
        scores = prompt_response_scores(
            np.repeat(prompt, aggregation.OUTCOMES)[present],
            np.repeat(response_a, aggregation.OUTCOMES)[present],
            np.repeat(response_b, aggregation.OUTCOMES)[present],
            outcome[present],
            both_bad_as_tie=self.project.both_bad_as_tie,
            weights=flat[present],
        )
        return {
            int(response): float(score) for response, score in zip(scores.response, scores.score, strict=True)
        }

    # Reporting -------------------------------------------------------------------------------------------

    def nothing_message(self) -> str:
        policy = self.policy
        if self.pair_total == 0:
            gold = " that are not gold pairs" if policy.exclude_gold else ""
            return f"0 pairs to export: the project has no pairs{gold}"
        unit = "pairs"
        if policy.kind == "raw":
            head = "the policy"
            details = [f"{self.pair_total:,} pairs have no counted judgments"]
        else:
            phrases = {
                aggregation.Reason.NO_VOTES: ("the policy", "have no counted votes"),
                aggregation.Reason.TOO_FEW_VOTES: (f"min_votes={policy.min_votes}", "have fewer votes"),
                aggregation.Reason.NOT_UNANIMOUS: ("label=unanimous", "have votes that disagree"),
                aggregation.Reason.TIED_VOTE: ("tied_vote=drop", "have a tied vote"),
                aggregation.Reason.LOW_AGREEMENT: (
                    f"min_agreement={policy.min_agreement:g}",
                    "have a lower agreement share",
                ),
                aggregation.Reason.TIE_DROPPED: ("ties=drop", "are labelled tie"),
                aggregation.Reason.BOTH_BAD_DROPPED: ("both_bad=drop", "are labelled both bad"),
            }
            order = sorted(
                (int(-count), int(reason)) for reason, count in enumerate(self.reasons) if reason and count
            )
            head = phrases[aggregation.Reason(order[0][1])][0] if order else "the policy"
            details = [
                f"{-count:,} {unit} {phrases[aggregation.Reason(reason)][1]}" for count, reason in order
            ]
        if self.excluded:
            details.append(
                f"{self.judgments_excluded:,} judgments of {len(self.excluded)} excluded annotator"
                f"{'s' if len(self.excluded) != 1 else ''} were not counted"
            )
        return f"0 {unit} satisfy {head}; " + "; ".join(details)

    def counts(self, *, kept: _Kept, writer: _DatasetWriter, conversational: bool) -> dict[str, Any]:
        reasons = {
            aggregation.Reason(reason).name.lower(): int(count)
            for reason, count in enumerate(self.reasons)
            if reason and count
        }
        alpha = aggregation.nominal_alpha(self.coincidence)
        excluded = Counter(self.excluded.values())
        counts: dict[str, Any] = {
            "kind": self.policy.kind,
            "conversational": conversational,
            "pairs_considered": int(self.pair_total),
            "pairs_exported": int(kept.pair.size),
            "rows": dict(writer.rows),
            "prompts": dict(writer.prompts),
            "judgments_counted": int(self.judgments_counted),
            "judgments_excluded": int(self.judgments_excluded),
            "annotators_counted": len(self.annotators_counted),
            "annotators_excluded": {
                "flagged": excluded.get("flagged", 0),
                "gold_accuracy": excluded.get("gold_accuracy", 0),
            },
            "dropped": reasons,
            "alpha": round(alpha, 6) if np.isfinite(alpha) else None,
            "systems": {name: dict(sorted(tally.items())) for name, tally in sorted(writer.systems.items())},
        }
        if self.policy.kind == "preference":
            counts["labels"] = {
                "preference": int(np.count_nonzero(kept.label != aggregation.TIE)),
                "tie": int(np.count_nonzero(kept.label == aggregation.TIE)),
            }
            counts["mean_agreement"] = round(float(kept.agreement.mean()), 6)
        return counts


def _split(
    *, project: Project, policy: ExportPolicy, prompts: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Test-split membership of each prompt that has rows (sorted ids), stratified by category if asked."""
    prompt_ids = np.unique(prompts)
    strata = None
    if policy.stratify:
        category_of: dict[int, str] = {}
        ids = prompt_ids.tolist()
        for start in range(0, len(ids), PAIR_CHUNK):
            category_of.update(
                Prompt.objects.filter(pk__in=ids[start : start + PAIR_CHUNK]).values_list("pk", "category")
            )
        names = sorted(set(category_of.values()))
        index = {name: position for position, name in enumerate(names)}
        strata = np.array([index[category_of[pk]] for pk in ids], dtype=np.int64)
    is_test = aggregation.split_by_prompt(
        prompts=prompt_ids, test_share=1.0 - policy.split, seed=policy.seed, strata=strata
    )
    return is_test, prompt_ids


# ----------------------------------------------------------------------------------------------------------
# Rows


MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
CONVERSATION = pa.list_(MESSAGE)


def _schema(*, policy: ExportPolicy, project: Project, conversational: bool) -> pa.Schema:
    text = CONVERSATION if conversational else pa.string()
    if policy.kind == "raw":
        columns = [
            ("prompt", text),
            ("response_a", text),
            ("response_b", text),
            ("choice", pa.string()),
            ("strength", pa.int64()),
        ]
        if project.criteria:
            columns.append(("criteria", pa.struct([(str(name), pa.string()) for name in project.criteria])))
        columns += [
            ("annotator", pa.string()),
            ("rationale", pa.string()),
            ("shown_swapped", pa.bool_()),
            ("duration_ms", pa.int64()),
            ("is_gold", pa.bool_()),
            ("gold_choice", pa.string()),
            ("system_a", pa.string()),
            ("system_b", pa.string()),
            ("category", pa.string()),
            ("prompt_id", pa.string()),
            ("pair_id", pa.int64()),
            ("response_a_id", pa.string()),
            ("response_b_id", pa.string()),
        ]
        return pa.schema(columns)
    types = {
        "margin": pa.float64(),
        "score_chosen": pa.float64(),
        "score_rejected": pa.float64(),
        "vote_share": pa.float64(),
        "n_votes": pa.int64(),
        "agreement": pa.float64(),
        "system_chosen": pa.string(),
        "system_rejected": pa.string(),
        "category": pa.string(),
    }
    columns = [("prompt", text), ("chosen", text), ("rejected", text)]
    if policy.keeps_tie_rows:
        columns.append(("tie", pa.bool_()))
    for name in policy.columns:
        if name == "ids":
            columns += [
                ("prompt_id", pa.string()),
                ("pair_id", pa.int64()),
                ("chosen_id", pa.string()),
                ("rejected_id", pa.string()),
            ]
        else:
            columns.append((name, types[name]))
    return pa.schema(columns)


def _conversation(messages: Any) -> list[dict[str, str]]:
    return [
        {"role": str(message.get("role", "")), "content": str(message.get("content", ""))}
        for message in messages
    ]


def _response_value(content: str, conversational: bool) -> Any:
    return [{"role": "assistant", "content": content}] if conversational else content


def _in_list(column: str, ids: list[int]) -> tuple[str, list[Any]]:
    """``column`` in ``ids``: one array parameter on PostgreSQL, a list of them elsewhere."""
    if connection.vendor == "postgresql":
        # One text parameter: psycopg adapting a list of ten thousand ints costs more than the query.
        return f"{column} = ANY(CAST(%s AS BIGINT[]))", ["{" + ",".join(map(str, ids)) + "}"]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def _rows_by_id(sql: str, ids: list[int]) -> dict[int, tuple]:
    """Runs ``sql`` (first column the id, ``{ids}`` where the id condition goes) for these sorted ids.

    Ids that are dense (rows imported together, the usual case) are read as one range, which PostgreSQL
    answers with a single index range scan; scattered ones by list."""
    if not ids:
        return {}
    if ids[-1] - ids[0] < 2 * len(ids):
        with connection.cursor() as cursor:
            cursor.execute(sql.format(ids="id BETWEEN %s AND %s"), [ids[0], ids[-1]])
            wanted = set(ids)
            return {row[0]: row[1:] for row in cursor.fetchall() if row[0] in wanted}
    condition, params = _in_list("id", ids)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(ids=condition), params)
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _prompt_texts(ids: list[int]) -> dict[int, tuple]:
    """Per prompt id: (external id, text, messages as JSON text or None, category)."""
    return _rows_by_id(
        "SELECT id, external_id, content, CAST(messages AS TEXT), category FROM annotate_prompt WHERE {ids}",
        ids,
    )


def _response_texts(ids: list[int]) -> dict[int, tuple]:
    """Per response id: (external id, text, system). Read once per chunk, however many pairs share one."""
    return _rows_by_id("SELECT id, external_id, content, system FROM annotate_response WHERE {ids}", ids)


def _unique(*arrays: NDArray[np.int64]) -> list[int]:
    return np.unique(np.concatenate(arrays)).tolist()


def _rounded(values: NDArray[np.float64]) -> list[float]:
    """Six decimals (plenty for shares and scores, and stable in text), and no negative zero."""
    return (np.round(values, 6) + 0.0).tolist()


class _Prompts:
    """A prompt's value in the dataset, converted once per chunk however many pairs share it."""

    def __init__(self, conversational: bool) -> None:
        self.conversational = conversational
        self.cache: dict[int, Any] = {}

    def value(self, prompt_id: int, content: str, messages: str | None) -> Any:
        if prompt_id not in self.cache:
            if not self.conversational:
                self.cache[prompt_id] = content
            elif messages is None or messages == "null":
                self.cache[prompt_id] = [{"role": "user", "content": content}]
            else:
                self.cache[prompt_id] = _conversation(orjson.loads(messages))
        return self.cache[prompt_id]


class _PreferenceRows:
    """One row per labelled pair: prompt, chosen, rejected and the optional columns. Each chunk's columns
    are built whole (numbers with numpy), then split into train and test by the writer."""

    def __init__(self, *, policy: ExportPolicy, reader: _Reader, conversational: bool) -> None:
        self.policy = policy
        self.reader = reader
        self.conversational = conversational

    def write(
        self,
        kept: _Kept,
        prompt_ids: NDArray[np.int64],
        prompt_is_test: NDArray[np.bool_],
        writer: _DatasetWriter,
        progress: ProgressCallback,
    ) -> None:
        columns = set(self.policy.columns)
        scores = self.reader.response_scores() if {"score_chosen", "score_rejected"} & columns else {}
        is_test = prompt_is_test[np.searchsorted(prompt_ids, kept.prompt)]
        swap = kept.label == aggregation.B
        chosen_pk = np.where(swap, kept.response_b, kept.response_a)
        rejected_pk = np.where(swap, kept.response_a, kept.response_b)
        conversational = self.conversational
        total = kept.pair.size
        for start in range(0, total, WRITE_CHUNK):
            stop = min(start + WRITE_CHUNK, total)
            part = slice(start, stop)
            prompt_pks = kept.prompt[part].tolist()
            prompt_rows = _prompt_texts(_unique(kept.prompt[part]))
            responses = _response_texts(_unique(chosen_pk[part], rejected_pk[part]))
            chosen = [responses[pk] for pk in chosen_pk[part].tolist()]
            rejected = [responses[pk] for pk in rejected_pk[part].tolist()]
            rows = [prompt_rows[pk] for pk in prompt_pks]
            prompts = _Prompts(conversational)
            data: dict[str, list] = {
                "prompt": [
                    prompts.value(pk, row[1], row[2]) for pk, row in zip(prompt_pks, rows, strict=True)
                ],
                "chosen": [_response_value(side[1], conversational) for side in chosen],
                "rejected": [_response_value(side[1], conversational) for side in rejected],
            }
            if self.policy.keeps_tie_rows:
                data["tie"] = (kept.label[part] == aggregation.TIE).tolist()
            if "margin" in columns:
                data["margin"] = _rounded(np.where(swap[part], -kept.margin_a[part], kept.margin_a[part]))
            if "score_chosen" in columns:
                data["score_chosen"] = _rounded(
                    np.array([scores.get(pk, 0.0) for pk in chosen_pk[part].tolist()])
                )
            if "score_rejected" in columns:
                data["score_rejected"] = _rounded(
                    np.array([scores.get(pk, 0.0) for pk in rejected_pk[part].tolist()])
                )
            if "vote_share" in columns:
                data["vote_share"] = _rounded(
                    np.where(swap[part], 1.0 - kept.share_a[part], kept.share_a[part])
                )
            if "n_votes" in columns:
                data["n_votes"] = kept.votes[part].tolist()
            if "agreement" in columns:
                data["agreement"] = _rounded(kept.agreement[part])
            if "system_chosen" in columns:
                data["system_chosen"] = [side[2] for side in chosen]
            if "system_rejected" in columns:
                data["system_rejected"] = [side[2] for side in rejected]
            if "category" in columns:
                data["category"] = [row[3] for row in rows]
            if "ids" in columns:
                data["prompt_id"] = [row[0] for row in rows]
                data["pair_id"] = kept.pair[part].tolist()
                data["chosen_id"] = [side[0] for side in chosen]
                data["rejected_id"] = [side[0] for side in rejected]
            ties = kept.label[part] == aggregation.TIE
            writer.write(
                data,
                is_test=is_test[part],
                prompts=kept.prompt[part],
                winners=[side[2] for side in chosen],
                losers=[side[2] for side in rejected],
                ties=ties,
            )
            progress(0.5 + 0.5 * stop / total)


class _RawRows:
    """One row per counted judgment, with the annotator replaced by a pseudonym that is stable within this
    export and unrelated across exports (a keyed hash of the annotator id, keyed by the export)."""

    def __init__(
        self, *, export: Export, policy: ExportPolicy, reader: _Reader, conversational: bool
    ) -> None:
        self.policy = policy
        self.reader = reader
        self.conversational = conversational
        self.criteria = [str(name) for name in export.project.criteria or []]
        self.key = hmac.new(
            settings.SECRET_KEY.encode(), f"palate-export-pseudonyms:{export.pk}".encode(), hashlib.sha256
        ).digest()
        self.pseudonyms: dict[int | None, str] = {None: "imported"}

    def pseudonym(self, annotator_id: int | None) -> str:
        if annotator_id not in self.pseudonyms:
            digest = hmac.new(self.key, str(annotator_id).encode(), hashlib.sha256).hexdigest()
            self.pseudonyms[annotator_id] = f"annotator-{digest[:12]}"
        return self.pseudonyms[annotator_id]

    def _judgments(self, first: int, last: int) -> list[tuple]:
        """(pair id, annotator id, choice, strength, criteria JSON, rationale, shown_swapped, duration_ms) of
        the counted judgments on pairs with ids in [first, last], in (pair, annotator) order."""
        reader = self.reader
        origin = "" if self.policy.include_imported else " AND j.origin = 'human'"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT j.pair_id, j.annotator_id, j.choice, j.strength, CAST(j.criteria AS TEXT), j.rationale, "
                "j.shown_swapped, j.duration_ms FROM annotate_judgment j JOIN annotate_pair p ON p.id = j.pair_id "
                f"WHERE {reader.pair_filter} AND p.id BETWEEN %s AND %s AND j.pair_id BETWEEN %s AND %s{origin} "
                "ORDER BY j.pair_id, j.annotator_id",
                [self.reader.project.pk, first, last, first, last],
            )
            rows = cursor.fetchall()
        return [row for row in rows if row[1] not in reader.excluded]

    def write(
        self,
        kept: _Kept,
        prompt_ids: NDArray[np.int64],
        prompt_is_test: NDArray[np.bool_],
        writer: _DatasetWriter,
        progress: ProgressCallback,
    ) -> None:
        is_test_of = dict(zip(prompt_ids.tolist(), prompt_is_test.tolist(), strict=True))
        conversational = self.conversational
        total = kept.pair.size
        pairs_per_chunk = max(1, WRITE_CHUNK // 4)
        for start in range(0, total, pairs_per_chunk):
            stop = min(start + pairs_per_chunk, total)
            part = slice(start, stop)
            pair_pks = kept.pair[part].tolist()
            structure = dict(
                zip(
                    pair_pks,
                    zip(
                        kept.prompt[part].tolist(),
                        kept.response_a[part].tolist(),
                        kept.response_b[part].tolist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )
            gold = _rows_by_id("SELECT id, is_gold, gold_choice FROM annotate_pair WHERE {ids}", pair_pks)
            prompt_rows = _prompt_texts(_unique(kept.prompt[part]))
            responses = _response_texts(_unique(kept.response_a[part], kept.response_b[part]))
            judgments = [
                row
                for row in self._judgments(int(kept.pair[start]), int(kept.pair[stop - 1]))
                if row[0] in structure
            ]
            # Per judgment: (pair id, prompt id, prompt row, response A row, response B row, is_gold, gold_choice).
            pairs = []
            for row in judgments:
                prompt_pk, a_pk, b_pk = structure[row[0]]
                pairs.append(
                    (
                        row[0],
                        prompt_pk,
                        prompt_rows[prompt_pk],
                        responses[a_pk],
                        responses[b_pk],
                        *gold[row[0]],
                    )
                )
            prompts = _Prompts(conversational)
            data: dict[str, list] = {
                "prompt": [prompts.value(pair[1], pair[2][1], pair[2][2]) for pair in pairs],
                "response_a": [_response_value(pair[3][1], conversational) for pair in pairs],
                "response_b": [_response_value(pair[4][1], conversational) for pair in pairs],
                "choice": [row[2] for row in judgments],
                "strength": [row[3] for row in judgments],
            }
            if self.criteria:
                given = [orjson.loads(row[4]) if row[4] else {} for row in judgments]
                data["criteria"] = [
                    {name: (values.get(name) if isinstance(values, dict) else None) for name in self.criteria}
                    for values in given
                ]
            data |= {
                "annotator": [self.pseudonym(row[1]) for row in judgments],
                "rationale": [row[5] for row in judgments],
                "shown_swapped": [bool(row[6]) for row in judgments],
                "duration_ms": [row[7] for row in judgments],
                "is_gold": [bool(pair[5]) for pair in pairs],
                "gold_choice": [pair[6] or None for pair in pairs],
                "system_a": [pair[3][2] for pair in pairs],
                "system_b": [pair[4][2] for pair in pairs],
                "category": [pair[2][3] for pair in pairs],
                "prompt_id": [pair[2][0] for pair in pairs],
                "pair_id": [pair[0] for pair in pairs],
                "response_a_id": [pair[3][0] for pair in pairs],
                "response_b_id": [pair[4][0] for pair in pairs],
            }
            b_won = [row[2] == "b" for row in judgments]
            writer.write(
                data,
                is_test=np.array([is_test_of[pair[1]] for pair in pairs], dtype=bool),
                prompts=np.array([pair[1] for pair in pairs], dtype=np.int64),
                winners=[pair[4][2] if flip else pair[3][2] for pair, flip in zip(pairs, b_won, strict=True)],
                losers=[pair[3][2] if flip else pair[4][2] for pair, flip in zip(pairs, b_won, strict=True)],
                ties=np.array([row[2] not in ("a", "b") for row in judgments], dtype=bool),
            )
            progress(0.5 + 0.5 * stop / total)


# ----------------------------------------------------------------------------------------------------------
# Files


class _JsonlSink:
    def __init__(self, path: Path, *, compress: bool) -> None:
        self.file = path.open("wb")
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
        self.file.close()


class _ParquetSink:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression=PARQUET_COMPRESSION)

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


class _ArrowStreamSink:
    """The file ``datasets.Dataset.save_to_disk`` writes: an Arrow IPC stream whose schema carries the
    ``datasets`` features."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema.with_metadata(
            {"huggingface": json.dumps({"info": {"features": hf_features(schema)}})}
        )
        self.file = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.file, self.schema)

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.writer.write_table(table.replace_schema_metadata(self.schema.metadata))

    def close(self) -> None:
        self.writer.close()
        self.file.close()


def hf_feature(data_type: pa.DataType) -> Any:
    """The ``datasets`` feature (as saved in dataset_info.json) of an Arrow type used in exports."""
    if pa.types.is_list(data_type):
        return {"feature": hf_feature(data_type.value_type), "_type": "List"}
    if pa.types.is_struct(data_type):
        return {
            data_type.field(index).name: hf_feature(data_type.field(index).type)
            for index in range(data_type.num_fields)
        }
    names = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}
    return {"dtype": names[data_type], "_type": "Value"}


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    return {item.name: hf_feature(item.type) for item in schema}


HF_SHARD = "data-00000-of-00001.arrow"


class _DatasetWriter:
    """Writes each split to every format as rows arrive; files open on a split's first row, so an empty
    split leaves no file.

    The encoding and writing (JSON lines, Arrow tables, Parquet compression, gzip, the disk) happen on a
    background thread, one chunk behind the reads: pyarrow, zlib and file writes release the GIL, so they
    overlap with the next chunk's database round trip and row building. At most two chunks wait, which
    keeps memory flat."""

    def __init__(self, *, folder: Path, formats: list[str], schema: pa.Schema) -> None:
        self.folder = folder
        self.formats = formats
        self.schema = schema
        self.names = schema.names
        self.sinks: dict[str, list[tuple[str, Any]]] = {}
        self.rows: dict[str, int] = {}
        self.prompts: dict[str, int] = {}
        self._prompt_sets: dict[str, set[int]] = {split: set() for split in SPLITS}
        self.systems: dict[str, Counter] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="export-writer", daemon=True)
        self._thread.start()

    def _open(self, split: str) -> list[tuple[str, Any]]:
        sinks: list[tuple[str, Any]] = []
        for fmt in self.formats:
            if fmt == "jsonl":
                sinks.append((f"{split}.jsonl", _JsonlSink(self.folder / f"{split}.jsonl", compress=False)))
            elif fmt == "jsonl.gz":
                sinks.append(
                    (f"{split}.jsonl.gz", _JsonlSink(self.folder / f"{split}.jsonl.gz", compress=True))
                )
            elif fmt == "parquet":
                sinks.append(
                    (f"{split}.parquet", _ParquetSink(self.folder / f"{split}.parquet", self.schema))
                )
            elif fmt == "hf":
                (self.folder / "hf" / split).mkdir(parents=True, exist_ok=True)
                sinks.append(
                    (
                        f"hf/{split}/{HF_SHARD}",
                        _ArrowStreamSink(self.folder / "hf" / split / HF_SHARD, self.schema),
                    )
                )
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
        if any(fmt.startswith("jsonl") for fmt in self.formats):
            names, dumps = self.names, orjson.dumps
            lines = [
                dumps(dict(zip(names, values, strict=True)))
                for values in zip(*(columns[name] for name in names), strict=True)
            ]
        table = None
        if "parquet" in self.formats or "hf" in self.formats:
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
        for sinks in self.sinks.values():
            for _, sink in sinks:
                sink.close()
        self.prompts = {split: len(ids) for split, ids in self._prompt_sets.items() if ids}
        self._prompt_sets = {}
        if self._failure is not None:
            raise self._failure

    def finish(
        self, *, project: Project, policy: ExportPolicy, counts: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Writes the Hugging Face metadata and the dataset card, and describes every file with its sha256."""
        splits = [split for split in SPLITS if split in self.sinks]
        row_counts = {name: self.rows[split] for split in splits for name, _ in self.sinks[split]}
        if "hf" in self.formats:
            for split in splits:
                shard = self.folder / "hf" / split / HF_SHARD
                digest = _sha256(shard)
                info = {
                    "citation": "",
                    "description": f"Preference data from the Palate project {project.name!r}.",
                    "features": hf_features(self.schema),
                    "homepage": "",
                    "license": policy.license,
                }
                state = {
                    "_data_files": [{"filename": HF_SHARD}],
                    "_fingerprint": digest[:16],
                    "_format_columns": None,
                    "_format_kwargs": {},
                    "_format_type": None,
                    "_output_all_columns": False,
                    "_split": split,
                }
                _write_json(self.folder / "hf" / split / "dataset_info.json", info)
                _write_json(self.folder / "hf" / split / "state.json", state)
            _write_json(self.folder / "hf" / "dataset_dict.json", {"splits": splits})
        files = self._describe(row_counts, sorted(item for item in self.folder.rglob("*") if item.is_file()))
        card = dataset_card(project=project, policy=policy, counts=counts, files=files, schema=self.schema)
        cards = [self.folder / "README.md"] + (
            [self.folder / "hf" / "README.md"] if "hf" in self.formats else []
        )
        for path in cards:
            path.write_text(card, encoding="utf-8")
        files.update(self._describe(row_counts, cards))
        return dict(sorted(files.items()))

    def _describe(self, row_counts: dict[str, int], paths: list[Path]) -> dict[str, dict[str, Any]]:
        """{name: {path, bytes, rows, sha256}} for each file, path relative to ARTIFACT_ROOT as it will be
        once the finished folder takes its final name."""
        final = f"exports/{self.folder.name.removesuffix('.partial')}"
        files: dict[str, dict[str, Any]] = {}
        for path in paths:
            name = path.relative_to(self.folder).as_posix()
            files[name] = {
                "path": f"{final}/{name}",
                "bytes": path.stat().st_size,
                "rows": row_counts.get(name),
                "sha256": _sha256(path),
            }
        return files


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# The dataset card


def _yaml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def dataset_card(
    *,
    project: Project,
    policy: ExportPolicy,
    counts: dict[str, Any],
    files: dict[str, dict[str, Any]],
    schema: pa.Schema,
) -> str:
    """The README.md of an export (and of its Hugging Face folder): what the data is, how it was made, and
    the sha256 of every file. No date or export number, so the same data and policy give the same card."""
    raw = policy.kind == "raw"
    lines = ["---"]
    if policy.license:
        lines.append(f"license: {_yaml_string(policy.license)}")
    lines += [
        f"pretty_name: {_yaml_string(project.name + (' judgments' if raw else ' preferences'))}",
        "tags:",
        "- palate",
        "- human-feedback",
        "- preference" if not raw else "- annotations",
        "- trl",
        "---",
        "",
        f"# {project.name}: {'every human judgment' if raw else 'preference pairs'}",
        "",
    ]
    if raw:
        lines.append(
            "One row per counted judgment: the prompt, both responses, the choice in A/B terms and the "
            "annotator as a pseudonym (stable within this export, unrelated across exports)."
        )
    else:
        shape = "conversational (lists of {role, content} messages)" if counts["conversational"] else "text"
        lines.append(
            f"Pairwise preferences in TRL's explicit-prompt {shape} format: `prompt`, `chosen`, `rejected`. "
            "They feed `trl.RewardTrainer` and `trl.DPOTrainer` as they are."
        )
        if policy.keeps_tie_rows:
            lines.append(
                "Rows with `tie` true are ties (`vote_share` 0.5): filter them out for pairwise losses."
            )
    lines += ["", "## Splits", "", "| split | rows | prompts |", "|---|---:|---:|"]
    for split in SPLITS:
        if split in counts["rows"]:
            lines.append(f"| {split} | {counts['rows'][split]:,} | {counts['prompts'].get(split, 0):,} |")
    test_share = 1.0 - policy.split
    lines += [
        "",
        f"Split by prompt (no prompt is in both), {policy.split:g} / {test_share:g} with seed {policy.seed}"
        + (", stratified by category." if policy.stratify else "."),
        "",
        "## Columns",
        "",
        "| column | type |",
        "|---|---|",
    ]
    lines += [f"| `{item.name}` | `{item.type}` |" for item in schema]
    lines += [
        "",
        "## How the labels were made",
        "",
        "```json",
        json.dumps(policy.as_dict(), indent=2),
        "```",
        "",
    ]
    excluded = counts["annotators_excluded"]
    excluded_note = (
        f"{counts['judgments_excluded']:,} judgments of excluded annotators left out "
        f"({excluded['flagged']} flagged, {excluded['gold_accuracy']} below the gold accuracy)"
        if excluded["flagged"] or excluded["gold_accuracy"]
        else "no annotator was excluded"
    )
    lines += [
        f"- Pairs considered: {counts['pairs_considered']:,}; exported: {counts['pairs_exported']:,}.",
        f"- Judgments counted: {counts['judgments_counted']:,} from {counts['annotators_counted']:,} "
        f"annotators; {excluded_note}.",
    ]
    if counts.get("labels"):
        lines.append(
            f"- Labels: {counts['labels']['preference']:,} preferences, {counts['labels']['tie']:,} ties."
        )
    if counts["dropped"]:
        dropped = ", ".join(
            f"{reason.replace('_', ' ')}: {count:,}" for reason, count in counts["dropped"].items()
        )
        lines.append(f"- Pairs left out: {dropped}.")
    lines += ["", "## Agreement", ""]
    alpha = counts.get("alpha")
    lines.append(
        f"- Krippendorff's alpha (nominal) over the counted votes: {alpha:.3f}."
        if alpha is not None
        else "- Krippendorff's alpha: not defined (no pair has two varying votes)."
    )
    if counts.get("mean_agreement") is not None:
        lines.append(f"- Mean share of votes for the exported label: {counts['mean_agreement']:.3f}.")
    if counts["systems"]:
        lines += ["", "## Systems", "", "| system | chosen | rejected | tie |", "|---|---:|---:|---:|"]
        for name, tally in counts["systems"].items():
            lines.append(
                f"| {name} | {tally.get('chosen', 0):,} | {tally.get('rejected', 0):,} | {tally.get('tie', 0):,} |"
            )
    lines += [
        "",
        "## Licence",
        "",
        policy.license or "Not stated: ask the project's lead before sharing this data.",
        "",
    ]
    lines += ["## Files", "", "| file | bytes | rows | sha256 |", "|---|---:|---:|---|"]
    for name, record in files.items():
        if name.endswith("README.md"):
            continue
        rows = f"{record['rows']:,}" if record["rows"] is not None else ""
        lines.append(f"| `{name}` | {record['bytes']:,} | {rows} | `{record['sha256']}` |")
    return "\n".join(lines) + "\n"
