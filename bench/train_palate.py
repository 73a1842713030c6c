"""Palate's side of ``bench/train.py``: its runs (one model, an ensemble, a hyperparameter search) and the
held-out scoring every model of the benchmark goes through, TRL's too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    from rewardtrain.training.data import install_default_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    install_default_chat_template(tokenizer, "encoder")
    return tokenizer


def held_out_rewards(models, tokenizer, test_rows, max_length: int, offsets=None) -> dict[str, Any]:
    """The held-out pairs' rewards by ``models`` (one model, or an ensemble's members each centred by its
    offset and averaged, as Palate's scoring combines them), with which pairs fit untruncated."""
    import numpy as np
    import torch

    from rewardtrain.training.data import build_pair_dataset
    from rewardtrain.training.model import RewardModel, score_sequences

    data = build_pair_dataset(test_rows, tokenizer, kind="encoder", max_length=max_length)
    wide = build_pair_dataset(test_rows, tokenizer, kind="encoder", max_length=100_000)
    lengths = wide.sequence_lengths
    fits = np.maximum(lengths[wide.chosen], lengths[wide.rejected]) <= max_length
    offsets = offsets or [0.0] * len(models)
    member_rewards = []
    for model, offset in zip(models, offsets, strict=True):
        scorer = RewardModel(
            model=model,
            tokenizer=tokenizer,
            kind="encoder",
            base_model="",
            device=torch.device("cpu"),
            autocast_dtype=None,
            max_positions=512,
            added_pad_token=False,
            installed_chat_template=False,
        )
        member_rewards.append(score_sequences(scorer, data, sequences_per_batch=32) - offset)
    rewards = np.mean(member_rewards, axis=0)
    return {"chosen": rewards[data.chosen], "rejected": rewards[data.rejected], "fits": fits}


def held_out_accuracy(rewards: dict[str, Any], temperature: float = 1.0) -> dict[str, Any]:
    """Accuracy on every held-out pair and on the pairs that fit untruncated, and the held-out ECE of the raw
    probabilities and of those divided by ``temperature`` (fitted on the validation pairs, never these)."""
    from rewardtrain.training.evaluate import evaluate_scores, pairwise_accuracy

    chosen, rejected, fits = rewards["chosen"], rewards["rejected"], rewards["fits"]
    return {
        "all": pairwise_accuracy(chosen, rejected),
        "fits": pairwise_accuracy(chosen[fits], rejected[fits]),
        "pairs": len(chosen),
        "pairs_that_fit": int(fits.sum()),
        "ece": evaluate_scores(chosen, rejected)["ece"],
        "ece_calibrated": evaluate_scores(chosen / temperature, rejected / temperature)["ece"],
    }


def palate_config(args, precision: str) -> dict[str, Any]:
    """The hyperparameters every Palate run here shares (a search's trials replace the searched ones)."""
    return {
        "base_model": str(args.model),
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "num_epochs": args.epochs,
        "max_length": args.max_length,
        "lr_scheduler": "linear",
        "seed": args.seed,
        "save_steps": 0,
        "mixed_precision": "bf16" if precision == "bf16" else "no",
    }


