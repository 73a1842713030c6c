"""Mean pooling: the model's own classification head reads the mean of the final hidden states over the
sequence's real tokens instead of the one token it reads (an encoder's first, a decoder's last real token).

The head is left as Transformers built it (BERT's pooler and classifier, RoBERTa's or DeBERTa's head), so
'first' and 'mean' differ only in what the head reads, and the saved directory is a plain Hugging Face
model. Two hooks do it: one on the base model (BERT's ``BertModel``) notes the call's attention mask (per
thread, as scoring threads may share a model), one on its encoder stack puts the masked mean at position 0 of
its output, which every head of this family reads. A plain ``pipeline`` loading the directory does not install
the hooks and reads the first token: Palate's scoring installs them from ``config.palate.pooling``.

A decoder's score head runs on every position and keeps the last real token's: one hook on its base model
puts the mean at every position. The mean is over the whole sequence, so a decoder pooled so cannot reuse a
shared prompt's key/value cache (``RewardModel.can_share_prefix``).
"""

from __future__ import annotations

import threading

import torch

from rewardtrain.training.errors import ModelLoadError


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, tokens, width) over the tokens where ``attention_mask`` is 1."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _base_and_stack(core) -> tuple[torch.nn.Module, torch.nn.Module]:
    base = getattr(core, "base_model", None)
    stack = getattr(base, "encoder", None) if base is not None and base is not core else None
    if not isinstance(stack, torch.nn.Module):
        raise ModelLoadError(
            f"pooling 'mean' needs an encoder whose layers are its base model's 'encoder' (BERT-like); "
            f"{type(core).__name__} has none: train with pooling 'first'"
        )
    return base, stack


def _input_mask(args, kwargs) -> torch.Tensor:
    mask = kwargs.get("attention_mask")
    if mask is None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            input_ids = kwargs["inputs_embeds"]
        mask = torch.ones(input_ids.shape[:2], dtype=torch.long, device=input_ids.device)
    return mask


def _with_states(output, states: torch.Tensor):
    if isinstance(output, tuple):
        return (states, *output[1:])
    output["last_hidden_state"] = states
    return output


def install_mean_pooling(core, kind: str = "encoder") -> None:
    """Make ``core`` (a ``...ForSequenceClassification``) read the masked mean of its final states. Call once;
    the hooks stay on the modules, under peft and DDP wrappers too (the head calls its base model as a
    module, whoever calls the head)."""
    if kind == "decoder":
        _install_decoder_mean(core)
        return
    base, stack = _base_and_stack(core)
    masks = threading.local()

    def note_mask(module, args, kwargs):
        masks.current = _input_mask(args, kwargs)

    def pool(module, args, output):
        # Taken, not read: a forward that did not pass through note_mask must fail, not use a stale mask.
        mask = masks.__dict__.pop("current", None)
        if mask is None:
            raise RuntimeError("mean pooling: the encoder ran without its base model's attention mask")
        hidden = output[0]
        pooled = torch.cat([masked_mean(hidden, mask).unsqueeze(1), hidden[:, 1:]], dim=1)
        return _with_states(output, pooled)

    base.register_forward_pre_hook(note_mask, with_kwargs=True)
    stack.register_forward_hook(pool)


def _install_decoder_mean(core) -> None:
    base = getattr(core, "base_model", None)
    if base is None or base is core or not hasattr(core, "score"):
        raise ModelLoadError(
            f"pooling 'mean' needs a decoder with a base model and a score head; {type(core).__name__} has "
            "not: train with pooling 'first'"
        )

    def pool(module, args, kwargs, output):
        if kwargs.get("past_key_values") is not None or kwargs.get("cache") is not None:
            raise RuntimeError("mean pooling reads whole sequences: it cannot continue a cached prompt")
        hidden = output[0]
        mask = _input_mask(args, kwargs)
        return _with_states(output, masked_mean(hidden, mask).unsqueeze(1).expand_as(hidden))

    base.register_forward_hook(pool, with_kwargs=True)
