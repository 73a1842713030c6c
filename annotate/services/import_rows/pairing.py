"""Which pairs a prompt's candidate responses make: every couple (less those of one system with
``cross_system_only``), or ``pairs_per_prompt`` of them drawn at random."""

from __future__ import annotations

import itertools
import random
from bisect import bisect_right
from collections.abc import Iterator, Sequence

from annotate.services.import_rows.records import ImportOptions, PairRecord, ResponseRecord


class Couples(Sequence):
    """The couples of a prompt's responses that may be paired, in the order of ``itertools.combinations``
    over the responses sorted by id, without making them: a row of a thousand responses has half a million,
    of which random pairing draws a few. ``random.sample`` reads only ``len()`` and indexing, so it draws
    from this the very couples it drew from the list this replaces, and a seed keeps its pairs."""

    def __init__(self, responses: list[ResponseRecord], *, cross_system_only: bool) -> None:
        self.ordered = sorted(responses, key=lambda response: response.external_id)
        self.cross_system_only = cross_system_only
        count = len(self.ordered)
        # Where each system's responses stand, to leave out couples within one system.
        self.positions: dict[str, list[int]] = {}
        if cross_system_only:
            for index, response in enumerate(self.ordered):
                if response.system:
                    self.positions.setdefault(response.system, []).append(index)
        # starts[i]: the index of the first couple whose first response is ordered[i].
        self.starts = list(
            itertools.accumulate(
                (count - 1 - first - self._same_system_after(first, count - 1) for first in range(count)),
                initial=0,
            )
        )

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> tuple[ResponseRecord, ResponseRecord]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("couple index out of range")
        first = bisect_right(self.starts, index) - 1
        wanted = index - self.starts[first] + 1  # the how-manyth response after the first one it pairs with
        # The smallest second response with ``wanted`` pairable responses up to it (counting itself).
        low, high = first + wanted, len(self.ordered) - 1
        while low < high:
            middle = (low + high) // 2
            if middle - first - self._same_system_after(first, middle) >= wanted:
                high = middle
            else:
                low = middle + 1
        return self.ordered[first], self.ordered[low]

    def __iter__(self) -> Iterator[tuple[ResponseRecord, ResponseRecord]]:
        for first, second in itertools.combinations(self.ordered, 2):
            if not (self.cross_system_only and first.system and first.system == second.system):
                yield first, second

    def _same_system_after(self, first: int, last: int) -> int:
        """How many responses after ``ordered[first]``, up to ``ordered[last]``, it may not be paired with."""
        positions = self.positions.get(self.ordered[first].system) if self.positions else None
        if not positions:
            return 0
        return bisect_right(positions, last) - bisect_right(positions, first)


def pair_count(couples: Couples, options: ImportOptions) -> int:
    """How many pairs ``generate_pairs`` makes of ``couples``, without making them."""
    if options.pairing == "random":
        return min(len(couples), options.pairs_per_prompt)
    return len(couples)


def generate_pairs(prompt_key: str, couples: Couples, options: ImportOptions) -> list[PairRecord]:
    """All the couples as pairs, or ``pairs_per_prompt`` of them drawn at random; the draw depends only on the
    seed and the prompt, so the same file and seed give the same pairs in any order or chunking."""
    chosen: Sequence[tuple[ResponseRecord, ResponseRecord]] | Iterator = couples
    if options.pairing == "random" and len(couples) > options.pairs_per_prompt:
        generator = random.Random(f"{options.seed}:{prompt_key}")
        chosen = generator.sample(couples, options.pairs_per_prompt)
    pairs = []
    generator = random.Random(f"{options.seed}:{prompt_key}:order")
    for first, second in chosen:
        # Which response is A carries no meaning (the screen side is drawn per assignment), but a fixed
        # "earlier id is A" would leak the id order into every A/B statistic.
        if generator.random() < 0.5:
            first, second = second, first
        pairs.append(PairRecord(a=first.external_id, b=second.external_id))
    return pairs