def run_palate(
    train_rows,
    validation_rows,
    test_rows,
    args,
    work: Path,
    precision: str,
    *,
    label: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from rewardtrain.training.ensemble import train_ensemble

    started = time.perf_counter()
    result = train_ensemble(
        {**palate_config(args, precision), **(overrides or {})},
        train_rows,
        validation_rows,
        output_dir=work / "palate",
        device="cpu",
    )
    wall = time.perf_counter() - started
    return palate_summary(result, test_rows, args, label=label or f"Palate, {precision}", wall=wall)


def palate_summary(result, test_rows, args, *, label: str, wall: float) -> dict[str, Any]:
    """A Palate model's figures: its training's counters, and its held-out accuracy scored as Palate scores
    (an ensemble: its members' offset-centred mean)."""
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(result.artifact_dir)
    ensemble = json.loads((model_dir / "config.json").read_text()).get("palate", {}).get("ensemble") or {}
    members = ensemble.get("members", ["."])
    models = [AutoModelForSequenceClassification.from_pretrained(model_dir / member) for member in members]
    tokenizer = load_tokenizer(model_dir)
    rewards = held_out_rewards(models, tokenizer, test_rows, args.max_length, ensemble.get("offsets"))
    calibration = result.calibration or {}
    report = result.data["train"]
    timing = result.timing
    pairs = timing["pairs_per_second"] * timing["train_seconds"]  # every member's, an early stop's fewer
    return {
        "trainer": label,
        "tokens_trained": round(timing["tokens_per_second"] * timing["train_seconds"]),
        "pairs_trained": report["pairs"],
        "dropped": report["dropped"],
        "truncated": report["prompt_truncated"],
        "responses_truncated": report["response_truncated"],
        "padding_share": timing["padding_share"],
        "sequences_per_pair": timing["sequences_per_pair"],
        "tokens_computed": round(
            timing["tokens_per_second"] * timing["train_seconds"] / (1 - timing["padding_share"])
        ),
        "train_seconds": timing["train_seconds"],
        "eval_seconds": timing["eval_seconds"],
        "pairs_per_second": timing["pairs_per_second"],
        "pairs_per_second_with_eval": pairs / (timing["train_seconds"] + timing["eval_seconds"]),
        "cpu_seconds": timing["train_cpu_seconds"],
        "wall_seconds": wall,
        "validation_accuracy": result.evaluation["accuracy"],
        "calibration": {
            key: calibration.get(key) for key in ("temperature", "pairs", "ece_before", "ece_after")
        },
        "accuracy": held_out_accuracy(rewards, calibration.get("temperature") or 1.0),
    }


def run_search(train_rows, validation_rows, test_rows, args, work: Path, precision: str) -> list[dict]:
    """A hyperparameter search as search mode runs it (Optuna's TPE sampler and median pruner on the same
    records, ``rewardtrain.training.search``), one trial after another in this process, each trial on the
    first ``--search-share`` of the training pairs and ranked on the validation pairs. Returns the best
    trial's row and, with ``--search-top-k`` above 1, the row of the ensemble of the best k trials
    (``ensemble_combine``, as a search run with ``ensemble_top_k`` makes it). Each row's train and eval
    seconds are the whole search's."""
    from rewardtrain.training.ensemble import ensemble_combine
    from rewardtrain.training.search import (
        SearchConfig,
        TrialRecord,
        trial_ranked,
        trial_should_prune,
        trial_suggest,
    )
    from rewardtrain.training.trainer import train

    search = SearchConfig.from_dict(
        {
            "trials": args.search_trials,
            "parallel": 1,
            "metric": args.search_metric,
            "seed": args.seed,
            "ensemble_top_k": max(1, min(args.search_top_k, args.search_trials)),
            "space": {"num_epochs": [1, args.search_max_epochs]},
        }
    )
    subset = train_rows[: round(len(train_rows) * args.search_share)]
    print(
        f"  search: {search.trials} trials on {len(subset)} of the {len(train_rows)} training pairs, "
        f"ranked by validation {search.metric} ({len(validation_rows)} pairs)",
        flush=True,
    )
    started = time.perf_counter()
    records: list[TrialRecord] = []
    finished: dict[int, Any] = {}
    seconds = {"train": 0.0, "eval": 0.0}
    for number in range(search.trials):
        params = trial_suggest(search, records, use_lora=False)
        intermediate: dict[int, float] = {}
        pruned: list[int] = []

        def on_progress(step, total, epoch, metrics, number=number, params=params, intermediate=intermediate,
                        pruned=pruned):  # fmt: skip
            figure = metrics.get(f"eval_{search.metric}")
            if figure is None:
                return
            intermediate[step] = figure
            current = TrialRecord(number, params, "running", None, dict(intermediate))
            if step < total and not pruned and trial_should_prune(search, records, current, use_lora=False):
                pruned.append(step)

        result = train(
            {**palate_config(args, precision), **params},
            subset,
            validation_rows,
            output_dir=work / f"trial-{number}",
            device="cpu",
            on_progress=on_progress,
            should_stop=lambda pruned=pruned: bool(pruned),
        )
        seconds["train"] += result.timing.get("train_seconds") or 0.0
        seconds["eval"] += result.timing.get("eval_seconds") or 0.0
        if result.status == "completed":
            value, state = result.evaluation[search.metric], "complete"
            finished[number] = result
        else:
            value, state = list(intermediate.values())[-1], "pruned"
        records.append(TrialRecord(number, params, state, value, intermediate))
        shown = ", ".join(f"{name} {value:.3g}" for name, value in params.items())
        print(f"    trial {number}: {state}, validation {search.metric} {value:.4f} ({shown})", flush=True)
    ranked = trial_ranked(search, records)
    wall = time.perf_counter() - started
    rows = []
    best = finished[ranked[0].number]
    label = f"Palate, {precision}, search ({search.trials} trials, best: #{ranked[0].number})"
    rows.append(palate_summary(best, test_rows, args, label=label, wall=wall))
    top = ranked[: search.ensemble_top_k]
    if len(top) > 1:
        ensemble = ensemble_combine(
            [finished[record.number] for record in top],
            work / "top-k",
            members=[{"trial": record.number, "params": record.params} for record in top],
            calibrate=True,
            selection_metric=best.selection.get("metric"),
        )
        numbers = ", ".join(f"#{record.number}" for record in top)
        label = f"Palate, {precision}, ensemble of the search's best {len(top)} ({numbers})"
        rows.append(palate_summary(ensemble, test_rows, args, label=label, wall=wall))
    for row in rows:
        row["train_seconds"], row["eval_seconds"] = seconds["train"], seconds["eval"]
    return rows
