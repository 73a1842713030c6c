"""How a row becomes tokens: the tokenizer's special-token layout, chat templates, and the prefix and
continuation texts and ids of every pair.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardtrain.training.config import ENCODER_LAYOUTS
from rewardtrain.training.data.rows import Row


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
    def probe(cls, tokenizer, kind: str, *, append_eos: bool, encoder_layout: str = "pair") -> SequenceLayout:
        """Encoders: ``encoder_layout`` 'pair' is the tokenizer's sentence pair (``[CLS] prompt [SEP]
        response [SEP]``, the response in the second segment); 'single' is one segment (``[CLS] prompt
        response [SEP]``, no token types). Decoders: ``BOS prompt response EOS``."""
        if encoder_layout not in ENCODER_LAYOUTS:
            raise ValueError(
                f"encoder_layout must be one of {', '.join(ENCODER_LAYOUTS)}, got {encoder_layout!r}"
            )
        if kind == "encoder" and encoder_layout == "single":
            head, tail = _single_layout(tokenizer, kind)
            return cls(tuple(head), (), tuple(tail), 0, 0, False)
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


def _thaw(messages: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


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


def _encode_all(tokenizer, texts: dict[Any, str]) -> dict[Any, list[int]]:
    keys = list(texts)
    if not keys:
        return {}
    encoded = tokenizer([texts[key] for key in keys], add_special_tokens=False, verbose=False)["input_ids"]
    return dict(zip(keys, (list(ids) for ids in encoded), strict=True))


PairTexts = tuple[tuple[bool, str], tuple[bool, str], tuple[bool, str]]


def render_pairs(parsed: Sequence[Row], tokenizer) -> tuple[list[PairTexts], np.ndarray]:
    """Each pair as (prefix, chosen, rejected) texts keyed by whether the row is a conversation, and the
    prompt group of each pair (the same number for pairs on the same prompt)."""
    rendered: dict[tuple, tuple[str, str]] = {}
    pair_texts: list[PairTexts] = []
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
    return pair_texts, pair_group


def pair_tokens(
    pair_texts: Sequence[PairTexts], tokenizer, layout: SequenceLayout
) -> Iterator[tuple[tuple[list[int], int], tuple[list[int], int], tuple[list[int], int]]]:
    """Per pair, the token ids of its prefix, chosen and rejected continuations, each with how many of its
    special tokens truncation must keep: the prefix's leading ones, a continuation's closing ones.

    The tokenizer sees each distinct text once, in one batch.
    """
    special = set(tokenizer.all_special_ids) | {
        token_id
        for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if token.special
    }
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

    for prefix_key, chosen_key, rejected_key in pair_texts:
        yield prefix_tokens(prefix_key), continuation_tokens(chosen_key), continuation_tokens(rejected_key)
