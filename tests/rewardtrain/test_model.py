"""Model loading, pad handling, and the shared-prefix forward against the plain one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardtrain.training.data import build_pair_dataset, plan_pairs
from rewardtrain.training.errors import ModelLoadError
from rewardtrain.training.model import load_reward_model, sequence_rewards
from tests.rewardtrain.conftest import marker_rows


@pytest.fixture(scope="module")
def decoder(tiny_decoder):
    torch.manual_seed(0)
    return load_reward_model(tiny_decoder, device="cpu", mixed_precision="no")


def multi_turn_rows() -> list[dict]:
    """Prompts of different lengths, each answered by three responses compared pairwise."""
    rows = []
    for index, base in enumerate(marker_rows(4, seed=11, conversational=True)):
        prompt = base["prompt"]
        if index % 2:
            prompt = [
                *prompt,
                {"role": "assistant", "content": "the river"},
                {"role": "user", "content": "more"},
            ]
        answers = [
            base["chosen"],
            base["rejected"],
            [{"role": "assistant", "content": "quiet road " * (index + 1)}],
        ]
        rows += [
            {"prompt": prompt, "chosen": answers[i], "rejected": answers[j]}
            for i, j in ((0, 1), (0, 2), (2, 1))
        ]
    return rows


def rewards_and_gradients(reward_model, data, *, shared_prefix: bool, deduplicate: bool):
    model = reward_model.model
    model.zero_grad(set_to_none=True)
    plan, chosen, rejected = plan_pairs(
        data,
        np.arange(len(data)),
        pad_token_id=reward_model.pad_token_id,
        shared_prefix=shared_prefix,
        deduplicate=deduplicate,
        chunk_overhead_tokens=4,
    )
    rewards = sequence_rewards(reward_model, plan)
    chosen_rewards, rejected_rewards = rewards[torch.from_numpy(chosen)], rewards[torch.from_numpy(rejected)]
    loss = -torch.nn.functional.logsigmoid(chosen_rewards - rejected_rewards).mean()
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return torch.stack([chosen_rewards, rejected_rewards]).detach(), gradients, plan


def test_the_shared_prefix_forward_gives_the_plain_rewards_and_gradients(decoder):
    data = build_pair_dataset(multi_turn_rows(), decoder.tokenizer, kind="decoder", max_length=128)
    plain_rewards, plain_gradients, plain_plan = rewards_and_gradients(
        decoder, data, shared_prefix=False, deduplicate=False
    )
    shared_rewards, shared_gradients, shared_plan = rewards_and_gradients(
        decoder, data, shared_prefix=True, deduplicate=True
    )
    assert shared_plan.prefix_groups and len(shared_plan.prefix_groups[0].chunks) >= 1
    assert shared_plan.real_tokens < 0.6 * plain_plan.real_tokens  # each prompt once, each response once
    torch.testing.assert_close(shared_rewards, plain_rewards, atol=1e-5, rtol=0)
    assert shared_gradients.keys() == plain_gradients.keys()
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(shared_gradients[name], gradient, atol=1e-5, rtol=0, msg=name)


def test_decoders_get_a_pad_token_of_their_own_and_read_the_last_real_token(decoder, tiny_decoder):
    tokenizer = decoder.tokenizer
    assert decoder.added_pad_token
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert decoder.model.config.pad_token_id == tokenizer.pad_token_id
    short = tokenizer("river stone</s>")["input_ids"]
    long = tokenizer("river stone garden window paper light</s>")["input_ids"]
    padded = short + [tokenizer.pad_token_id] * (len(long) - len(short))
    with torch.no_grad():
        alone = decoder.model(input_ids=torch.tensor([short])).logits[0, 0]
        batch = decoder.model(
            input_ids=torch.tensor([padded, long]),
            attention_mask=torch.tensor([[1] * len(short) + [0] * (len(long) - len(short)), [1] * len(long)]),
        ).logits[0, 0]
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=0)


def test_a_base_model_path_that_does_not_exist_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=r"no model directory at .*no-such-model"):
        load_reward_model(str(missing), device="cpu")


def test_a_hub_id_that_is_not_cached_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelLoadError, match=r"palate-test/not-a-model.*not found in the local Hugging Face cache"
    ):
        load_reward_model("palate-test/not-a-model", device="cpu")


def test_minilm_loads_as_an_encoder_with_a_fresh_one_output_head(minilm):
    reward_model = load_reward_model(minilm, device="cpu")
    assert reward_model.kind == "encoder" and not reward_model.can_share_prefix()
    assert reward_model.model.config.num_labels == 1 and reward_model.max_positions == 512
    assert not reward_model.added_pad_token
