"""Preference rows to tokenized pairs, the truncation policy, and length-grouped batches.

Rows follow TRL's preference format: dicts with ``"prompt"``, ``"chosen"`` and ``"rejected"``, each either text
or a conversation (a list of ``{"role", "content"}`` messages); without ``"prompt"`` the conversations' common
leading messages are the prompt. Optional per-row fields: ``"margin"`` (a number subtracted from the reward
difference), ``"vote_share"`` (the share of annotators who preferred the chosen response, 0.5 for a tie),
``"weight"`` (>= 0), ``"agreement"`` (a number, 1 meaning unanimous, or a bucket name) for evaluation.

Every sequence is a *prefix* (the prompt, with its leading special tokens) followed by a *continuation* (the
response, with its trailing special tokens):

- conversations go through the tokenizer's chat template (``install_default_chat_template`` gives one to a
  tokenizer without); the prefix is the prompt rendered with the generation prompt;
- text rows: encoders see ``[CLS] prompt [SEP] response [SEP]`` (the tokenizer's own pair layout, with token
  types); decoders see ``BOS prompt response EOS``.

Truncation (``max_length``), decided per pair so chosen and rejected always see the same prompt: when the
prompt and the longer response do not fit, the prompt loses tokens from its start (its leading special tokens
stay), down to ``prompt_floor`` tokens; only then are responses cut, from their end (their trailing special
tokens stay). Nothing is dropped: every cut is counted in ``TruncationReport``.

Sequences are interned: a prompt + response that occurs in several pairs (one prompt, several systems'
responses compared pairwise) is stored, and per micro-batch scored, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rewardtrain.training.errors import DataError


@dataclass
class TruncationReport:
    pairs: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0
    identical_pairs: int = 0
    dropped: int = 0  # always 0: the policy truncates, it never drops
    max_length: int = 0
    longest_sequence_before: int = 0
    tokens_before: int = 0
    tokens_after: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


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


# --- rows -------------------------------------------------------------------------------------------------


def _is_conversation(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(m, Mapping) and "role" in m and "content" in m for m in value
    )


def _check_messages(index: int, name: str, value: Any) -> list[dict[str, str]]:
    if not _is_conversation(value):
        raise DataError(index, f"'{name}' must be text or a list of {{role, content}} messages")
    messages = []
    for message in value:
        if not isinstance(message["role"], str) or not isinstance(message["content"], str):
            raise DataError(index, f"'{name}': role and content must be strings")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _optional_number(
    index: int, row: Mapping, name: str, low: float | None = None, high: float | None = None
):
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(index, f"'{name}' must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise DataError(index, f"'{name}' must be between {low} and {high}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Row:
    conversational: bool
    prompt: Any  # str or tuple of messages (hashable)
    chosen: Any
    rejected: Any


def _freeze(messages: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


def _thaw(messages: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


def _parse_row(index: int, row: Any) -> _Row:
    if not isinstance(row, Mapping):
        raise DataError(index, f"must be an object, got {type(row).__name__}")
    for name in ("chosen", "rejected"):
        if name not in row or row[name] is None:
            raise DataError(index, f"'{name}' is missing")
    prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
    conversational = any(_is_conversation(v) and not isinstance(v, str) for v in (prompt, chosen, rejected))
    if not conversational:
        for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
            if value is not None and not isinstance(value, str):
                raise DataError(index, f"'{name}' must be text or a list of {{role, content}} messages")
        return _Row(False, prompt or "", chosen, rejected)

    def as_messages(name: str, value: Any, role: str) -> list[dict[str, str]]:
        if isinstance(value, str):
            return [{"role": role, "content": value}]
        return _check_messages(index, name, value)

    chosen_messages = as_messages("chosen", chosen, "assistant")
    rejected_messages = as_messages("rejected", rejected, "assistant")
    if prompt is None:
        shared = 0
        while (
            shared < min(len(chosen_messages), len(rejected_messages)) - 1
            and chosen_messages[shared] == rejected_messages[shared]
        ):
            shared += 1
        prompt_messages = chosen_messages[:shared]
        chosen_messages, rejected_messages = chosen_messages[shared:], rejected_messages[shared:]
    else:
        prompt_messages = as_messages("prompt", prompt, "user")
    return _Row(True, _freeze(prompt_messages), _freeze(chosen_messages), _freeze(rejected_messages))


# --- tokenizer layout ---------------------------------------------------------------------------------------


def install_default_chat_template(tokenizer, kind: str) -> bool:
    """Give a tokenizer without a chat template a plain one (``role: content`` turns), closed by the model's
    separator token, so conversational rows can be rendered and the saved model documents its input format.
    Returns whether one was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    head, _ = _single_layout(tokenizer, kind)
    head_text = tokenizer.decode(head) if head else ""
    end = (tokenizer.sep_token if kind == "encoder" else tokenizer.eos_token) or ""
    for literal in (head_text, end):
        if "{" in literal or "}" in literal:
            raise ValueError(f"special token {literal!r} cannot be written into a chat template")
    tokenizer.chat_template = (
        head_text
        + "{%- for message in messages -%}"
        + "{{ message['role'] }}: {{ message['content'] }}"
        + end
        + "{%- if not loop.last %}\n{% endif -%}"
        + "{%- endfor -%}"
        + "{%- if add_generation_prompt %}\nassistant: {% endif -%}"
    )
    return True


