"""Loading a reward model and computing rewards for a padding plan.

A reward model is ``AutoModelForSequenceClassification`` with ``num_labels=1``, from a local directory or a
Hugging Face id already in the local cache (set ``HF_HUB_OFFLINE=1`` on machines without hub access).

The reward is read where the model's own head reads it (``pooling="first"``: an encoder's first token, a
decoder's last real token) or from the mean of the final states over the real tokens (``"mean"``,
``rewardtrain.training.pooling``).
Decoders' tokenizer gets a pad token of its own when it
has none or pads with EOS: with pad = EOS, Transformers takes a sequence's final EOS for padding and reads the
reward one token early.

Shared prefix (decoders): a prompt shared by several sequences runs once with ``use_cache``; each response
then runs on the selected rows of its key/value cache, with position ids that continue the prompt's and an
attention mask that hides the prompt's padding. Rewards and gradients equal those of the plain forward; it is
off under gradient checkpointing (Transformers drops the cache while checkpointing) and for caches that are
not plain per-layer key/value tensors (sliding windows, state-space layers).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rewardtrain.training.config import POOLING
from rewardtrain.training.data import PairDataset, SequencePlan, install_default_chat_template, plan_sequences
from rewardtrain.training.errors import ConfigError, ModelLoadError
from rewardtrain.training.pooling import install_mean_pooling

PAD_TOKEN = "<|pad|>"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def detect_kind(model_config) -> str:
    """'decoder' for causal language models (reward at the last real token), 'encoder' for bidirectional ones
    (BERT-like, reward from the first token's pooled state or the mean of all: ``pooling``)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(model_config, "is_encoder_decoder", False):
        raise ModelLoadError(
            f"{model_config.model_type} is an encoder-decoder model; reward models here are encoders or decoders"
        )
    model_type = model_config.model_type
    if (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ):
        return "decoder"
    return "encoder"


@dataclass
class RewardModel:
    model: Any  # a PreTrainedModel, or a peft model wrapping one
    tokenizer: Any
    kind: str
    base_model: str
    device: torch.device
    autocast_dtype: torch.dtype | None
    max_positions: int | None
    added_pad_token: bool
    installed_chat_template: bool
    pooling: str = "first"

    @property
    def core(self):
        """The sequence-classification model itself (inside a peft wrapper when LoRA is on)."""
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def can_share_prefix(self) -> bool:
        core = self.core
        return (
            self.kind == "decoder"
            and self.pooling == "last"
            and hasattr(core, "score")
            and not getattr(core, "is_activation_checkpointing", False)
        )

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (oneDNN then runs bf16 matmuls several times
    faster than float32 ones)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and " amx_bf16" in line for line in cpuinfo)
    except OSError:
        return False


def _use_bf16(mixed_precision: str, device: torch.device) -> bool:
    if mixed_precision == "bf16":
        return True
    if mixed_precision != "auto":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx_bf16()


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or "\\" in name or name.count("/") > 1


@contextlib.contextmanager
def _quiet_transformers():
    """Transformers reports the freshly initialised reward head at warning level on every load; the head is
    new by design."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_reward_model(
    base_model: str,
    *,
    device: str | torch.device = "auto",
    disable_dropout: bool = True,
    gradient_checkpointing: bool = False,
    mixed_precision: str = "auto",
    lora: dict[str, Any] | None = None,
    pooling: str = "first",
) -> RewardModel:
    """Load ``base_model`` as a one-output sequence classifier, in float32 on ``device``, ready to train.

    ``pooling``: "first" reads the reward where the model's head does, an encoder's first token or a decoder's
    last real token (``RewardModel.pooling`` is then "last"); "mean" from the mean of the final states over
    the real tokens (``rewardtrain.training.pooling``).

    ``lora`` (``{"r", "alpha", "dropout"}``) wraps the model with peft LoRA adapters on every linear layer;
    the reward head stays fully trainable. Raises ModelLoadError when the model cannot be found or used.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    device = resolve_device(device)
    location = os.path.expanduser(base_model)
    if not os.path.isdir(location) and (_looks_like_path(base_model) or os.path.exists(location)):
        raise ModelLoadError(f"base model: no model directory at {base_model!r}")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    try:
        model_config = AutoConfig.from_pretrained(location, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        where = "the local Hugging Face cache (downloads are off: HF_HUB_OFFLINE)" if offline else "the hub"
        raise ModelLoadError(
            f"base model {base_model!r} could not be loaded: it is not a local directory and was not found in "
            f"{where} ({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    kind = detect_kind(model_config)
    if kind == "decoder" and pooling in ("first", "last"):  # saved decoders say 'last'
        pooling = "last"
    elif pooling not in POOLING:
        raise ConfigError("pooling", f"must be one of {', '.join(POOLING)}, got {pooling!r}")
    if disable_dropout:
        for name, value in list(vars(model_config).items()):
            if ("dropout" in name or "pdrop" in name) and isinstance(value, float):
                setattr(model_config, name, 0.0)
    with _quiet_transformers():
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                location, config=model_config, dtype=torch.float32
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"base model {base_model!r} could not be loaded: {error}") from error

    added_pad = False
    if tokenizer.pad_token is None or (
        kind == "decoder" and tokenizer.pad_token_id == tokenizer.eos_token_id
    ):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        added_pad = True
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.pad_token_id = tokenizer.pad_token_id
    installed_template = install_default_chat_template(tokenizer, kind)

    if disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if pooling == "mean":
        install_mean_pooling(model, kind)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora is not None:
        try:
            from peft import LoraConfig, TaskType, get_peft_model
        except ImportError as error:  # pragma: no cover - peft is in requirements.txt
            raise ModelLoadError("use_lora needs the peft package") from error
        model = get_peft_model(
            model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=int(lora.get("r", 16)),
                lora_alpha=float(lora.get("alpha", 32.0)),
                lora_dropout=float(lora.get("dropout", 0.0)),
                target_modules="all-linear",
            ),
        )
        if gradient_checkpointing:
            model.enable_input_require_grads()
    model.to(device)

    autocast_dtype = torch.bfloat16 if _use_bf16(mixed_precision, device) else None
    text_config = model_config.get_text_config()
    max_positions = getattr(text_config, "max_position_embeddings", None) or getattr(
        text_config, "n_positions", None
    )
    return RewardModel(
        model=model,
        tokenizer=tokenizer,
        kind=kind,
        base_model=base_model,
        device=device,
        autocast_dtype=autocast_dtype,
        max_positions=max_positions,
        added_pad_token=added_pad,
        installed_chat_template=installed_template,
        pooling=pooling,
    )


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(array).to(device, non_blocking=True)


