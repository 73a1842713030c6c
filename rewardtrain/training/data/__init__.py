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
- text rows: encoders see ``[CLS] prompt [SEP] response [SEP]`` (``encoder_layout="pair"``: the tokenizer's own
  pair layout, with token types) or ``[CLS] prompt response [SEP]`` (``"single"``: one segment, as TRL lays
  them out); decoders see ``BOS prompt response EOS``. Conversations keep their template's turn markers in both
  encoder layouts; only the response's segment (token type) differs.

Truncation (``max_length``), decided per (prompt, response) so that a response's tokens never depend on the
response it is compared with, and scoring (``rewardtrain.scoring``) fits a response exactly as training did:
when the prompt and the response do not fit, the prompt loses tokens from its start (its leading special
tokens stay), down to ``prompt_floor`` tokens; only then is the response cut, from its end (its trailing
special tokens stay). Chosen and rejected may so keep different lengths of a long prompt. Nothing is dropped:
every cut is counted in ``TruncationReport``.

Sequences are interned: a prompt + response that occurs in several pairs (one prompt, several systems'
responses compared pairwise) is stored, and per micro-batch scored, once.

The package, one concern a module: ``rows`` (checking rows, no tokenizer), ``layout`` (the tokenizer's
special tokens, chat templates, each pair's texts and ids), ``truncation`` (the policy above), ``dataset``
(rows to a ``PairDataset``), ``split`` (the validation split held out by prompt), ``batches`` (an epoch's micro-batches) and ``plans`` (chunking and padding a
micro-batch for the forward passes). Only numpy: torch stays in ``model`` and ``trainer``. What this module
exports is the API; the modules' own names are free to change.
"""

from rewardtrain.training.data.batches import length_grouped_batches
from rewardtrain.training.data.dataset import PairDataset, build_pair_dataset
from rewardtrain.training.data.layout import SequenceLayout, install_default_chat_template
from rewardtrain.training.data.plans import (
    Chunk,
    PrefixGroup,
    SequencePlan,
    partition_lengths,
    plan_pairs,
    plan_sequences,
)
from rewardtrain.training.data.split import ValidationSplit, hold_out_validation
from rewardtrain.training.data.truncation import (
    TruncationReport,
    cut_prompt,
    cut_response,
    truncate_sequence,
)

__all__ = [
    "Chunk",
    "PairDataset",
    "PrefixGroup",
    "SequenceLayout",
    "SequencePlan",
    "TruncationReport",
    "ValidationSplit",
    "build_pair_dataset",
    "cut_prompt",
    "cut_response",
    "hold_out_validation",
    "install_default_chat_template",
    "length_grouped_batches",
    "partition_lengths",
    "plan_pairs",
    "plan_sequences",
    "truncate_sequence",
]
