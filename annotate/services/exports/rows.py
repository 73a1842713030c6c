"""Pass 2 of an export: the rows. Each chunk of kept pairs gets its texts read in a few queries and its
columns built whole (numbers with numpy), then goes to the writer: one row per labelled pair (preference
exports) or one per counted judgment (raw exports)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from django.conf import settings
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from numpy.typing import NDArray

from annotate.models import Export, Judgment, Pair, Project, Prompt, Response
from annotate.services.exports.labels import Kept, LabelReader, ProgressCallback
from annotate.services.exports.policy import ExportPolicy
from annotate.services.exports.writer import DatasetWriter
from annotate.stats import aggregation

WRITE_CHUNK = 5_000


MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
CONVERSATION = pa.list_(MESSAGE)


def row_schema(*, policy: ExportPolicy, project: Project, conversational: bool) -> pa.Schema:
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


def _rows_by_id(rows: QuerySet, ids: list[int]) -> dict[int, tuple]:
    """``{id: the rest of its row}`` of ``rows`` (a ``values_list`` whose first column is the id) for these
    sorted ids. Ids that are dense (rows imported together, the usual case) are read as one range, which
    PostgreSQL answers with a single index range scan; scattered ones by list."""
    if not ids:
        return {}
    if ids[-1] - ids[0] < 2 * len(ids):
        wanted = set(ids)
        found = rows.filter(id__gte=ids[0], id__lte=ids[-1])
        return {row[0]: row[1:] for row in found if row[0] in wanted}
    return {row[0]: row[1:] for row in rows.filter(id__in=ids)}


def _prompt_texts(ids: list[int]) -> dict[int, tuple]:
    """Per prompt id: (external id, text, messages as JSON text or None, category)."""
    prompts = Prompt.objects.annotate(messages_text=Cast("messages", TextField()))
    return _rows_by_id(
        prompts.values_list("id", "external_id", "content", "messages_text", "category").order_by(), ids
    )


def _response_texts(ids: list[int]) -> dict[int, tuple]:
    """Per response id: (external id, text, system). Read once per chunk, however many pairs share one."""
    return _rows_by_id(Response.objects.values_list("id", "external_id", "content", "system").order_by(), ids)


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


class PreferenceRows:
    """One row per labelled pair: prompt, chosen, rejected and the optional columns. Each chunk's columns
    are built whole (numbers with numpy), then split into train and test by the writer."""

    def __init__(self, *, policy: ExportPolicy, reader: LabelReader, conversational: bool) -> None:
        self.policy = policy
        self.reader = reader
        self.conversational = conversational

    def write(
        self,
        kept: Kept,
        prompt_ids: NDArray[np.int64],
        prompt_is_test: NDArray[np.bool_],
        writer: DatasetWriter,
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


class RawRows:
    """One row per counted judgment, with the annotator replaced by a pseudonym that is stable within this
    export and unrelated across exports (a keyed hash of the annotator id, keyed by the export)."""

    def __init__(
        self, *, export: Export, policy: ExportPolicy, reader: LabelReader, conversational: bool
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
        judgments = Judgment.objects.filter(pair__gte=first, pair__lte=last)
        if not self.policy.include_imported:
            judgments = judgments.filter(origin=Judgment.Origin.HUMAN)
        rows = judgments.annotate(criteria_text=Cast("criteria", TextField())).values_list(
            "pair_id",
            "annotator_id",
            "choice",
            "strength",
            "criteria_text",
            "rationale",
            "shown_swapped",
            "duration_ms",
        )
        rows = list(rows.order_by("pair_id", "annotator_id"))
        return [row for row in rows if row[1] not in self.reader.excluded]

    def write(
        self,
        kept: Kept,
        prompt_ids: NDArray[np.int64],
        prompt_is_test: NDArray[np.bool_],
        writer: DatasetWriter,
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
            gold = _rows_by_id(Pair.objects.values_list("id", "is_gold", "gold_choice").order_by(), pair_pks)
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