def _plain_cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def sequence_rewards(reward_model: RewardModel, plan: SequencePlan) -> torch.Tensor:
    """Rewards (float32) of the plan's sequences, in the order of ``plan.sequence_ids``, differentiable."""
    device = reward_model.device
    pieces: list[torch.Tensor] = []
    rows: list[np.ndarray] = []
    with reward_model.autocast():
        for chunk in plan.chunks:
            inputs = {
                "input_ids": _tensor(chunk.input_ids, device),
                "attention_mask": _tensor(chunk.attention_mask, device),
            }
            if chunk.token_type_ids is not None:
                inputs["token_type_ids"] = _tensor(chunk.token_type_ids, device)
            if reward_model.kind == "decoder":
                inputs["use_cache"] = False
            pieces.append(reward_model.model(**inputs).logits[:, 0].float())
            rows.append(chunk.rows)
        if plan.prefix_groups:
            for group_pieces, group_rows in _shared_prefix_rewards(reward_model, plan):
                pieces.append(group_pieces)
                rows.append(group_rows)
    order = torch.from_numpy(np.concatenate(rows)).to(device)
    rewards = torch.cat(pieces)
    result = torch.empty_like(rewards)
    return result.index_copy(0, order, rewards)


class RewardForward(torch.nn.Module):
    """The reward forward of a plan (plain chunks and shared-prefix groups alike) as one module call.

    DistributedDataParallel averages gradients only for what runs inside the forward of the module it wraps;
    the shared-prefix path calls the base model and the score head separately, several times per plan, so
    the trainer wraps this module rather than the Transformers model: every parameter use of the micro-batch
    happens inside one ``forward``, and DDP's hooks all-reduce the gradients in ``backward``."""

    def __init__(self, reward_model: RewardModel):
        super().__init__()
        self.model = reward_model.model  # registers the parameters (the same tensors, not a copy)
        self.reward_model = reward_model

    def forward(self, plan: SequencePlan) -> torch.Tensor:
        return sequence_rewards(self.reward_model, plan)


def _shared_prefix_rewards(reward_model: RewardModel, plan: SequencePlan):
    from transformers.cache_utils import DynamicCache

    core = reward_model.core
    base, head = core.base_model, core.score
    device = reward_model.device
    for group in plan.prefix_groups:
        prefix_mask = _tensor(group.attention_mask, device)
        prefix_lengths = _tensor(group.lengths, device)
        output = base(input_ids=_tensor(group.input_ids, device), attention_mask=prefix_mask, use_cache=True)
        layers = _plain_cache_layers(output.cache)
        if layers is None:
            raise RuntimeError(
                f"{type(core).__name__} does not keep a plain key/value cache; train with shared_prefix='off'"
            )
        for chunk in group.chunks:
            select = _tensor(chunk.prefix_rows, device)
            cache = DynamicCache(
                ddp_cache_data=[(k.index_select(0, select), v.index_select(0, select)) for k, v in layers]
            )
            mask = _tensor(chunk.attention_mask, device)
            width = mask.shape[1]
            positions = (
                prefix_lengths.index_select(0, select)[:, None] + torch.arange(width, device=device)[None]
            )
            hidden = base(
                input_ids=_tensor(chunk.input_ids, device),
                attention_mask=torch.cat([prefix_mask.index_select(0, select), mask], dim=1),
                position_ids=positions,
                cache=cache,
                use_cache=True,
            ).last_hidden_state
            last = mask.sum(dim=1) - 1
            final = hidden[torch.arange(hidden.shape[0], device=device), last]
            yield head(final)[:, 0].float(), chunk.rows


@torch.no_grad()
def score_sequences(
    reward_model: RewardModel,
    dataset: PairDataset,
    *,
    sequences_per_batch: int = 64,
    shared_prefix: bool | None = None,
    chunk_overhead_tokens: int = 64,
) -> np.ndarray:
    """Reward of every interned sequence of ``dataset`` (float64, indexed like ``dataset.continuations``)."""
    if shared_prefix is None:
        shared_prefix = reward_model.can_share_prefix()
    model = reward_model.model
    was_training = model.training
    model.eval()
    try:
        count = len(dataset.continuations)
        prefix_of = dataset.sequence_prefix
        order = np.lexsort((dataset.continuation_lengths, prefix_of, dataset.prefix_lengths[prefix_of]))
        rewards = np.empty(count, dtype=np.float64)
        for start in range(0, count, sequences_per_batch):
            batch = order[start : start + sequences_per_batch]
            plan = plan_sequences(
                dataset,
                batch,
                pad_token_id=reward_model.pad_token_id,
                shared_prefix=shared_prefix,
                chunk_overhead_tokens=chunk_overhead_tokens,
            )
            rewards[batch] = sequence_rewards(reward_model, plan).double().cpu().numpy()
        return rewards
    finally:
        model.train(was_training)
