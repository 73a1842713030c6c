"""Bootstrap machinery: exact multinomial resampling of the outcome table, and rounds shared out in
seed-determined chunks."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

from annotate.stats.ratings.identifiability import SEPARATION_L2
from annotate.stats.ratings.outcomes import FloatArray, IntArray, Pairs

# Bootstrap rounds are drawn and fitted in chunks, each with its own child random generator, so the result
# depends only on the seed and not on how many worker threads share the chunks.
BOOTSTRAP_CHUNK_ROUNDS = 50


class MultinomialSampler:
    """Exact multinomial(total, probabilities) draws, cheaper than ``Generator.multinomial`` (bench/README.md).

    Independent Poisson counts are, given their sum ``s``, multinomial(``s``, probabilities); adding an
    independent multinomial(``total - s``) draw makes them multinomial(``total``) for every ``s <= total``.
    The Poisson mean sits two standard deviations below ``total`` so the sum rarely exceeds it (such rows are
    redrawn, which only conditions on ``s`` and so keeps the result exact), and the remaining couple of
    thousand items are drawn one by one from Walker's alias table. A Poisson variate is cheaper than the
    sequential binomial numpy's multinomial draws for every cell.
    """

    def __init__(self, total: int, probabilities: FloatArray) -> None:
        self.total = int(total)
        self.cells = probabilities.size
        normalised = probabilities / probabilities.sum()
        self.poisson_means = max(self.total - 2.0 * math.sqrt(self.total), 0.0) * normalised
        self.keep_probability, self.alias = _alias_table(normalised)

    def draw(self, rng: np.random.Generator, rounds: int) -> NDArray[np.int64]:
        counts = rng.poisson(self.poisson_means, size=(rounds, self.cells))
        sums = counts.sum(axis=1)
        over = np.flatnonzero(sums > self.total)
        while over.size:
            counts[over] = rng.poisson(self.poisson_means, size=(over.size, self.cells))
            sums[over] = counts[over].sum(axis=1)
            over = over[sums[over] > self.total]
        rows = np.repeat(np.arange(rounds, dtype=np.int64), self.total - sums)
        column = rng.integers(0, self.cells, size=rows.size)
        column = np.where(rng.random(rows.size) < self.keep_probability[column], column, self.alias[column])
        counts += np.bincount(rows * self.cells + column, minlength=rounds * self.cells).reshape(rounds, -1)
        return counts


def _alias_table(probabilities: FloatArray) -> tuple[FloatArray, IntArray]:
    """Walker's alias method (Vose's construction): pick a column uniformly, keep it with its keep
    probability, otherwise take its alias. Every draw is then O(1)."""
    size = probabilities.size
    scaled = probabilities * size
    keep_probability = np.ones(size)
    alias = np.arange(size, dtype=np.int64)
    small = [int(index) for index in np.flatnonzero(scaled < 1.0)]
    large = [int(index) for index in np.flatnonzero(scaled >= 1.0)]
    scaled_list = scaled.tolist()
    while small and large:
        underfull, overfull = small.pop(), large.pop()
        keep_probability[underfull] = scaled_list[underfull]
        alias[underfull] = overfull
        scaled_list[overfull] += scaled_list[underfull] - 1.0
        (small if scaled_list[overfull] < 1.0 else large).append(overfull)
    # Whatever is left is 1 up to rounding, and keeps itself.
    return keep_probability, alias


@dataclass(frozen=True)
class Cells:
    """Deduplicated outcome rows (pair, outcome) with their counts: what the bootstrap resamples."""

    pair: IntArray
    kind: IntArray  # 0: first wins, 1: second wins, 2: tie
    count: FloatArray
    mean_weight: FloatArray

    @classmethod
    def from_pairs(cls, pairs: Pairs) -> Cells:
        pair_list, kind_list, count_list, weight_list = [], [], [], []
        columns = (
            (pairs.first_win_counts, pairs.first_wins),
            (pairs.second_win_counts, pairs.second_wins),
            (pairs.tie_counts, pairs.ties),
        )
        for kind, (counts, weights) in enumerate(columns):
            present = np.flatnonzero(counts > 0)
            pair_list.append(present)
            kind_list.append(np.full(present.size, kind, dtype=np.int64))
            count_list.append(counts[present])
            # Battles of one cell are resampled with the cell's mean weight: exact when weights are constant
            # within a cell (e.g. no weights), and it keeps the expected table in any case.
            weight_list.append(weights[present] / counts[present])
        return cls(
            pair=np.concatenate(pair_list).astype(np.int64),
            kind=np.concatenate(kind_list),
            count=np.concatenate(count_list),
            mean_weight=np.concatenate(weight_list),
        )

    def sampler(self) -> MultinomialSampler:
        """Draws of cell counts adding up to the data's number of battles."""
        return MultinomialSampler(round(float(self.count.sum())), self.count)

    def score_matrix(self, pairs: Pairs) -> csr_matrix:
        """Sparse (n*n) x cells map from cell counts to a flattened score matrix (wins of the row system plus
        half the ties): a win adds to one entry, a tie half to two. One sparse product then scatters a whole
        chunk of rounds, several times faster than fancy-index assignment."""
        n = pairs.n_systems
        first, second = pairs.first[self.pair], pairs.second[self.pair]
        tied = np.flatnonzero(self.kind == 2)
        source = np.concatenate([np.arange(self.kind.size), tied])
        entry = np.where(self.kind == 1, second * n + first, first * n + second)
        entry = np.concatenate([entry, second[tied] * n + first[tied]])
        share = np.where(self.kind == 2, 0.5, 1.0)[source] * self.mean_weight[source]
        return csr_matrix((share, (entry, source)), shape=(n * n, self.kind.size))

    def tables(self, counts: NDArray[np.int64], n_pairs: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Per-round (first wins, second wins, ties) arrays, rounds x pairs, from resampled cell counts."""
        values = counts * self.mean_weight
        columns = []
        for kind in range(3):
            column = np.zeros((counts.shape[0], n_pairs))
            selected = self.kind == kind
            column[:, self.pair[selected]] = values[:, selected]
            columns.append(column)
        return columns[0], columns[1], columns[2]


def run_chunks(
    seed: int | None, rounds: int, workers: int | None, work: Callable[[np.random.Generator, int], Any]
) -> list[Any]:
    chunk_sizes = [
        min(BOOTSTRAP_CHUNK_ROUNDS, rounds - start) for start in range(0, rounds, BOOTSTRAP_CHUNK_ROUNDS)
    ]
    generators = [
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(len(chunk_sizes))
    ]
    worker_count = min(len(chunk_sizes), workers if workers is not None else (os.cpu_count() or 1))
    if worker_count <= 1:
        return [work(generator, size) for generator, size in zip(generators, chunk_sizes, strict=True)]
    # numpy's random generators and ufuncs release the GIL, so threads can share the cores.
    with ThreadPoolExecutor(max_workers=worker_count) as pool:
        return list(pool.map(work, generators, chunk_sizes))


def bootstrap_outputs(outputs: list[tuple[FloatArray, int, int]]) -> tuple[FloatArray, list[str]]:
    theta = np.concatenate([output[0] for output in outputs])
    regularised = sum(output[1] for output in outputs)
    failed = sum(output[2] for output in outputs)
    notes = []
    if regularised:
        notes.append(
            f"{regularised} bootstrap rounds resampled separable data and were fitted with L2 "
            f"regularisation {SEPARATION_L2}"
        )
    if failed:
        notes.append(f"{failed} bootstrap rounds did not converge; the intervals are approximate")
    return theta, notes
