"""One epoch's micro-batches: pairs grouped by prompt and by length, in an order fixed by (seed, epoch)."""

from __future__ import annotations

import numpy as np

from rewardtrain.training.data.dataset import PairDataset


def length_grouped_batches(
    dataset: PairDataset, batch_size: int, *, seed: int, epoch: int, megabatch_factor: int = 16
) -> list[np.ndarray]:
    """One epoch's micro-batches of pair indices, the same for the same (seed, epoch).

    Pairs on the same prompt travel together, as in InstructGPT's reward-model training: the prompt groups
    are shuffled, gathered into megabatches of about ``batch_size * megabatch_factor`` pairs, and sorted
    inside each by their pairs' length, so a batch holds pairs of similar length and a response compared
    with several others is scored once for all of its pairs (``plan_pairs``). The batches' order is shuffled
    again; a group larger than a batch spans consecutive batches.
    """
    count = len(dataset)
    if count == 0:
        return []
    rng = np.random.default_rng([seed, epoch])
    lengths = dataset.sequence_lengths
    pair_longest = np.maximum(lengths[dataset.chosen], lengths[dataset.rejected])
    groups = dataset.prompt_group
    # Pairs in a random order, then regrouped by prompt in a random order of prompts.
    order = rng.permutation(count)
    group_rank = rng.permutation(int(groups.max()) + 1)
    order = order[np.argsort(group_rank[groups[order]], kind="stable")]
    group_of = groups[order]
    starts = np.flatnonzero(np.r_[True, group_of[1:] != group_of[:-1]])
    ends = np.r_[starts[1:], count]
    group_length = np.array([pair_longest[order[a:b]].mean() for a, b in zip(starts, ends, strict=True)])
    batches: list[np.ndarray] = []
    size = batch_size * megabatch_factor
    first = 0
    while first < len(starts):
        last = first
        while last < len(starts) and ends[last] - starts[first] < size:
            last += 1
        last = max(last, first + 1)
        members = np.arange(first, last)
        members = members[np.argsort(group_length[members], kind="stable")]
        batches.extend(_pack_groups([order[starts[g] : ends[g]] for g in members], batch_size))
        first = last
    permutation = rng.permutation(len(batches))
    return [batches[i] for i in permutation]


def _pack_groups(groups: list[np.ndarray], batch_size: int, window: int = 16) -> list[np.ndarray]:
    """Cut length-sorted prompt groups into batches of ``batch_size`` pairs, splitting as few groups as
    possible: when the next group does not fit in what is left of a batch, one of the next ``window``
    groups that fits whole goes first; only when none does is the group split."""
    queue = list(groups)
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    space = batch_size
    while queue:
        position = 0
        if len(queue[0]) > space:
            position = next((i for i in range(1, min(window, len(queue))) if len(queue[i]) <= space), 0)
        group = queue.pop(position)
        if len(group) > space:
            queue.insert(0, group[space:])
            group = group[:space]
        current.append(group)
        space -= len(group)
        if space == 0:
            batches.append(np.concatenate(current))
            current, space = [], batch_size
    if current:
        batches.append(np.concatenate(current))
    return batches
