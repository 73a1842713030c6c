"""Exports checked by their real consumers: every format loads with Hugging Face ``datasets``, and TRL's
``RewardTrainer`` and ``DPOTrainer`` train a few steps on the exported train split, as text and as
conversations. The models are tiny GPT-2s built from a config, with a word-level tokenizer trained here:
nothing is downloaded (HF_HUB_OFFLINE)."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from annotate.models import Export
from annotate.services.exports import export_create, export_run
from tests.factories import (
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tempfile.gettempdir()) / "palate-tests-hf-datasets"))

pytestmark = [pytest.mark.django_db, pytest.mark.consumers]

WORDS = [
    "the",
    "a",
    "is",
    "what",
    "how",
    "why",
    "which",
    "sky",
    "blue",
    "green",
    "red",
    "two",
    "four",
    "five",
    "cat",
    "dog",
    "runs",
    "sits",
    "answer",
    "question",
]


@pytest.fixture
def project():
    """Eight prompts, two of them conversations, three responses each, every pair judged by two annotators."""
    project = ProjectFactory(strength_scale=3)
    annotators = [MembershipFactory(project=project, user=UserFactory()).user for _ in range(2)]
    for number in range(8):
        messages = None
        if number % 4 == 3:
            messages = [
                {"role": "user", "content": f"hello {WORDS[number]}"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": f"what is the {WORDS[number + 5]}"},
            ]
        prompt = PromptFactory(
            project=project,
            content=f"what is the {WORDS[number]} {WORDS[number + 3]}",
            messages=messages,
            category="even" if number % 2 == 0 else "odd",
        )
        responses = [
            ResponseFactory(
                prompt=prompt,
                system=system,
                content=" ".join(WORDS[(number + offset) % len(WORDS)] for offset in range(3 + index)),
            )
            for index, system in enumerate(("alpha", "beta", "gamma"))
        ]
        for first, second in ((0, 1), (0, 2), (1, 2)):
            pair = PairFactory(
                project=project, prompt=prompt, response_a=responses[first], response_b=responses[second]
            )
            for annotator in annotators:
                pair.judgments.create(annotator=annotator, choice="a", strength=2)
    return project


def export(project, *, formats=("jsonl",), **policy) -> Export:
    created = export_create(
        project=project,
        policy={"split": 0.75, **policy},
        formats=list(formats),
        created_by=None,
        enqueue=False,
    )
    export_run(export_id=created.pk)
    created.refresh_from_db()
    assert created.status == Export.Status.SUCCEEDED, created.error
    return created


def file_path(export: Export, name: str) -> str:
    return str(Path(settings.ARTIFACT_ROOT) / export.files[name]["path"])


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[EOS]", "<|im_start|>", "<|im_end|>"]
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [" ".join(WORDS), "user assistant system hello answer question", "0 1 2 3 4 5 6 7 8 9 ? . ,"]
    words.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|>{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
    )
    return tokenizer


def tiny_gpt2(tokenizer, *, reward: bool):
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2ForSequenceClassification(config) if reward else GPT2LMHeadModel(config)


def training_args(config_class, tmp_path, **extra):
    return config_class(
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        max_length=96,
        seed=0,
        **extra,
    )


def test_every_format_loads_with_datasets_as_the_same_rows(project):
    import datasets

    made = export(
        project,
        formats=["jsonl", "jsonl.gz", "parquet", "hf"],
        columns=["margin", "vote_share", "n_votes", "ids"],
    )

    loaded = {
        "jsonl": datasets.load_dataset(
            "json", data_files={split: file_path(made, f"{split}.jsonl") for split in ("train", "test")}
        ),
        "jsonl.gz": datasets.load_dataset(
            "json", data_files={split: file_path(made, f"{split}.jsonl.gz") for split in ("train", "test")}
        ),
        "parquet": datasets.load_dataset(
            "parquet", data_files={split: file_path(made, f"{split}.parquet") for split in ("train", "test")}
        ),
        "hf": datasets.load_from_disk(str(Path(file_path(made, "hf/dataset_dict.json")).parent)),
    }

    reference = loaded["hf"]
    assert (
        reference["train"].num_rows == made.counts["rows"]["train"]
        and reference["test"].num_rows == made.counts["rows"]["test"]
    )
    assert reference["train"].features["prompt"] == datasets.List(
        {"role": datasets.Value("string"), "content": datasets.Value("string")}
    )
    for name, dataset in loaded.items():
        for split in ("train", "test"):
            assert dataset[split].to_list() == reference[split].to_list(), (name, split)
    assert reference["train"].info.license == ""


def test_reward_trainer_trains_on_a_text_export(project, tokenizer, tmp_path):
    import datasets
    from trl import RewardConfig, RewardTrainer

    project.prompts.update(messages=None)
    made = export(project, formats=["parquet"], columns=["vote_share", "ids"])
    train = datasets.load_dataset("parquet", data_files=file_path(made, "train.parquet"), split="train")
    assert isinstance(train[0]["prompt"], str) and isinstance(train[0]["chosen"], str)

    trainer = RewardTrainer(
        model=tiny_gpt2(tokenizer, reward=True),
        args=training_args(RewardConfig, tmp_path),
        train_dataset=train,
        processing_class=tokenizer,
    )
    result = trainer.train()

    assert result.global_step == 3


def test_reward_trainer_trains_on_a_conversational_export_with_margins(project, tokenizer, tmp_path):
    import datasets
    from trl import RewardConfig, RewardTrainer

    made = export(project, formats=["hf"], columns=["margin"])
    data = datasets.load_from_disk(str(Path(file_path(made, "hf/dataset_dict.json")).parent))
    assert made.counts["conversational"] and data["train"][0]["chosen"][0]["role"] == "assistant"

    trainer = RewardTrainer(
        model=tiny_gpt2(tokenizer, reward=True),
        args=training_args(RewardConfig, tmp_path),
        train_dataset=data["train"],
        eval_dataset=data["test"],
        processing_class=tokenizer,
    )
    result = trainer.train()
    metrics = trainer.evaluate()

    assert result.global_step == 3
    assert "eval_loss" in metrics


@pytest.mark.parametrize("shape", ["text", "conversational"])
def test_dpo_trainer_trains_on_the_same_export_unchanged(project, tokenizer, tmp_path, shape):
    import datasets
    from trl import DPOConfig, DPOTrainer

    if shape == "text":
        project.prompts.update(messages=None)
    made = export(project, formats=["jsonl"], shape=shape)
    train = datasets.load_dataset("json", data_files=file_path(made, "train.jsonl"), split="train")
    model = tiny_gpt2(tokenizer, reward=False)

    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=training_args(DPOConfig, tmp_path),
        train_dataset=train,
        processing_class=tokenizer,
    )
    result = trainer.train()

    assert result.global_step == 3
