"""Preference rows to a ``PairDataset``: parsed, tokenized, truncated and interned."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardtrain.training.data.layout import SequenceLayout, pair_tokens, render_pairs
from rewardtrain.training.data.rows import optional_fields, parse_row
from rewardtrain.training.data.truncation import TruncationReport, truncate_pair
from rewardtrain.training.errors import DataError


@dataclass
class PairDataset:
    """Tokenized, truncated, interned pairs. Index arrays are aligned with the input rows."""

    prefixes: list[np.ndarray]
    continuations: list[np.ndarray]
    sequence_prefix: np.ndarray  # prefix index of each sequence
    chosen: np.ndarray  # sequence index of each pair's chosen response
    rejected: np.ndarray
    prompt_group: np.ndarray  # the same number for pairs on the same prompt (before truncation)
    margin: np.ndarray  # float32, 0 where absent
    vote_share: np.ndarray  # float32, NaN where absent
    weight: np.ndarray  # float32, 1 where absent
    agreement: list[Any]
    has_margin: bool
    has_vote_share: bool
    has_weight: bool
    prefix_token_type: int
    continuation_token_type: int
    uses_token_types: bool
    report: TruncationReport = field(default_factory=TruncationReport)

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def prefix_lengths(self) -> np.ndarray:
        return np.fromiter((len(p) for p in self.prefixes), dtype=np.int64, count=len(self.prefixes))

    @property
    def continuation_lengths(self) -> np.ndarray:
        return np.fromiter(
            (len(c) for c in self.continuations), dtype=np.int64, count=len(self.continuations)
        )

    @property
    def sequence_lengths(self) -> np.ndarray:
        return self.prefix_lengths[self.sequence_prefix] + self.continuation_lengths


def build_pair_dataset(
    rows: Iterable[Mapping[str, Any]],
    tokenizer,
    *,
    kind: str,
    max_length: int,
    prompt_floor: int | None = None,
    append_eos: bool = True,
) -> PairDataset:
    """Tokenize, truncate and intern preference rows. Raises DataError naming the first bad row.

    ``kind`` is ``"encoder"`` or ``"decoder"``. Conversational rows need a chat template on the tokenizer
    (see ``install_default_chat_template``).
    """
    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    prompt_floor = prompt_floor if prompt_floor is not None else max(1, max_length // 4)
    rows = list(rows)
    parsed = [parse_row(index, row) for index, row in enumerate(rows)]
    if any(row.conversational for row in parsed) and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            None, "conversational rows need a chat template: call install_default_chat_template first"
        )
    layout = SequenceLayout.probe(tokenizer, kind, append_eos=append_eos)
    pair_texts, pair_group = render_pairs(parsed, tokenizer)

    report = TruncationReport(pairs=len(parsed), max_length=max_length)
    prefix_index: dict[tuple[int, ...], int] = {}
    sequence_index: dict[tuple[int, tuple[int, ...]], int] = {}
    prefixes: list[np.ndarray] = []
    continuations: list[np.ndarray] = []
    sequence_prefix: list[int] = []
    chosen_index = np.empty(len(parsed), dtype=np.int64)
    rejected_index = np.empty(len(parsed), dtype=np.int64)

    def intern_sequence(prefix_position: int, continuation: list[int]) -> int:
        key = (prefix_position, tuple(continuation))
        position = sequence_index.get(key)
        if position is None:
            position = sequence_index[key] = len(continuations)
            continuations.append(np.asarray(continuation, dtype=np.int64))
            sequence_prefix.append(prefix_position)
        return position

    tokens = pair_tokens(pair_texts, tokenizer, layout)
    for index, ((prefix, keep_head), (chosen, chosen_tail), (rejected, rejected_tail)) in enumerate(tokens):
        report.longest_sequence_before = max(
            report.longest_sequence_before, len(prefix) + max(len(chosen), len(rejected))
        )
        report.tokens_before += 2 * len(prefix) + len(chosen) + len(rejected)
        prefix, chosen, rejected, prompt_cut, response_cut = truncate_pair(
            prefix,
            chosen,
            rejected,
            max_length=max_length,
            prompt_floor=prompt_floor,
            keep_head=keep_head,
            keep_tail=(chosen_tail, rejected_tail),
        )
        if not prefix and (not chosen or not rejected):
            raise DataError(index, "a response and its prompt are both empty: there is no token to score")
        report.tokens_after += 2 * len(prefix) + len(chosen) + len(rejected)
        report.prompt_truncated += prompt_cut
        report.response_truncated += response_cut
        report.identical_pairs += chosen == rejected
        prefix_key_tokens = tuple(prefix)
        prefix_position = prefix_index.get(prefix_key_tokens)
        if prefix_position is None:
            prefix_position = prefix_index[prefix_key_tokens] = len(prefixes)
            prefixes.append(np.asarray(prefix, dtype=np.int64))
        chosen_index[index] = intern_sequence(prefix_position, chosen)
        rejected_index[index] = intern_sequence(prefix_position, rejected)

    return PairDataset(
        prefixes=prefixes,
        continuations=continuations,
        sequence_prefix=np.asarray(sequence_prefix, dtype=np.int64),
        chosen=chosen_index,
        rejected=rejected_index,
        prompt_group=pair_group,
        **optional_fields(rows),
        prefix_token_type=layout.prefix_token_type,
        continuation_token_type=layout.continuation_token_type,
        uses_token_types=layout.uses_token_types,
        report=report,
    )