def _single_layout(tokenizer, kind: str) -> tuple[list[int], list[int]]:
    """Special tokens a tokenizer puts around one text: (head, tail)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


@dataclass(frozen=True)
class SequenceLayout:
    """How the special tokens of plain-text rows are laid out, from probing the tokenizer."""

    head: tuple[int, ...]  # before the prompt
    middle: tuple[int, ...]  # between prompt and response (end of the prefix)
    tail: tuple[int, ...]  # after the response
    prefix_token_type: int
    continuation_token_type: int
    uses_token_types: bool

    @classmethod
    def probe(cls, tokenizer, kind: str, *, append_eos: bool) -> SequenceLayout:
        if kind == "encoder":
            encoding = tokenizer("a", "b", add_special_tokens=True)
            ids, sequence_ids = encoding["input_ids"], encoding.sequence_ids()
            types = encoding.get("token_type_ids") or [0] * len(ids)
            first = [i for i, s in enumerate(sequence_ids) if s == 0]
            second = [i for i, s in enumerate(sequence_ids) if s == 1]
            if not first or not second:
                raise ValueError("the tokenizer does not encode text pairs")
            return cls(
                head=tuple(ids[: first[0]]),
                middle=tuple(ids[first[-1] + 1 : second[0]]),
                tail=tuple(ids[second[-1] + 1 :]),
                prefix_token_type=int(types[first[0]]),
                continuation_token_type=int(types[second[0]]),
                uses_token_types="token_type_ids" in encoding and types[first[0]] != types[second[0]],
            )
        head, _ = _single_layout(tokenizer, kind)
        eos = tokenizer.eos_token_id
        tail = (eos,) if append_eos and eos is not None else ()
        return cls(tuple(head), (), tail, 0, 0, False)


def _move_trailing_spaces(prefix: str, continuation: str) -> tuple[str, str]:
    """Give the response the spaces the prompt ends with, so BPE tokenizers see ' word' as one token, as they
    do when the whole sequence is tokenized at once (as a pipeline does)."""
    stripped = prefix.rstrip(" ")
    return stripped, prefix[len(stripped) :] + continuation


def _common_prefix(first: str, second: str) -> str:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]


def _render_conversation(tokenizer, prompt: tuple, response: tuple) -> tuple[str, str]:
    prompt_messages, response_messages = _thaw(prompt), _thaw(response)
    if prompt_messages:
        prefix = tokenizer.apply_chat_template(prompt_messages, add_generation_prompt=True, tokenize=False)
    else:
        prefix = ""
    full = tokenizer.apply_chat_template(prompt_messages + response_messages, tokenize=False)
    if not full.startswith(prefix):
        # Some templates render the last prompt turn differently once a reply follows; share what is shared.
        prefix = _common_prefix(prefix, full)
    return _move_trailing_spaces(prefix, full[len(prefix) :])


def _leading_specials(ids: Sequence[int], special: set[int]) -> int:
    count = 0
    while count < len(ids) and ids[count] in special:
        count += 1
    return count


def _closing_tokens(ids: Sequence[int], special: set[int], lookback: int = 4) -> int:
    """How many tokens close a response: from the first special token among its last ``lookback`` (an
    end-of-turn marker, possibly followed by a newline, as in ChatML) to its end."""
    for back in range(min(lookback, len(ids)), 0, -1):
        if ids[len(ids) - back] in special:
            return back
    return 0


# --- truncation --------------------------------------------------------------------------------------------


def cut_prompt(ids: Sequence[int], keep_head: int, keep: int) -> list[int]:
    """Keep the prompt's first ``keep_head`` tokens and its last ``keep - keep_head``."""
    ids = list(ids)
    if keep >= len(ids):
        return ids
    keep_head = min(keep_head, keep)
    rest = keep - keep_head
    return ids[:keep_head] + (ids[len(ids) - rest :] if rest > 0 else [])


