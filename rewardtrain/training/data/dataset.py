"""Preference rows to a ``PairDataset``: parsed, tokenized, truncated and interned."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardtrain.training.data.layout import SequenceLayout, pair_tokens, render_pairs
from rewardtrain.training.data.rows import optional_fields, parse_row
from rewardtrain.training.data.truncation import TruncationReport, truncate_sequence
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
    encoder_layout: str = "pair",
) -> PairDataset:
    """Tokenize, truncate and intern preference rows. Raises DataError naming the first bad row.

    ``kind`` is ``"encoder"`` or ``"decoder"``; ``encoder_layout`` (encoders) is ``"pair"`` or ``"single"``
    (``SequenceLayout.probe``). Conversational rows need a chat template on the tokenizer
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
    layout = SequenceLayout.probe(tokenizer, kind, append_eos=append_eos, encoder_layout=encoder_layout)
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

    def intern_prefix(prefix: list[int]) -> int:
        key = tuple(prefix)
        position = prefix_index.get(key)
        if position is None:
            position = prefix_index[key] = len(prefixes)
            prefixes.append(np.asarray(prefix, dtype=np.int64))
        return position

    tokens = pair_tokens(pair_texts, tokenizer, layout)
    for index, ((prefix, keep_head), *responses) in enumerate(tokens):
        (chosen, _), (rejected, _) = responses
        report.longest_sequence_before = max(
            report.longest_sequence_before, len(prefix) + max(len(chosen), len(rejected))
        )
        report.tokens_before += 2 * len(prefix) + len(chosen) + len(rejected)
        sequences, prompt_cut, response_cut = [], False, False
        for continuation, keep_tail in responses:
            # Each response alone, as scoring fits it (see truncate_sequence): the chosen and the rejected
            # response may keep different lengths of a long prompt.
            kept_prefix, kept, prefix_was_cut, continuation_was_cut = truncate_sequence(
                prefix,
                continuation,
                max_length=max_length,
                prompt_floor=prompt_floor,
                keep_head=keep_head,
                keep_tail=keep_tail,
            )
            if not kept_prefix and not kept:
                raise DataError(index, "a response and its prompt are both empty: there is no token to score")
            report.tokens_after += len(kept_prefix) + len(kept)
            prompt_cut |= prefix_was_cut
            response_cut |= continuation_was_cut
            sequences.append(intern_sequence(intern_prefix(kept_prefix), kept))
        report.prompt_truncated += prompt_cut
        report.response_truncated += response_cut
        report.identical_pairs += sequences[0] == sequences[1]
        chosen_index[index], rejected_index[index] = sequences

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
