"""The three row shapes (a prompt with candidates, a ready pair, TRL preference data) to prompts, responses
and pairs.
"""

from __future__ import annotations

import os
from typing import Any

from annotate.services.import_rows.fields import RowFields
from annotate.services.import_rows.pairing import Couples, generate_pairs, pair_count
from annotate.services.import_rows.records import (
    CHOICE_VALUES,
    ImportOptions,
    Limits,
    PairRecord,
    ResponseRecord,
    RowError,
    RowItems,
    response_record,
)


def row_to_items(raw: Any, location: str, options: ImportOptions, limits: Limits) -> RowItems:
    if isinstance(raw, RowError):
        raise raw
    if not isinstance(raw, dict):
        raise RowError(location, f"each row must be an object, got {type(raw).__name__}")
    row = RowFields(raw, location, limits)
    if "responses" in raw:
        return _candidates_row(row, options)
    if "response_a" in raw or "response_b" in raw:
        return _pair_row(row)
    if "chosen" in raw or "rejected" in raw:
        return _preference_row(row, options)
    raise RowError(
        location,
        "cannot tell the row's shape: expected 'responses' (a prompt with candidates), 'response_a'/'response_b' "
        "(a ready pair) or 'chosen'/'rejected' (preference data)",
    )


def _candidates_row(row: RowFields, options: ImportOptions) -> RowItems:
    row_id = row.identifier()
    prompt = row.prompt(row_id)
    assert prompt is not None
    candidates = row.data["responses"]
    if not isinstance(candidates, list) or len(candidates) < 2:
        raise row.fail("'responses' must be a list of at least two items")
    responses: list[ResponseRecord] = []
    seen: dict[str, int] = {}
    for index, candidate in enumerate(candidates):
        where = f"'responses[{index}]'"
        if not isinstance(candidate, dict):
            raise row.fail(f"{where} must be an object with 'content' (and 'id', 'system')")
        item = RowFields(candidate, row.location, row.limits)
        try:
            content = item.response("content")
            system = item.system("system")
            response_id = item.identifier()
            metadata = item.metadata()
        except RowError as error:
            raise row.fail(f"{where}: {error.message}") from None
        record = response_record(response_id, system, content, metadata)
        if record.external_id in seen:
            what = (
                f"duplicate response id '{response_id}'" if response_id else "the same response appears twice"
            )
            raise row.fail(f"{where}: {what} (also responses[{seen[record.external_id]}])")
        seen[record.external_id] = index
        responses.append(record)
    couples = Couples(responses, cross_system_only=options.cross_system_only)
    count, most = pair_count(couples, options), row.limits.max_pairs_per_prompt
    if count > most:
        raise row.fail(
            f"'responses': {len(responses):,} responses would make {count:,} pairs; the limit is {most:,} per "
            "prompt (IMPORT_MAX_PAIRS_PER_PROMPT): pairing 'random' with a smaller pairs_per_prompt makes fewer"
        )
    return RowItems(
        row.location, row_id, prompt, responses, generate_pairs(prompt.external_id, couples, options)
    )


def _pair_row(row: RowFields) -> RowItems:
    row_id = row.identifier()
    prompt = row.prompt("")
    assert prompt is not None
    response_a = response_record("", row.system("system_a"), row.response("response_a"))
    response_b = response_record("", row.system("system_b"), row.response("response_b"))
    if response_a.external_id == response_b.external_id:
        raise row.fail("'response_a' and 'response_b' are the same response")
    gold = row.text("gold", required=False).strip().lower()
    if gold and gold not in CHOICE_VALUES:
        raise row.fail(f"'gold' must be one of a, b, tie, both_bad, got {gold!r}")
    pair = PairRecord(
        a=response_a.external_id, b=response_b.external_id, external_id=row_id, gold_choice=gold
    )
    return RowItems(row.location, row_id, prompt, [response_a, response_b], [pair])


def _preference_row(row: RowFields, options: ImportOptions) -> RowItems:
    row_id = row.identifier()
    for name in ("chosen", "rejected"):
        if name not in row.data:
            raise row.fail(f"missing field '{name}'")
    chosen, rejected = row.data["chosen"], row.data["rejected"]
    conversational = isinstance(chosen, list)
    if conversational != isinstance(rejected, list):
        raise row.fail("'chosen' and 'rejected' must both be text or both be conversations")
    explicit_prompt = row.prompt("", required=False)
    if conversational:
        chosen = row.messages("chosen", chosen)
        rejected = row.messages("rejected", rejected)
        if explicit_prompt is None:
            shared = _common_prefix_length(chosen, rejected)
            if shared == 0:
                raise row.fail(
                    "no 'prompt', and 'chosen' and 'rejected' share no leading messages to take it from"
                )
            prompt = row.implied_prompt(chosen[:shared])
            chosen, rejected = chosen[shared:], rejected[shared:]
        else:
            prompt = explicit_prompt
        chosen_text = _single_reply(row, "chosen", chosen)
        rejected_text = _single_reply(row, "rejected", rejected)
    else:
        chosen_text = row.response("chosen")
        rejected_text = row.response("rejected")
        if explicit_prompt is None:
            shared = _common_text_prefix_length(chosen_text, rejected_text)
            if not chosen_text[:shared].strip():
                raise row.fail(
                    "no 'prompt', and 'chosen' and 'rejected' share no leading text to take it from"
                )
            prompt = row.implied_prompt(chosen_text[:shared])
            chosen_text, rejected_text = chosen_text[shared:], rejected_text[shared:]
            if not chosen_text.strip() or not rejected_text.strip():
                raise row.fail("no 'prompt', and one of 'chosen' and 'rejected' is the start of the other")
        else:
            prompt = explicit_prompt
    chosen_record = response_record("", row.system("system_chosen"), chosen_text)
    rejected_record = response_record("", row.system("system_rejected"), rejected_text)
    if chosen_record.external_id == rejected_record.external_id:
        raise row.fail("'chosen' and 'rejected' are the same response")
    pair = PairRecord(a=chosen_record.external_id, b=rejected_record.external_id, external_id=row_id)
    if options.label_as == "gold":
        pair.gold_choice = "a"
    elif options.label_as == "judgment":
        pair.prior_choice = "a"
    return RowItems(row.location, row_id, prompt, [chosen_record, rejected_record], [pair])


def _single_reply(row: RowFields, name: str, messages: list[dict[str, str]]) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise row.fail(
            f"'{name}' must end with exactly one assistant message after the prompt, got {len(messages)} message(s)"
        )
    return messages[0]["content"]


def _common_prefix_length(first: list[Any], second: list[Any]) -> int:
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return length


def _common_text_prefix_length(first: str, second: str) -> int:
    """The shared leading text, cut back to the last whitespace so that a word both answers start with
    stays in the answers (TRL's extract_prompt does the same for a shared leading space)."""
    # Character by character is what is wanted here: these are texts, not paths.
    length = len(os.path.commonprefix([first, second]))  # noqa: RUF071
    if length == min(len(first), len(second)):
        return length
    while length > 0 and not first[length - 1].isspace():
        length -= 1
    return length
