"""Tokenization, the truncation policy, interning and batching."""

from __future__ import annotations

import numpy as np
import pytest

from rewardtrain.training.data import (
    build_pair_dataset,
    cut_prompt,
    install_default_chat_template,
    length_grouped_batches,
    partition_lengths,
    plan_pairs,
    truncate_sequence,
)
from rewardtrain.training.errors import DataError
from tests.rewardtrain.conftest import marker_rows


@pytest.fixture(scope="module")
def tokenizer(tiny_decoder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder)
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer


def test_truncate_sequence_cuts_the_start_of_the_prompt_first_and_keeps_its_head():
    prefix, response = [0, *range(100, 120)], [1, 2, 3, 9]
    new_prefix, new_response, prompt_cut, response_cut = truncate_sequence(
        prefix, response, max_length=12, prompt_floor=4, keep_head=1, keep_tail=1
    )
    assert new_prefix == [0, *range(113, 120)] and len(new_prefix) + len(response) == 12
    assert new_response == response
    assert prompt_cut and not response_cut


def test_truncate_sequence_cuts_the_response_from_its_end_once_the_prompt_is_at_its_floor():
    prefix, response = [0, *range(100, 120)], [*range(1, 20), 9]
    new_prefix, new_response, prompt_cut, response_cut = truncate_sequence(
        prefix, response, max_length=12, prompt_floor=4, keep_head=1, keep_tail=1
    )
    assert new_prefix == [0, 117, 118, 119]
    assert new_response == [1, 2, 3, 4, 5, 6, 7, 9]  # the start of the response and its closing token
    assert prompt_cut and response_cut


def test_a_response_keeps_the_same_tokens_whatever_it_is_compared_with(tokenizer):
    long_prompt = " ".join(["river"] * 60) + " the final question"
    short, long = " excellent answer", " terrible" + " stone" * 60
    rows = [
        {"prompt": long_prompt, "chosen": short, "rejected": long},
        {"prompt": long_prompt, "chosen": short, "rejected": short},
    ]
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=48, prompt_floor=8)
    assert data.chosen[0] == data.chosen[1]  # one sequence, the same tokens in both pairs
    chosen_prefix, rejected_prefix = (
        data.sequence_prefix[data.chosen[0]],
        data.sequence_prefix[data.rejected[0]],
    )
    assert len(data.prefixes[chosen_prefix]) > len(data.prefixes[rejected_prefix]) == 8
    assert data.report.prompt_truncated == 2 and data.report.response_truncated == 1


def test_cut_prompt_keeps_head_and_end():
    assert cut_prompt([1, 2, 3, 4, 5, 6], keep_head=1, keep=3) == [1, 5, 6]
    assert cut_prompt([1, 2, 3], keep_head=1, keep=5) == [1, 2, 3]


def test_truncation_keeps_the_end_of_the_prompt_and_reports_counts(tokenizer):
    long_prompt = " ".join(["river"] * 80) + " the final question"
    rows = [
        {"prompt": long_prompt, "chosen": " excellent answer", "rejected": " terrible answer"},
        {"prompt": "short", "chosen": " excellent", "rejected": " terrible"},
        {"prompt": "short", "chosen": " " + " ".join(["stone"] * 100), "rejected": " terrible"},
    ]
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=32, prompt_floor=8)
    report = data.report
    assert report.pairs == 3 and report.dropped == 0
    assert report.prompt_truncated == 1 and report.response_truncated == 1
    assert report.longest_sequence_before > 32
    lengths = data.sequence_lengths
    assert lengths.max() <= 32
    prefix = data.prefixes[data.sequence_prefix[data.chosen[0]]]
    assert prefix[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prefix[1:]).endswith("the final question")
    chosen = data.continuations[data.chosen[0]]
    assert tokenizer.decode(chosen) == " excellent answer</s>"  # whole, with its EOS
    cut = data.continuations[data.chosen[2]]
    assert cut[-1] == tokenizer.eos_token_id and len(cut) < 100


def test_a_cut_conversational_response_keeps_its_end_of_turn_marker(tokenizer):
    rows = [
        {
            "prompt": [{"role": "user", "content": "the question"}],
            "chosen": [{"role": "assistant", "content": " ".join(["stone"] * 80)}],
            "rejected": [{"role": "assistant", "content": "terrible"}],
        }
    ]
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=32, prompt_floor=8)
    assert data.report.response_truncated == 1
    chosen = tokenizer.decode(data.continuations[data.chosen[0]])
    assert chosen.startswith("stone stone") and chosen.endswith("<|im_end|>\n")
    assert len(data.prefixes[0]) + len(data.continuations[data.chosen[0]]) == 32


