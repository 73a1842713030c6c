"""The encoding options: mean against the head's own token (an encoder's first, a decoder's last), and the
sentence-pair against the one-segment layout for encoders, in training and in scoring alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rewardtrain.training.config import TrainConfig
from rewardtrain.training.data import build_pair_dataset, install_default_chat_template, plan_pairs
from rewardtrain.training.errors import ConfigError
from rewardtrain.training.model import load_reward_model
from tests.rewardtrain.conftest import marker_rows


def _load(minilm: str, pooling: str):
    torch.manual_seed(3)  # the same fresh head for every pooling
    reward_model = load_reward_model(minilm, device="cpu", mixed_precision="no", pooling=pooling)
    reward_model.model.eval()
    return reward_model


@pytest.fixture(scope="module")
def mean_model(minilm):
    return _load(minilm, "mean")


@pytest.fixture(scope="module")
def first_model(minilm):
    return _load(minilm, "first")


def _batch(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


@torch.no_grad()
def test_mean_pooling_ignores_padding(mean_model):
    tokenizer = mean_model.tokenizer
    short, long = "a short answer", "a much longer answer that needs many more tokens than the short one does"
    alone = mean_model.model(**_batch(tokenizer, [short])).logits[:, 0]
    padded = _batch(tokenizer, [short, long])
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # the short one is padded
    together = mean_model.model(**padded).logits[:, 0]
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_mean_pooling_feeds_the_head_the_mean_of_the_real_tokens_final_states(mean_model, first_model):
    """The same weights: 'mean' is the head of 'first' applied to the masked mean of the final states."""
    inputs = _batch(mean_model.tokenizer, ["one two three", "one two three four five six seven"])
    core = first_model.core
    hidden = core.bert(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    expected = core.classifier(core.bert.pooler(mean.unsqueeze(1)))[:, 0]
    got = mean_model.model(**inputs).logits[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first_model.model(**inputs).logits[:, 0], got, atol=1e-3)


def _train_small(base_model: str, output_dir, rows, **settings):
    from rewardtrain.training.trainer import train

    config = {"base_model": base_model, "max_length": 48, "batch_size": 4, "mixed_precision": "no",
              "save_steps": 0, "calibrate": False, **settings}  # fmt: skip
    return train(config, rows[:8], rows[8:], output_dir=output_dir, device="cpu")


def _assert_scored_as_trained(loaded, result, rows) -> np.ndarray:
    """Scores of the validation rows through Palate's scoring equal those training gave them."""
    from rewardtrain.scoring.engine import ScoringRequest, score_requests

    requests = [ScoringRequest(row["prompt"], (row["chosen"], row["rejected"])) for row in rows[8:]]
    scores = np.stack(score_requests(loaded, requests))
    trained = np.stack([result.validation_rewards["chosen"], result.validation_rewards["rejected"]], axis=1)
    np.testing.assert_allclose(scores, trained, atol=1e-4)
    return scores