def cut_response(ids: Sequence[int], keep_tail: int, keep: int) -> list[int]:
    """Keep the response's first ``keep - keep_tail`` tokens and its last ``keep_tail``."""
    ids = list(ids)
    if keep >= len(ids):
        return ids
    keep_tail = min(keep_tail, keep)
    return ids[: keep - keep_tail] + (ids[len(ids) - keep_tail :] if keep_tail else [])


def truncate_pair(
    prefix: Sequence[int],
    chosen: Sequence[int],
    rejected: Sequence[int],
    *,
    max_length: int,
    prompt_floor: int,
    keep_head: int = 0,
    keep_tail: tuple[int, int] = (0, 0),
) -> tuple[list[int], list[int], list[int], bool, bool]:
    """Fit ``prefix + chosen`` and ``prefix + rejected`` into ``max_length`` tokens.

    The prompt is cut from its start first, down to ``prompt_floor`` tokens (or its own length); the responses
    are cut from their end only when that is not enough. Returns the three token lists and whether the prompt
    and whether a response was cut.
    """
    longest = max(len(chosen), len(rejected))
    if len(prefix) + longest <= max_length:
        return list(prefix), list(chosen), list(rejected), False, False
    prompt_keep = min(len(prefix), max(max_length - longest, min(prompt_floor, max_length - 1)))
    prompt_keep = max(prompt_keep, min(keep_head, len(prefix)))
    response_budget = max(1, max_length - prompt_keep)
    new_prefix = cut_prompt(prefix, keep_head, prompt_keep)
    new_chosen = cut_response(chosen, keep_tail[0], response_budget)
    new_rejected = cut_response(rejected, keep_tail[1], response_budget)
    response_cut = len(new_chosen) < len(chosen) or len(new_rejected) < len(rejected)
    return new_prefix, new_chosen, new_rejected, len(new_prefix) < len(prefix), response_cut