def test_sequences_shared_by_several_pairs_are_interned(tokenizer):
    answers = [" excellent one", " good two", " terrible three"]
    rows = [
        {"prompt": "the question", "chosen": answers[i], "rejected": answers[j]}
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=64)
    assert len(data.prefixes) == 1 and len(data.continuations) == 3
    plan, chosen_rows, rejected_rows = plan_pairs(
        data, np.arange(3), pad_token_id=tokenizer.pad_token_id, shared_prefix=True, deduplicate=True,
        chunk_overhead_tokens=64,
    )  # fmt: skip
    assert len(plan.sequence_ids) == 3
    assert sorted(zip(chosen_rows.tolist(), rejected_rows.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]


def test_conversations_split_where_the_joint_tokenization_would(tokenizer):
    rows = marker_rows(5, seed=3, conversational=True)
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=128)
    for index, row in enumerate(rows):
        text = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
        joint = tokenizer(text, add_special_tokens=False)["input_ids"]
        sequence = data.chosen[index]
        split = np.concatenate([data.prefixes[data.sequence_prefix[sequence]], data.continuations[sequence]])
        assert split.tolist() == joint


def test_an_implicit_prompt_is_the_shared_leading_messages(tokenizer):
    turn = [{"role": "user", "content": "the question"}]
    rows = [
        {
            "chosen": [*turn, {"role": "assistant", "content": "excellent"}],
            "rejected": [*turn, {"role": "assistant", "content": "terrible"}],
        }
    ]
    data = build_pair_dataset(rows, tokenizer, kind="decoder", max_length=64)
    assert "the question" in tokenizer.decode(data.prefixes[0])
    assert "excellent" not in tokenizer.decode(data.prefixes[0])


def test_a_default_chat_template_closes_turns_with_the_separator(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    assert install_default_chat_template(tokenizer, "encoder")
    rows = marker_rows(2, seed=4, conversational=True)
    data = build_pair_dataset(rows, tokenizer, kind="encoder", max_length=64)
    sequence = data.chosen[0]
    assert data.prefixes[data.sequence_prefix[sequence]][0] == tokenizer.cls_token_id
    assert data.continuations[sequence][-1] == tokenizer.sep_token_id


def test_encoders_see_text_rows_as_a_pair_with_token_types(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    data = build_pair_dataset(marker_rows(2, seed=4), tokenizer, kind="encoder", max_length=64)
    sequence = data.chosen[0]
    prompt, response = marker_rows(2, seed=4)[0]["prompt"], marker_rows(2, seed=4)[0]["chosen"]
    expected = tokenizer(prompt, response)
    joined = np.concatenate([data.prefixes[data.sequence_prefix[sequence]], data.continuations[sequence]])
    assert joined.tolist() == expected["input_ids"]
    assert data.uses_token_types and data.continuation_token_type == 1


def test_bad_rows_are_named(tokenizer):
    with pytest.raises(DataError, match="row 1: 'rejected' is missing"):
        build_pair_dataset(
            [{"chosen": "a", "rejected": "b"}, {"chosen": "a"}], tokenizer, kind="decoder", max_length=16
        )
    with pytest.raises(DataError, match="row 0: 'vote_share' must be between"):
        build_pair_dataset(
            [{"chosen": "a", "rejected": "b", "vote_share": 2}], tokenizer, kind="decoder", max_length=16
        )


def test_length_grouped_batches_cover_every_pair_once_and_repeat_for_the_same_epoch(tokenizer):
    data = build_pair_dataset(marker_rows(100, seed=5), tokenizer, kind="decoder", max_length=128)
    first = length_grouped_batches(data, 8, seed=1, epoch=0)
    assert sorted(np.concatenate(first).tolist()) == list(range(100))
    again = length_grouped_batches(data, 8, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = length_grouped_batches(data, 8, seed=1, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_length_grouping_and_chunking_cut_padding(tokenizer):
    data = build_pair_dataset(marker_rows(160, seed=6), tokenizer, kind="decoder", max_length=128)

    def padding(batches, overhead):
        real = processed = 0
        for batch in batches:
            plan, _, _ = plan_pairs(
                data,
                batch,
                pad_token_id=0,
                shared_prefix=False,
                deduplicate=True,
                chunk_overhead_tokens=overhead,
            )
            real, processed = real + plan.real_tokens, processed + plan.processed_tokens
        return 1 - real / processed

    random_batches = np.array_split(np.random.default_rng(0).permutation(160), 20)
    grouped = length_grouped_batches(data, 8, seed=0, epoch=0)
    assert padding(grouped, 10**9) < padding(random_batches, 10**9)
    assert padding(grouped, 0) == 0.0


def test_partition_lengths_minimises_padding_plus_overhead():
    assert partition_lengths([1, 1, 1, 10, 10], overhead=0) == [3, 5]
    assert partition_lengths([1, 1, 1, 10, 10], overhead=100) == [5]
    assert partition_lengths([], overhead=5) == []
