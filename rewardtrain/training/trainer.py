"""The training loop: ``train(config, train_rows, eval_rows, output_dir=...) -> TrainResult``.

Framework-free: a Celery task, a management command or a script calls ``train`` with plain rows and two
callables, and gets a JSON-serialisable result.

- ``on_progress(step, total_steps, epoch, metrics)`` after every optimizer step (``metrics`` holds the step's
  loss, accuracy and learning rate, throughput, and the held-out ``eval_*`` figures after an evaluation);
- ``should_stop()`` before every step: when it returns True the run writes a checkpoint of the last finished
  step and returns ``status="cancelled"`` at once;
- checkpoints every ``save_steps`` in ``output_dir/checkpoints/step-N`` (weights, optimizer, scheduler,
  random state, position in the data, history). ``train(..., resume_from=latest_checkpoint(output_dir))``
  continues a crashed or cancelled run exactly where it stopped; the batch order is a function of
  (seed, epoch), so the resumed run sees the same batches as an uninterrupted one;
- validation: ``eval_rows``, or when none are given a prompt-disjoint share of ``train_rows``
  (``validation_share``, seeded by ``validation_seed``; ``data.hold_out_validation``), so every run has a
  validation report. The pairs are evaluated every ``eval_steps`` steps and at the end of every epoch;
- model selection: the weights of the best evaluation by ``selection_metric`` (lowest loss or highest
  accuracy) are kept in ``output_dir/best`` (and, hard-linked, in every checkpoint, so a resumed run knows its
  best); after ``early_stopping_patience`` evaluations without improvement the run stops; the model written
  is the best one, and ``TrainResult.selection`` says which step it came from;
- calibration (``calibrate``): a temperature fitted on the validation pairs (``calibration``), saved with
  the model and used by scoring;
- at the end the kept model's full validation report is computed and the model is written to
  ``output_dir/model`` (see ``artifacts.save_reward_model``).

For a hyperparameter search or an ensemble, ``train`` is the unit: it trains one model on given training and
validation rows (or a split it makes) with given hyperparameters, reports each evaluation through
``on_progress`` (``eval_loss``, ``eval_accuracy``; a pruner answers through ``should_stop``), and returns
the kept model's validation report (``evaluation``), the step it came from (``selection``) and its directory
(``artifact_dir``).

A step is ``gradient_accumulation_steps`` micro-batches of ``batch_size`` pairs; the loss of a step is its
pairs' weighted mean whatever the accumulation, so accumulating gives the gradient of the large batch.

Data parallel: called in every rank of a ``torch.distributed`` process group (torchrun; ``launch.py`` starts
one), ``train`` runs the reward forward under DistributedDataParallel. The steps are those of one process,
whatever the number of ranks (the hyperparameters, not the hardware, decide what is computed): each rank
takes its share of every micro-batch and DDP averages the gradients, so a step's update is the one process's
up to float rounding. Rank 0 alone calls ``should_stop`` (its answer is sent to every rank) and
``on_progress``, evaluates, and writes checkpoints and the model; the other ranks return without an artifact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardtrain.training.artifacts import save_reward_model
from rewardtrain.training.calibration import calibration_report
from rewardtrain.training.checkpoints import (
    BEST_DIR,
    latest_checkpoint,
    load_best,
    read_checkpoint_state,
    restore_checkpoint,
    save_best,
    write_checkpoint,
)
from rewardtrain.training.config import TrainConfig
from rewardtrain.training.data import (
    PairDataset,
    build_pair_dataset,
    hold_out_validation,
    length_grouped_batches,
    plan_pairs,
)
from rewardtrain.training.data.split import given_validation
from rewardtrain.training.errors import CheckpointError, ConfigError, DataError
from rewardtrain.training.evaluate import evaluate_scores
from rewardtrain.training.loss import pair_losses
from rewardtrain.training.model import RewardForward, RewardModel, load_reward_model, score_sequences
from rewardtrain.training.optim import adamw, learning_rate_schedule
from rewardtrain.training.result import TrainResult, training_timing
from rewardtrain.training.selection import Selection

ProgressCallback = Callable[[int, int, float, dict[str, Any]], None]
# Checkpoint helpers, re-exported: callers find a run's checkpoints through the trainer.
__all__ = ["BEST_DIR", "TrainResult", "latest_checkpoint", "read_checkpoint_state", "train"]
# Fields that may change between a checkpoint and its resumption: they do not change what is computed.
RESUMABLE_CHANGES = frozenset({"eval_steps", "save_steps", "save_total_limit", "eval_batch_size"})


def process_group() -> tuple[int, int]:
    """(rank, world size) of the ``torch.distributed`` group this process trains in; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        reward_model: RewardModel,
        train_data: PairDataset,
        eval_data: PairDataset | None,
        output_dir: Path,
    ):
        self.config = config
        self.reward_model = reward_model
        self.train_data = train_data
        self.eval_data = eval_data
        self.output_dir = output_dir
        self.rank, self.world_size = process_group()
        self.forward: torch.nn.Module = RewardForward(reward_model)
        self.shared_prefix = self._shared_prefix()
        # Length grouping packs prompt groups, so an epoch has at least pairs / batch size batches and often
        # more, a number that changes with the epoch: the schedule is sized by the batches actually made.
        self.epochs = [self.epoch_steps(epoch) for epoch in range(config.num_epochs)]
        self.epoch_starts = np.cumsum([0] + [len(steps) for steps in self.epochs]).tolist()
        self.total_steps = self.epoch_starts[-1]
        self.optimizer = adamw(reward_model.model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, learning_rate_schedule(config, self.total_steps)
        )
        self.step = 0
        self.epoch_ends = set(self.epoch_starts[1:])
        self.selection = Selection(config.selection_metric, patience=config.early_stopping_patience)
        # (step, chosen rewards, rejected rewards) of the best evaluation made by this process.
        self.best_scores: tuple[int, np.ndarray, np.ndarray] | None = None
        self.checkpoint_dir: Path | None = None
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.counters = {
            "train_seconds": 0.0,
            "train_cpu_seconds": 0.0,
            "eval_seconds": 0.0,
            "pairs": 0,
            "sequences": 0,
            "real_tokens": 0,
            "processed_tokens": 0,
        }
        device = reward_model.device
        self.margin = (
            torch.from_numpy(train_data.margin).to(device) if self._use_margins(train_data) else None
        )
        self.vote_share = (
            torch.from_numpy(train_data.vote_share).to(device) if self._use_vote_share(train_data) else None
        )
        self.weight = torch.from_numpy(train_data.weight).to(device)

    def _use_margins(self, data: PairDataset) -> bool:
        return self.config.use_margins and data.has_margin

    def _use_vote_share(self, data: PairDataset) -> bool:
        return self.config.use_soft_labels and data.has_vote_share

    def _shared_prefix(self) -> bool:
        choice = self.config.shared_prefix
        possible = self.reward_model.can_share_prefix()
        if choice == "on" and not possible:
            raise ConfigError(
                "shared_prefix",
                "needs a decoder model with a score head, pooling 'first' and gradient checkpointing off",
            )
        return possible and choice != "off"

    # --- the loop ------------------------------------------------------------------------------------------

    def epoch_steps(self, epoch: int) -> list[list[np.ndarray]]:
        batches = length_grouped_batches(
            self.train_data, self.config.batch_size, seed=self.config.seed, epoch=epoch
        )
        accumulation = self.config.gradient_accumulation_steps
        return [batches[i : i + accumulation] for i in range(0, len(batches), accumulation)]

    def epoch_at(self, step: int) -> float:
        """Epochs done after ``step`` steps: whole epochs plus the share of the current one's steps."""
        epoch = max(0, int(np.searchsorted(self.epoch_starts, step, side="left")) - 1)
        if epoch >= len(self.epochs):
            return float(len(self.epochs))
        return round(epoch + (step - self.epoch_starts[epoch]) / len(self.epochs[epoch]), 6)

    def distribute(self) -> None:
        """Wraps the reward forward in DistributedDataParallel (after any checkpoint is loaded: DDP starts
        from rank 0's weights)."""
        if self.world_size == 1:
            return
        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None: the inputs are a SequencePlan of numpy arrays, which the forward moves itself.
        # Buffers (rotary frequencies, position ids) never change, so they are not broadcast every forward.
        self.forward = DistributedDataParallel(
            RewardForward(self.reward_model), device_ids=None, broadcast_buffers=False
        )

    def stop_requested(self, should_stop: Callable[[], bool] | None) -> str | None:
        """ "cancel" when ``should_stop`` says so, "early" when the patience is spent, else None. Rank 0 decides;
        every rank gets its answer, so all of them stop at the same step."""
        code = 0
        if self.rank == 0:
            if should_stop is not None and should_stop():
                code = 1
            elif self.selection.patience_spent:
                code = 2
        if self.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([code], device=self.reward_model.device)
            dist.broadcast(flag, src=0)
            code = int(flag.item())
        return {0: None, 1: "cancel", 2: "early"}[code]

    def run(self, on_progress: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> str:
        model = self.reward_model.model
        model.train()
        self.distribute()
        main = self.rank == 0
        for epoch, steps in enumerate(self.epochs):
            for index, micro_batches in enumerate(steps):
                step = self.epoch_starts[epoch] + index + 1
                if step <= self.step:
                    continue  # done before the checkpoint this run resumed from
                stop = self.stop_requested(should_stop)
                if stop == "early":
                    self.selection.stopped_early_at = self.step
                    return "completed"
                if stop == "cancel":
                    if main:
                        self.save_checkpoint()
                    return "cancelled"
                started, started_cpu = time.perf_counter(), time.process_time()
                # A caller (a worker that also scores) may have switched autograd off for its thread.
                with torch.enable_grad():
                    metrics = self.train_step(micro_batches)
                elapsed = time.perf_counter() - started
                self.step = step
                self.counters["train_seconds"] += elapsed
                self.counters["train_cpu_seconds"] += time.process_time() - started_cpu
                metrics.update(
                    step=step,
                    epoch=self.epoch_at(step),
                    seconds=elapsed,
                    pairs_per_second=self.counters["pairs"] / self.counters["train_seconds"],
                )
                self.history.append(metrics)
                if not main:
                    continue
                eval_steps = self.config.eval_steps
                if (eval_steps and step % eval_steps == 0) or step in self.epoch_ends:
                    report = self.evaluate_step(step)
                    metrics = {**metrics, **{f"eval_{k}": v for k, v in report.items() if k != "step"}}
                if self.config.save_steps and step % self.config.save_steps == 0:
                    self.save_checkpoint()
                if on_progress is not None:
                    on_progress(step, self.total_steps, metrics["epoch"], metrics)
        return "completed"

    def share(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's pairs of a micro-batch and the factor its loss is scaled by before ``backward``.

        DDP averages the ranks' gradients; each rank's loss is its pairs' part of the step's loss, so scaling
        by the world size makes the average their sum, the gradient of the whole step. Batches are packed by
        prompt group, so contiguous shares keep a prompt's pairs (and their shared prefix) together."""
        if self.world_size == 1:
            return batch, 1.0
        share = np.array_split(batch, self.world_size)[self.rank]
        if len(share) == 0:
            # Fewer pairs than ranks: a stand-in pair with no weight, so this rank still joins the all-reduce.
            return batch[:1], 0.0
        return share, float(self.world_size)

    def train_step(self, micro_batches: list[np.ndarray]) -> dict[str, Any]:
        config = self.config
        pairs = np.concatenate(micro_batches)
        weight_total = float(self.train_data.weight[pairs].sum())
        pair_count = len(pairs)
        # loss, correct pairs, real tokens, sequences, processed tokens: this rank's, summed over the ranks.
        sums = np.zeros(5, dtype=np.float64)
        for position, batch in enumerate(micro_batches):
            share, scale = self.share(batch)
            last = position == len(micro_batches) - 1
            # Gradients are all-reduced once per step, after the last micro-batch.
            with self.forward.no_sync() if self.world_size > 1 and not last else contextlib.nullcontext():
                sums += self.micro_step(share, scale, weight_total=weight_total, pair_count=pair_count)
        if self.world_size > 1:
            import torch.distributed as dist

            reduced = torch.from_numpy(sums).to(self.reward_model.device)
            dist.all_reduce(reduced)
            sums = reduced.cpu().numpy()
        loss_total, correct, tokens, sequences, processed = sums.tolist()
        self.counters["sequences"] += int(sequences)
        self.counters["real_tokens"] += int(tokens)
        self.counters["processed_tokens"] += int(processed)
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.reward_model.model.parameters() if p.requires_grad], config.max_grad_norm
            )
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.counters["pairs"] += pair_count
        return {
            "loss": loss_total,
            "accuracy": correct / pair_count,
            "learning_rate": learning_rate,
            "pairs": pair_count,
            "tokens": int(tokens),
        }

    def micro_step(
        self, batch: np.ndarray, scale: float, *, weight_total: float, pair_count: int
    ) -> np.ndarray:
        """Forward and backward of one micro-batch (``scale`` 0: a stand-in that counts for nothing); returns
        its loss, correct pairs, real tokens, sequences and processed tokens."""
        config, reward_model = self.config, self.reward_model
        plan, chosen_rows, rejected_rows = plan_pairs(
            self.train_data,
            batch,
            pad_token_id=reward_model.pad_token_id,
            shared_prefix=self.shared_prefix,
            deduplicate=config.deduplicate_sequences,
            chunk_overhead_tokens=config.chunk_overhead_tokens,
        )
        rewards = self.forward(plan)
        device = rewards.device
        index = torch.from_numpy(batch).to(device)
        chosen = rewards.index_select(0, torch.from_numpy(chosen_rows).to(device))
        rejected = rewards.index_select(0, torch.from_numpy(rejected_rows).to(device))
        losses = pair_losses(
            chosen,
            rejected,
            margin=None if self.margin is None else self.margin.index_select(0, index),
            vote_share=None if self.vote_share is None else self.vote_share.index_select(0, index),
        )
        weight = self.weight.index_select(0, index)
        loss = (losses * weight).sum() / weight_total if weight_total > 0 else losses.sum() * 0.0
        if config.center_rewards_coefficient:
            loss = loss + config.center_rewards_coefficient * ((chosen + rejected) ** 2).sum() / pair_count
        (loss * scale).backward()
        if scale == 0:
            return np.zeros(5)
        return np.array(
            [
                float(loss.detach()),
                int((chosen > rejected).sum()),
                plan.real_tokens,
                len(plan.sequence_ids),
                plan.processed_tokens,
            ],
            dtype=np.float64,
        )

    # --- evaluation ----------------------------------------------------------------------------------------

    def validation_rewards(self) -> tuple[np.ndarray, np.ndarray]:
        """The rewards of every validation pair's chosen and rejected response."""
        data = self.eval_data
        rewards = score_sequences(
            self.reward_model,
            data,
            sequences_per_batch=2 * self.config.eval_batch_size,
            shared_prefix=self.shared_prefix,
            chunk_overhead_tokens=self.config.chunk_overhead_tokens,
        )
        return rewards[data.chosen], rewards[data.rejected]

    def report(self, chosen: np.ndarray, rejected: np.ndarray) -> dict[str, Any]:
        data = self.eval_data
        lengths = data.continuation_lengths
        return evaluate_scores(
            chosen,
            rejected,
            vote_share=self.vote_shares(),
            agreement=data.agreement,
            margin=data.margin if self._use_margins(data) else None,
            chosen_length=lengths[data.chosen],
            rejected_length=lengths[data.rejected],
        )

    def validation_pairs(self, chosen: np.ndarray, rejected: np.ndarray) -> dict[str, Any]:
        """The validation pairs' rewards with what ``report`` needs besides them, JSON-ready: an ensemble
        evaluates its members' combined rewards with it."""
        data = self.eval_data
        lengths = data.continuation_lengths
        shares = self.vote_shares()
        return {
            "chosen": chosen.tolist(),
            "rejected": rejected.tolist(),
            "chosen_length": lengths[data.chosen].tolist(),
            "rejected_length": lengths[data.rejected].tolist(),
            "vote_share": None if shares is None else [None if np.isnan(v) else float(v) for v in shares],
            "margin": data.margin.tolist() if self._use_margins(data) else None,
            "agreement": list(data.agreement),
        }

    def vote_shares(self) -> np.ndarray | None:
        return self.eval_data.vote_share if self.eval_data.has_vote_share else None

    def evaluate_step(self, step: int) -> dict[str, Any]:
        """Evaluates the model of ``step``, records it, and keeps its weights when it is the best so far."""
        started = time.perf_counter()
        chosen, rejected = self.validation_rewards()
        full = self.report(chosen, rejected)
        report = {"step": step, "accuracy": full["accuracy"], "loss": full["loss"], "ece": full["ece"]}
        self.eval_history.append(report)
        if self.selection.consider(step, self.epoch_at(step), report):
            self.best_scores = (step, chosen, rejected)
            if self.selection.keeps_weights:
                save_best(self.output_dir, self.reward_model.model)
        self.counters["eval_seconds"] += time.perf_counter() - started
        return report

    def keep_best(self) -> tuple[np.ndarray, np.ndarray]:
        """Puts the best evaluation's weights back into the model (unless they are the last step's) and returns
        its validation rewards."""
        best_step = self.selection.best_step
        if self.selection.keeps_weights and best_step is not None and best_step != self.step:
            load_best(self.output_dir, self.reward_model.model, self.reward_model.device)
        if self.best_scores is not None and self.best_scores[0] == best_step:
            return self.best_scores[1], self.best_scores[2]
        return self.validation_rewards()

    # --- checkpoints -----------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        self.checkpoint_dir = write_checkpoint(
            self.output_dir,
            step=self.step,
            model=self.reward_model.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state={
                "total_steps": self.total_steps,
                "config": self.config.to_dict(),
                "history": self.history,
                "eval_history": self.eval_history,
                "counters": self.counters,
                "selection": self.selection.to_dict(),
            },
            with_best=self.selection.keeps_weights and self.selection.best_step is not None,
            keep=self.config.save_total_limit,
        )
        return self.checkpoint_dir

    def load_checkpoint(self, path: Path) -> None:
        state = restore_checkpoint(
            path,
            self.output_dir,
            model=self.reward_model.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            device=self.reward_model.device,
            total_steps=self.total_steps,
        )
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.eval_history = list(state["eval_history"])
        self.counters = dict(state["counters"])
        self.selection = Selection.from_dict(state["selection"], patience=self.config.early_stopping_patience)
        self.checkpoint_dir = path


