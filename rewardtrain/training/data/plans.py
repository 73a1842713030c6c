"""Padding plans: how a micro-batch's sequences are chunked and padded for the forward passes, with
shared prompts run once for decoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rewardtrain.training.data.dataset import PairDataset


@dataclass
class Chunk:
    """One forward pass: ``input_ids`` and masks for the plan's sequences at ``rows``, padded on the right.
    In a shared-prefix group, ``prefix_rows`` gives each row's prefix (a row of the group's prefix arrays)."""

    rows: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None = None
    prefix_rows: np.ndarray | None = None


@dataclass
class PrefixGroup:
    """Prompts run once (``input_ids``, padded on the right), then the continuations in ``chunks``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    lengths: np.ndarray
    chunks: list[Chunk]


@dataclass
class SequencePlan:
    """How to score a list of sequences: whole sequences in ``chunks`` and, for decoders sharing prompts,
    ``prefix_groups``. Rewards come back in the order of ``sequence_ids``."""

    sequence_ids: np.ndarray
    chunks: list[Chunk]
    prefix_groups: list[PrefixGroup]
    real_tokens: int
    processed_tokens: int


def partition_lengths(lengths: Sequence[int], overhead: int) -> list[int]:
    """Split ascending ``lengths`` into contiguous chunks minimising padded tokens plus ``overhead`` per
    chunk; returns the end index of each chunk."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    best = np.zeros(n + 1, dtype=np.float64)
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(end)
        costs = best[:end] + (end - starts) * lengths[end - 1] + overhead
        choice = int(np.argmin(costs))
        best[end], cut[end] = costs[choice], choice
    ends = []
    end = n
    while end > 0:
        ends.append(end)
        end = int(cut[end])
    return ends[::-1]


def _pad(rows: list[np.ndarray], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def plan_sequences(
    dataset: PairDataset,
    sequence_ids: np.ndarray,
    *,
    pad_token_id: int,
    shared_prefix: bool,
    chunk_overhead_tokens: int,
) -> SequencePlan:
    """Chunk the sequences by length so that little padding is computed; with ``shared_prefix`` (decoders),
    each distinct prompt is one row of a prefix group and its responses continue from it."""
    sequence_ids = np.asarray(sequence_ids, dtype=np.int64)
    prefix_of = dataset.sequence_prefix[sequence_ids]
    prefix_lengths = dataset.prefix_lengths
    continuation_lengths = np.fromiter(
        (len(dataset.continuations[s]) for s in sequence_ids), dtype=np.int64, count=len(sequence_ids)
    )
    shareable = (prefix_lengths[prefix_of] > 0) & (continuation_lengths > 0) if shared_prefix else None
    whole_rows = np.flatnonzero(~shareable) if shared_prefix else np.arange(len(sequence_ids))

    chunks: list[Chunk] = []
    real = processed = 0
    if len(whole_rows):
        lengths = prefix_lengths[prefix_of[whole_rows]] + continuation_lengths[whole_rows]
        order = whole_rows[np.argsort(lengths, kind="stable")]
        sorted_lengths = np.sort(lengths, kind="stable")
        start = 0
        for end in partition_lengths(sorted_lengths, chunk_overhead_tokens):
            rows = order[start:end]
            tokens = [
                np.concatenate([dataset.prefixes[prefix_of[r]], dataset.continuations[sequence_ids[r]]])
                for r in rows
            ]
            ids, mask = _pad(tokens, pad_token_id)
            types = None
            if dataset.uses_token_types:
                types = np.zeros_like(ids)
                for i, r in enumerate(rows):
                    split = len(dataset.prefixes[prefix_of[r]])
                    types[i, :split] = dataset.prefix_token_type
                    types[i, split : len(tokens[i])] = dataset.continuation_token_type
            chunks.append(Chunk(rows, ids, mask, types))
            real += int(mask.sum())
            processed += mask.size
            start = end

    groups: list[PrefixGroup] = []
    if shared_prefix and shareable.any():
        shared_rows = np.flatnonzero(shareable)
        distinct = np.unique(prefix_of[shared_rows])
        distinct = distinct[np.argsort(prefix_lengths[distinct], kind="stable")]
        start = 0
        for end in partition_lengths(prefix_lengths[distinct], chunk_overhead_tokens):
            members = distinct[start:end]
            start = end
            prefix_ids, prefix_mask = _pad([dataset.prefixes[p] for p in members], pad_token_id)
            real += int(prefix_mask.sum())
            processed += prefix_mask.size
            row_of_prefix = {int(p): i for i, p in enumerate(members)}
            rows = shared_rows[np.isin(prefix_of[shared_rows], members)]
            rows = rows[np.argsort(continuation_lengths[rows], kind="stable")]
            group_chunks = []
            chunk_start = 0
            for chunk_end in partition_lengths(continuation_lengths[rows], chunk_overhead_tokens):
                chunk_rows = rows[chunk_start:chunk_end]
                chunk_start = chunk_end
                ids, mask = _pad([dataset.continuations[sequence_ids[r]] for r in chunk_rows], pad_token_id)
                prefix_rows = np.array([row_of_prefix[int(prefix_of[r])] for r in chunk_rows], dtype=np.int64)
                group_chunks.append(Chunk(chunk_rows, ids, mask, None, prefix_rows))
                real += int(mask.sum())
                processed += mask.size
            groups.append(PrefixGroup(prefix_ids, prefix_mask, prefix_mask.sum(axis=1), group_chunks))
    return SequencePlan(sequence_ids, chunks, groups, real, processed)


def plan_pairs(
    dataset: PairDataset,
    pair_indices: np.ndarray,
    *,
    pad_token_id: int,
    shared_prefix: bool,
    deduplicate: bool,
    chunk_overhead_tokens: int,
) -> tuple[SequencePlan, np.ndarray, np.ndarray]:
    """A micro-batch's plan and, per pair, the positions of its chosen and rejected rewards in the plan."""
    pair_indices = np.asarray(pair_indices, dtype=np.int64)
    chosen, rejected = dataset.chosen[pair_indices], dataset.rejected[pair_indices]
    if deduplicate:
        sequence_ids, inverse = np.unique(np.concatenate([chosen, rejected]), return_inverse=True)
        chosen_rows, rejected_rows = inverse[: len(chosen)], inverse[len(chosen) :]
    else:
        sequence_ids = np.stack([chosen, rejected], axis=1).reshape(-1)
        chosen_rows = np.arange(0, 2 * len(chosen), 2)
        rejected_rows = chosen_rows + 1
    plan = plan_sequences(
        dataset,
        sequence_ids,
        pad_token_id=pad_token_id,
        shared_prefix=shared_prefix,
        chunk_overhead_tokens=chunk_overhead_tokens,
    )
    return plan, chosen_rows, rejected_rows
