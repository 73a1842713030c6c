"""Pass 1 of an export: the project's judgments read chunk by chunk under the policy, turned into one label
per pair (or, for raw exports, the pairs with counted votes), with the tallies the counts and the card report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db.models import F, QuerySet
from django.db.models.fields.json import KeyTextTransform
from numpy.typing import NDArray

from annotate.models import Adjudication, Judgment, Pair, Project
from annotate.services.exports.policy import ExportPolicy
from annotate.services.judgment_arrays import CHOICES, as_float
from annotate.stats import aggregation
from annotate.stats.ratings import prompt_response_scores
from palate.db import read_arrays

if TYPE_CHECKING:
    from annotate.services.exports.writer import DatasetWriter

ProgressCallback = Callable[[float], None]
PAIR_CHUNK = 20_000


@dataclass
class Kept:
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


class LabelReader:
    """Reads a project's judgments under a policy, chunk by chunk, and keeps the tallies for the counts.

    Numbers come through ``palate.db.read_arrays`` straight into numpy, never through model instances: a
    million judgments are read in about a second."""

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
        self.settled_seen = 0
        self.settled_exported = 0
        self.settled_changed = 0
        self.pair_total = self._pairs().count()

    def _pairs(self) -> QuerySet:
        """The pairs the export considers, in id order."""
        pairs = Pair.objects.filter(project=self.project)
        if self.policy.exclude_gold:
            pairs = pairs.filter(is_gold=False)
        return pairs.order_by("id")

    # Who counts ------------------------------------------------------------------------------------------

    def _gold_figures(self) -> None:
        """Gold accuracy per annotator, for min_gold_accuracy and the weighted rule."""
        votes = Judgment.objects.filter(
            pair__project=self.project, pair__is_gold=True, origin=Judgment.Origin.HUMAN
        ).values_list("annotator_id", "choice", "pair__gold_choice")
        columns = read_arrays(votes.order_by(), {"annotator": "int", "choice": CHOICES, "gold": CHOICES})
        table = np.column_stack(list(columns.values())).astype(np.float64)
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
            pairs = self._pairs().filter(id__gt=last)
            columns = read_arrays(
                pairs.values_list("id", "prompt_id", "response_a_id", "response_b_id")[:PAIR_CHUNK],
                {"id": "int", "prompt": "int", "response_a": "int", "response_b": "int"},
            )
            if not columns["id"].size:
                return
            last = int(columns["id"][-1])
            yield np.column_stack(list(columns.values()))

    def _excluded_mask(self, annotators: NDArray[np.float64]) -> NDArray[np.bool_]:
        if not self.excluded:
            return np.zeros(annotators.size, dtype=bool)
        return np.isin(annotators, np.fromiter(self.excluded, dtype=np.float64, count=len(self.excluded)))

    def chunk_votes(self, pair_ids: NDArray[np.int64]) -> NDArray[np.float64]:
        """Counted votes on these pairs (sorted ids), in (pair, annotator) order, as rows of (pair id,
        annotator id, vote code, strength); NaN for an imported label's annotator, a missing vote or strength.
        Ordered, so that weighted sums add up in the same order every time (the unique (pair, annotator)
        index gives that order for free). The judgments are read by the range of pair ids, one index range
        scan, and those of pairs outside the chunk (gold, another project's) dropped here."""
        judgments = Judgment.objects.filter(pair__gte=int(pair_ids[0]), pair__lte=int(pair_ids[-1]))
        if not self.policy.include_imported:
            judgments = judgments.filter(origin=Judgment.Origin.HUMAN)
        by_criterion = self.policy.criterion and self.policy.kind == "preference"
        vote = KeyTextTransform(self.policy.criterion, "criteria") if by_criterion else F("choice")
        columns = read_arrays(
            judgments.annotate(vote=vote)
            .order_by("pair_id", "annotator_id")
            .values_list("pair_id", "annotator_id", "vote", "strength"),
            {"pair": "int", "annotator": "float", "vote": CHOICES, "strength": "float"},
        )
        in_chunk = np.isin(columns["pair"], pair_ids, assume_unique=False)
        table = np.column_stack(
            [columns["pair"], columns["annotator"], as_float(columns["vote"]), columns["strength"]]
        )[in_chunk].astype(np.float64)
        excluded = self._excluded_mask(table[:, 1])
        self.judgments_excluded += int(excluded.sum())
        return table[~excluded]

    def chunk_settled(self, pair_ids: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The pairs of the chunk (sorted ids) a lead settled: their indices in the chunk and the lead's
        outcome codes. Read by the range of pair ids, like the votes."""
        columns = read_arrays(
            Adjudication.objects.filter(pair__gte=int(pair_ids[0]), pair__lte=int(pair_ids[-1]))
            .order_by("pair_id")
            .values_list("pair_id", "label"),
            {"pair": "int", "label": CHOICES},
        )
        position = np.minimum(np.searchsorted(pair_ids, columns["pair"]), pair_ids.size - 1)
        in_chunk = pair_ids[position] == columns["pair"]
        return position[in_chunk], columns["label"][in_chunk].astype(np.int64)

    def label_pass(self) -> Kept:
        if self.policy.min_gold_accuracy is not None or self.policy.label == "weighted":
            self._gold_figures()
        parts: list[Kept] = []
        for chunk in self._pair_chunks():
            table = self.chunk_votes(chunk[:, 0])
            parts.append(self._label_chunk(chunk, table))
            self.pairs_seen += chunk.shape[0]
            self.progress(0.5 * self.pairs_seen / max(self.pair_total, 1))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return Kept(empty, empty, empty, empty, empty, empty, np.empty(0), np.empty(0), np.empty(0))
        return Kept(*(np.concatenate([getattr(part, name.name) for part in parts]) for name in fields(Kept)))

    def _label_chunk(self, chunk: NDArray[np.int64], table: NDArray[np.float64]) -> Kept:
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
        settled, outcomes = self.chunk_settled(pair_ids)
        self.settled_seen += int(settled.size)
        if self.policy.kind == "raw":
            keep = votes.votes > 0
            self.reasons[aggregation.Reason.NO_VOTES] += int((~keep).sum())
            zeros = np.zeros(int(keep.sum()))
            return Kept(
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
        if self.policy.settles_labels and settled.size:
            from_votes = labels.label[settled]
            labels = aggregation.settle_labels(
                labels,
                votes,
                settled=settled,
                outcomes=outcomes,
                ties=self.policy.ties,
                both_bad=self.policy.both_bad,
            )
            self.settled_exported += int(np.count_nonzero(labels.label[settled] != aggregation.NO_LABEL))
            self.settled_changed += int(np.count_nonzero(labels.label[settled] != from_votes))
        self.reasons += np.bincount(labels.reason, minlength=len(aggregation.Reason))
        keep = labels.reason == aggregation.Reason.KEPT
        return Kept(
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

    def counts(self, *, kept: Kept, writer: DatasetWriter, conversational: bool) -> dict[str, Any]:
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
            # Who, so that a run on this export is gated by the figures of the annotators it counted.
            "excluded_annotators": sorted(self.excluded),
            "dropped": reasons,
            # Pairs a lead settled: how many the export considered, and, when their labels were used, how
            # many have rows and how many of those labels differ from what the votes gave.
            "adjudicated": {
                "pairs": int(self.settled_seen),
                "used": self.policy.settles_labels,
                "exported": int(self.settled_exported),
                "changed": int(self.settled_changed),
            },
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