# --- building the dataset ------------------------------------------------------------------------------------


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
    parsed = [_parse_row(index, row) for index, row in enumerate(rows)]
    if any(row.conversational for row in parsed) and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            None, "conversational rows need a chat template: call install_default_chat_template first"
        )
    layout = SequenceLayout.probe(tokenizer, kind, append_eos=append_eos)
    special = set(tokenizer.all_special_ids) | {
        token_id
        for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if token.special
    }

    # Texts first, so the tokenizer sees each distinct text once, in one batch.
    rendered: dict[tuple, tuple[str, str]] = {}
    pair_texts: list[tuple[tuple[bool, str], tuple[bool, str], tuple[bool, str]]] = []
    prompt_groups: dict[tuple, int] = {}
    pair_group = np.empty(len(parsed), dtype=np.int64)
    for index, row in enumerate(parsed):
        pair_group[index] = prompt_groups.setdefault((row.conversational, row.prompt), len(prompt_groups))
        pieces = []
        for response in (row.chosen, row.rejected):
            key = (row.conversational, row.prompt, response)
            if key not in rendered:
                if row.conversational:
                    rendered[key] = _render_conversation(tokenizer, row.prompt, response)
                else:
                    rendered[key] = _move_trailing_spaces(row.prompt, response)
            pieces.append(rendered[key])
        (chosen_prefix, chosen_text), (rejected_prefix, rejected_text) = pieces
        prefix = chosen_prefix
        if chosen_prefix != rejected_prefix:
            # A template rendered the prompt differently per response: share what is shared.
            prefix = _common_prefix(chosen_prefix, rejected_prefix)
            chosen_text = chosen_prefix[len(prefix) :] + chosen_text
            rejected_text = rejected_prefix[len(prefix) :] + rejected_text
        flag = row.conversational
        pair_texts.append(((flag, prefix), (flag, chosen_text), (flag, rejected_text)))
    prefix_text = {key: key[1] for key, _, _ in pair_texts}
    continuation_text = {key: key[1] for _, chosen, rejected in pair_texts for key in (chosen, rejected)}
    prefix_ids = _encode_all(tokenizer, prefix_text)
    continuation_ids = _encode_all(tokenizer, continuation_text)

    def prefix_tokens(key) -> tuple[list[int], int]:
        ids = prefix_ids[key]
        conversational = key[0]
        if conversational:
            return ids, _leading_specials(ids, special)
        return list(layout.head) + ids + list(layout.middle), len(layout.head)

    def continuation_tokens(key) -> tuple[list[int], int]:
        ids = continuation_ids[key]
        conversational = key[0]
        if conversational:
            return ids, _closing_tokens(ids, special)
        if layout.tail and ids[-len(layout.tail) :] == list(layout.tail):
            return ids, len(layout.tail)
        return ids + list(layout.tail), len(layout.tail)

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

    for index, (prefix_key, chosen_key, rejected_key) in enumerate(pair_texts):
        prefix, keep_head = prefix_tokens(prefix_key)
        chosen, chosen_tail = continuation_tokens(chosen_key)
        rejected, rejected_tail = continuation_tokens(rejected_key)
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

    margin = np.zeros(len(rows), dtype=np.float32)
    vote_share = np.full(len(rows), np.nan, dtype=np.float32)
    weight = np.ones(len(rows), dtype=np.float32)
    agreement: list[Any] = []
    for index, row in enumerate(rows):
        value = _optional_number(index, row, "margin")
        if value is not None:
            margin[index] = value
        value = _optional_number(index, row, "vote_share", 0.0, 1.0)
        if value is not None:
            vote_share[index] = value
        value = _optional_number(index, row, "weight", 0.0)
        if value is not None:
            weight[index] = value
        value = row.get("agreement")
        if value is not None and not isinstance(value, str):
            value = _optional_number(index, row, "agreement", 0.0, 1.0)
        agreement.append(value)

    return PairDataset(
        prefixes=prefixes,
        continuations=continuations,
        sequence_prefix=np.asarray(sequence_prefix, dtype=np.int64),
        chosen=chosen_index,
        rejected=rejected_index,
        prompt_group=pair_group,
        margin=margin,
        vote_share=vote_share,
        weight=weight,
        agreement=agreement,
        has_margin=any(row.get("margin") is not None for row in rows),
        has_vote_share=any(row.get("vote_share") is not None for row in rows),
        has_weight=any(row.get("weight") is not None for row in rows),
        prefix_token_type=layout.prefix_token_type,
        continuation_token_type=layout.continuation_token_type,
        uses_token_types=layout.uses_token_types,
        report=report,
    )


def _encode_all(tokenizer, texts: dict[Any, str]) -> dict[Any, list[int]]:
    keys = list(texts)
    if not keys:
        return {}
    encoded = tokenizer([texts[key] for key in keys], add_special_tokens=False, verbose=False)["input_ids"]
    return dict(zip(keys, (list(ids) for ids in encoded), strict=True))


# --- batches -----------------------------------------------------------------------------------------------


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


# --- padding plans -----------------------------------------------------------------------------------------


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