@torch.no_grad()
def test_a_decoder_reads_its_last_real_token_with_first_and_the_mean_of_its_real_tokens_with_mean(
    tiny_decoder,
):
    models = {}
    for pooling in ("first", "mean"):
        torch.manual_seed(0)  # the same fresh head for both
        models[pooling] = load_reward_model(tiny_decoder, device="cpu", mixed_precision="no", pooling=pooling)
        models[pooling].model.eval()
    last, mean = models["first"], models["mean"]
    assert last.pooling == "last" and mean.pooling == "mean"
    assert last.can_share_prefix() and not mean.can_share_prefix()

    inputs = _batch(mean.tokenizer, ["one two three four five", "one two"])
    assert inputs["attention_mask"][1].sum() < inputs["attention_mask"].shape[1]  # the second one is padded
    core = last.core
    hidden = core.base_model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    expected = core.score((hidden * mask).sum(1) / mask.sum(1))[:, 0]
    got = mean.model(**inputs).logits[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    at_last_token = core.score(hidden[torch.arange(2), inputs["attention_mask"].sum(1) - 1])[:, 0]
    torch.testing.assert_close(last.model(**inputs).logits[:, 0], at_last_token, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(at_last_token, got, atol=1e-3)

    alone = mean.model(**_batch(mean.tokenizer, ["one two"])).logits[:, 0]
    torch.testing.assert_close(got[1], alone[0], atol=1e-5, rtol=1e-5)


def test_a_decoder_with_mean_pooling_trains_without_a_shared_prefix_and_scores_after_loading_as_trained(
    tiny_decoder, tmp_path
):
    from rewardtrain.scoring.engine import load_model

    rows = marker_rows(12, seed=5)
    with pytest.raises(
        ConfigError, match="shared_prefix: needs a decoder model with a score head, pooling 'first'"
    ):
        _train_small(tiny_decoder, tmp_path / "on", rows, pooling="mean", shared_prefix="on")
    result = _train_small(tiny_decoder, tmp_path / "run", rows, pooling="mean")
    assert result.timing["shared_prefix"] is False
    loaded = load_model(result.artifact_dir, device="cpu")
    assert loaded.reward_model.pooling == "mean"
    _assert_scored_as_trained(loaded, result, rows)


def test_unknown_pooling_is_refused(minilm):
    with pytest.raises(ConfigError, match="pooling: must be one of first, mean"):
        load_reward_model(minilm, device="cpu", pooling="last")
    with pytest.raises(ConfigError, match="pooling: must be one of first, mean"):
        TrainConfig.from_dict({"base_model": minilm, "pooling": "max"})


def _joined(data, pair: int) -> list[int]:
    sequence = data.chosen[pair]
    return np.concatenate(
        [data.prefixes[data.sequence_prefix[sequence]], data.continuations[sequence]]
    ).tolist()


def test_the_single_layout_is_one_segment_without_a_separator_between_prompt_and_response(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    rows = marker_rows(3, seed=4)
    single = build_pair_dataset(rows, tokenizer, kind="encoder", max_length=64, encoder_layout="single")
    pair = build_pair_dataset(rows, tokenizer, kind="encoder", max_length=64, encoder_layout="pair")
    for index, row in enumerate(rows):
        assert _joined(single, index) == tokenizer(row["prompt"] + row["chosen"])["input_ids"]
        assert _joined(pair, index) == tokenizer(row["prompt"], row["chosen"])["input_ids"]
    assert not single.uses_token_types and pair.uses_token_types
    plan, _, _ = plan_pairs(
        single, np.arange(3), pad_token_id=0, shared_prefix=False, deduplicate=True, chunk_overhead_tokens=0
    )
    assert all(chunk.token_type_ids is None for chunk in plan.chunks)


def test_conversations_keep_their_template_in_both_layouts_and_differ_in_the_response_segment(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    install_default_chat_template(tokenizer, "encoder")
    rows = marker_rows(2, seed=5, conversational=True)
    single = build_pair_dataset(rows, tokenizer, kind="encoder", max_length=64, encoder_layout="single")
    pair = build_pair_dataset(rows, tokenizer, kind="encoder", max_length=64, encoder_layout="pair")
    assert _joined(single, 0) == _joined(pair, 0)
    plans = [
        plan_pairs(
            data, np.arange(2), pad_token_id=0, shared_prefix=False, deduplicate=True, chunk_overhead_tokens=0
        )[0]
        for data in (single, pair)
    ]
    assert all(chunk.token_type_ids is None for chunk in plans[0].chunks)
    assert all(chunk.token_type_ids.max() == 1 for chunk in plans[1].chunks)


def test_a_model_trained_with_mean_pooling_and_one_segment_scores_after_loading_as_it_was_trained(
    minilm, tmp_path
):
    from rewardtrain.scoring.engine import load_model
    from rewardtrain.training.artifacts import SUMMARY_FILE

    rows = marker_rows(12, seed=8)
    result = _train_small(minilm, tmp_path / "run", rows, pooling="mean", encoder_layout="single")
    directory = result.artifact_dir
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["palate"]
    assert saved["pooling"] == "mean" and saved["encoder_layout"] == "single"
    summary = json.loads((tmp_path / "run" / "model" / SUMMARY_FILE).read_text())
    assert summary["hyperparameters"]["pooling"] == "mean"

    loaded = load_model(directory, device="cpu")
    assert loaded.reward_model.pooling == "mean" and loaded.encoding["encoder_layout"] == "single"
    scores = _assert_scored_as_trained(loaded, result, rows)

    # Read as a plain Hugging Face model would (first token, pair layout), the scores differ: the test can fail.
    plain = load_reward_model(directory, device="cpu", mixed_precision="no")
    plain_scores = []
    for row in rows[8:]:
        inputs = plain.tokenizer(
            [row["prompt"]] * 2, [row["chosen"], row["rejected"]], padding=True, return_tensors="pt"
        )
        with torch.no_grad():
            plain_scores.append(plain.model.eval()(**inputs).logits[:, 0].numpy())
    assert not np.allclose(np.stack(plain_scores), scores, atol=1e-3)


@torch.no_grad()
def test_mean_pooling_holds_under_lora_adapters(minilm):
    reward_model = load_reward_model(
        minilm, device="cpu", mixed_precision="no", pooling="mean", lora={"r": 4, "alpha": 8.0}
    )
    reward_model.model.eval()
    tokenizer = reward_model.tokenizer
    short, long = "a short answer", "a much longer answer that needs many more tokens than the short one does"
    alone = reward_model.model(**_batch(tokenizer, [short])).logits[:, 0]
    together = reward_model.model(**_batch(tokenizer, [short, long])).logits[:, 0]
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