def encode_rows(
    rows: Iterable[Mapping[str, Any]], reward_model: RewardModel, config: TrainConfig
) -> PairDataset:
    """Preference rows as training encodes them (tokens, truncation, closing token)."""
    return build_pair_dataset(rows, reward_model.tokenizer, kind=reward_model.kind, **config.encoding())


def train(
    config: TrainConfig | Mapping[str, Any],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    *,
    output_dir: str | Path,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: str | Path | None = None,
    policy: Any = None,
) -> TrainResult:
    """Train a reward model on preference rows (see ``data``), validate it on ``eval_rows`` (without them, on a
    prompt-disjoint share of ``train_rows``: ``validation_share``) and keep its best evaluation's weights.

    Raises ConfigError, DataError, ModelLoadError or CheckpointError (all TrainingError) before the first step
    when the run cannot start (DataError also when there is no validation split to make: one prompt).
    ``policy`` (any JSON value) is written into the model card.
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    train_rows = list(train_rows)
    if not train_rows:
        raise DataError(None, "there are no training pairs")
    eval_rows = list(eval_rows) if eval_rows is not None else []
    if eval_rows:
        validation = given_validation(eval_rows)
    else:
        train_rows, eval_rows, validation = hold_out_validation(
            train_rows, share=config.validation_share, seed=config.validation_seed
        )
    output_dir = Path(output_dir)
    resume_path = Path(resume_from) if resume_from is not None else None
    if resume_path is not None:
        state = read_checkpoint_state(resume_path)
        changed = sorted(
            name
            for name, value in config.to_dict().items()
            if state["config"].get(name) != value and name not in RESUMABLE_CHANGES
        )
        if changed:
            raise CheckpointError(
                f"checkpoint {resume_path} was written with different hyperparameters ({', '.join(changed)})"
            )

    torch.manual_seed(config.seed)
    reward_model = load_reward_model(
        config.base_model,
        device=device,
        disable_dropout=config.disable_dropout,
        gradient_checkpointing=config.gradient_checkpointing,
        mixed_precision=config.mixed_precision,
        pooling=config.pooling,
        lora={"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout}
        if config.use_lora
        else None,
    )
    if reward_model.max_positions and config.max_length > reward_model.max_positions:
        raise ConfigError(
            "max_length",
            f"{config.base_model} reads at most {reward_model.max_positions} tokens, got {config.max_length}",
        )

    train_data = encode_rows(train_rows, reward_model, config)
    eval_data = encode_rows(eval_rows, reward_model, config)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(config, reward_model, train_data, eval_data, output_dir)
    if resume_path is not None:
        trainer.load_checkpoint(resume_path)

    status = trainer.run(on_progress, should_stop)
    data = {
        "train": train_data.report.to_dict(),
        "eval": eval_data.report.to_dict(),
        "validation": validation.to_dict(),
    }
    timing = training_timing(trainer.counters, shared_prefix=trainer.shared_prefix)
    result = TrainResult(
        status=status,
        global_step=trainer.step,
        total_steps=trainer.total_steps,
        epoch=trainer.epoch_at(trainer.step),
        device=str(reward_model.device),
        checkpoint_dir=str(trainer.checkpoint_dir) if trainer.checkpoint_dir else None,
        history=trainer.history,
        eval_history=trainer.eval_history,
        data=data,
        timing=timing,
        selection=trainer.selection.to_dict(),
    )
    if status != "completed" or trainer.rank != 0:
        return result
    chosen, rejected = trainer.keep_best()
    result.evaluation = trainer.report(chosen, rejected)
    result.validation_rewards = trainer.validation_pairs(chosen, rejected)
    if config.calibrate:
        result.calibration = calibration_report(chosen, rejected, vote_share=trainer.vote_shares())
    artifact = save_reward_model(
        reward_model,
        output_dir / "model",
        config=config,
        evaluation=result.evaluation,
        data=data,
        policy=policy,
        selection=result.selection,
        calibration=result.calibration,
    )
    result.artifact_dir = str(artifact)
    return result
