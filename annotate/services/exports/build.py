"""Building an export's files, in two passes over the project inside one consistent read:

1. **Who counts.** Annotators are excluded first (flagged on the quality dashboard, or below a gold
   accuracy), then, inside one read-only REPEATABLE READ transaction, so every later query sees the same
   data:
2. **Labels** (pass 1, ``labels.LabelReader``): pairs are read by keyset pagination in id order, each
   chunk's judgments as numpy arrays; ``annotate/stats/aggregation.py`` turns the votes into labels. Only a
   few numbers per kept pair stay in memory, never text.
3. **Split**: by prompt (``split_by_prompt``), so no prompt is in both train and test.
4. **Rows** (pass 2, ``rows``): the kept pairs' texts are read in chunks and written at once to every chosen
   format (``writer.DatasetWriter``, formats from the registry in ``formats``): memory stays flat however
   large the export.

Rows are written in pair id order, gzip has no timestamp or file name, Parquet and Arrow files are written
with fixed settings and the dataset card has no date, so the same data, policy and seed give byte-identical
files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from numpy.typing import NDArray

from annotate.models import Export, Project, Prompt
from annotate.services.exports.files import ExportFolder
from annotate.services.exports.labels import LabelReader, ProgressCallback
from annotate.services.exports.policy import (
    ExportFailed,
    ExportPolicy,
    export_formats_parse,
    export_policy_parse,
    project_has_conversations,
)
from annotate.services.exports.rows import PreferenceRows, RawRows, row_schema
from annotate.services.exports.writer import DatasetWriter
from annotate.stats import aggregation

STRATA_CHUNK = 20_000


@dataclass
class BuildResult:
    counts: dict[str, Any]
    files: dict[str, dict[str, Any]]


def export_build(*, export: Export, folder: ExportFolder, progress: ProgressCallback) -> BuildResult:
    """Writes the export's files into ``folder`` and returns its counts and files. Raises ExportFailed
    (naming the rule that removed every pair) when the policy leaves nothing to export; the caller drops
    what was written when this raises."""
    project = export.project
    policy = export_policy_parse(export.policy, project=project)
    formats = export_formats_parse(export.formats)
    conversational = policy.shape == "conversational" or (
        policy.shape == "auto" and project_has_conversations(project)
    )
    flagged = _flagged_annotators(project) if policy.exclude_flagged else set()
    with _consistent_reads():
        reader = LabelReader(project=project, policy=policy, flagged=flagged, progress=progress)
        kept = reader.label_pass()
        if kept.pair.size == 0:
            raise ExportFailed(reader.nothing_message())
        prompt_is_test, prompt_ids = _split(project=project, policy=policy, prompts=kept.prompt)
        writer = DatasetWriter(
            folder=folder,
            formats=formats,
            schema=row_schema(policy=policy, project=project, conversational=conversational),
        )
        try:
            if policy.kind == "raw":
                RawRows(export=export, policy=policy, reader=reader, conversational=conversational).write(
                    kept, prompt_ids, prompt_is_test, writer, progress
                )
            else:
                PreferenceRows(policy=policy, reader=reader, conversational=conversational).write(
                    kept, prompt_ids, prompt_is_test, writer, progress
                )
        finally:
            writer.close()
        counts = reader.counts(kept=kept, writer=writer, conversational=conversational)
    files = writer.finish(project=project, policy=policy, counts=counts)
    progress(1.0)
    return BuildResult(counts=counts, files=files)


class _consistent_reads:
    """One read-only REPEATABLE READ transaction, so that the two passes and every chunk see
    the same data even while annotators keep judging. Inside an outer transaction (tests) it is only a
    savepoint: the isolation level can be set only by the first statement of a transaction."""

    def __enter__(self) -> None:
        self.atomic = transaction.atomic()
        outermost = not connection.in_atomic_block
        self.atomic.__enter__()
        if outermost:
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


def _split(
    *, project: Project, policy: ExportPolicy, prompts: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Test-split membership of each prompt that has rows (sorted ids), stratified by category if asked."""
    prompt_ids = np.unique(prompts)
    strata = None
    if policy.stratify:
        category_of: dict[int, str] = {}
        ids = prompt_ids.tolist()
        for start in range(0, len(ids), STRATA_CHUNK):
            category_of.update(
                Prompt.objects.filter(pk__in=ids[start : start + STRATA_CHUNK]).values_list("pk", "category")
            )
        names = sorted(set(category_of.values()))
        index = {name: position for position, name in enumerate(names)}
        strata = np.array([index[category_of[pk]] for pk in ids], dtype=np.int64)
    is_test = aggregation.split_by_prompt(
        prompts=prompt_ids, test_share=1.0 - policy.split, seed=policy.seed, strata=strata
    )
    return is_test, prompt_ids
