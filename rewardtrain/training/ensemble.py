"""Ensembles: ``ensemble_size`` reward models trained as one run, saved as one model directory.

    result = train_ensemble(config, train_rows, eval_rows, output_dir=run_dir, on_progress=..., should_stop=...)

Same arguments and result as ``trainer.train`` (which it calls, or ``train_member``: ``launch``'s
``train_in_processes`` with its ``processes`` bound), and with ``ensemble_size`` 1 it is ``train``. Otherwise
member i trains with seed ``seed + i`` in ``output_dir/members/member-i`` on the same validation split
(``validation_seed`` decides it, not ``seed``); a finished member leaves its result there (``result.json``), so
a resumed run goes on with the first unfinished member, from its latest checkpoint. Progress steps count on
across members (the total assumes the members yet to train take as many steps as the current one).

The ensemble's score of a response is the mean of its members' rewards, each centred by the member's mean
reward on the validation pairs (a Bradley-Terry reward has an arbitrary zero, which must not count as
disagreement); the members' standard deviation is the score's uncertainty. The validation report, the
calibration temperature and the reward statistics are those of the combined score. The model directory is
member 0's (loadable alone with ``AutoModelForSequenceClassification``), with the other members under
``members/`` and the ensemble described in ``config.palate`` (``artifacts.save_ensemble``).

``ensemble_combine`` makes such a model of members trained apart on the same validation pairs: a search's
best trials (``SearchConfig.ensemble_top_k``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rewardtrain.training.artifacts import save_ensemble
from rewardtrain.training.calibration import calibration_report
from rewardtrain.training.config import TrainConfig
from rewardtrain.training.evaluate import evaluate_scores
from rewardtrain.training.trainer import ProgressCallback, TrainResult, latest_checkpoint, train

MEMBERS_DIR = "members"
MEMBER_RESULT = "result.json"


def member_directory(output_dir: str | Path, index: int) -> Path:
    return Path(output_dir) / MEMBERS_DIR / f"member-{index}"


def train_ensemble(
    config: TrainConfig | Mapping[str, Any],
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    *,
    output_dir: str | Path,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: str | Path | None = None,
    train_member: Callable[..., TrainResult] = train,
    **arguments: Any,
) -> TrainResult:
    """Train ``config.ensemble_size`` members and combine them (see the module's docstring). ``resume_from``
    is used by a single model only: each member resumes from its own latest checkpoint."""
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(dict(config))
    output_dir = Path(output_dir)
    if config.ensemble_size == 1:
        return train_member(
            config,
            train_rows,
            eval_rows,
            output_dir=output_dir,
            on_progress=on_progress,
            should_stop=should_stop,
            resume_from=resume_from,
            **arguments,
        )
    train_rows = list(train_rows)
    eval_rows = list(eval_rows) if eval_rows is not None else None
    size = config.ensemble_size
    results: list[TrainResult] = []
    done_steps = 0
    for index in range(size):
        directory = member_directory(output_dir, index)
        saved = directory / MEMBER_RESULT
        if saved.is_file():
            result = TrainResult(**json.loads(saved.read_text()))
            # The member's folder may have been fetched into another worker's scratch folder since.
            result = replace(result, artifact_dir=str(directory / Path(result.artifact_dir or "model").name))
        else:
            result = train_member(
                replace(config, seed=config.seed + index, ensemble_size=1),
                train_rows,
                eval_rows,
                output_dir=directory,
                on_progress=_member_progress(on_progress, index, size, done_steps),
                should_stop=should_stop,
                resume_from=latest_checkpoint(directory),
                **arguments,
            )
            if result.status != "completed":
                return replace(
                    result,
                    global_step=done_steps + result.global_step,
                    total_steps=done_steps + result.total_steps * (size - index),
                )
            saved.write_text(json.dumps(result.to_dict(), default=str))
        results.append(result)
        done_steps += result.global_step
    members = [{"seed": config.seed + index} for index in range(size)]
    return ensemble_combine(
        results,
        output_dir,
        members=members,
        calibrate=config.calibrate,
        selection_metric=config.selection_metric,
    )


def resume_step(output_dir: str | Path, ensemble_size: int) -> int | None:
    """The step (counted as progress counts it) a run in ``output_dir`` resumes from, or None for a fresh
    start: a single model's latest checkpoint; an ensemble's finished members' steps plus the latest
    checkpoint of the first unfinished one."""
    if ensemble_size == 1:
        checkpoint = latest_checkpoint(output_dir)
        return int(checkpoint.name.removeprefix("step-")) if checkpoint is not None else None
    done = 0
    for index in range(ensemble_size):
        directory = member_directory(output_dir, index)
        saved = directory / MEMBER_RESULT
        if saved.is_file():
            done += int(json.loads(saved.read_text())["global_step"])
            continue
        checkpoint = latest_checkpoint(directory)
        step = done + (int(checkpoint.name.removeprefix("step-")) if checkpoint is not None else 0)
        return step or None
    return done or None


def _member_progress(
    on_progress: ProgressCallback | None, index: int, size: int, done_steps: int
) -> ProgressCallback | None:
    if on_progress is None:
        return None

    def report(step: int, total_steps: int, epoch: float, metrics: dict[str, Any]) -> None:
        on_progress(
            done_steps + step, done_steps + total_steps * (size - index), epoch, {**metrics, "member": index}
        )

    return report


def combine_member_rewards(
    chosen: np.ndarray, rejected: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members' (members, pairs) rewards of the chosen and rejected responses, centred by each member's
    offset: the ensemble's chosen and rejected rewards (the means) and every response's uncertainty (the
    standard deviation, chosen responses first)."""
    offsets = np.asarray(offsets, dtype=np.float64)[:, None]
    chosen = np.asarray(chosen, dtype=np.float64) - offsets
    rejected = np.asarray(rejected, dtype=np.float64) - offsets
    spread = np.concatenate([chosen.std(axis=0), rejected.std(axis=0)])
    return chosen.mean(axis=0), rejected.mean(axis=0), spread


def _array(values: list | None) -> np.ndarray | None:
    if values is None:
        return None
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def ensemble_combine(
    results: list[TrainResult],
    output_dir: str | Path,
    *,
    members: list[dict[str, Any]],
    calibrate: bool,
    selection_metric: str,
) -> TrainResult:
    """One ensemble model in ``output_dir/model`` of finished models (``results``, their model folders at
    ``artifact_dir``), evaluated, and calibrated when ``calibrate``, on their validation pairs, which must be
    the same pairs in the same order. ``members`` says what each member is (``{"seed": 42}`` or
    ``{"trial": 3, "params": {...}}``), for the report and the model card."""
    output_dir = Path(output_dir)
    pairs = results[0].validation_rewards
    same = ("chosen_length", "rejected_length", "agreement")
    if any(any(result.validation_rewards[key] != pairs[key] for key in same) for result in results):
        raise ValueError("the members were validated on different pairs")
    offsets = np.array([result.evaluation["reward_mean"] for result in results])
    chosen, rejected, spread = combine_member_rewards(
        np.array([result.validation_rewards["chosen"] for result in results]),
        np.array([result.validation_rewards["rejected"] for result in results]),
        offsets,
    )
    vote_share = _array(pairs["vote_share"])
    evaluation = evaluate_scores(
        chosen,
        rejected,
        vote_share=vote_share,
        agreement=pairs["agreement"],
        margin=_array(pairs["margin"]),
        chosen_length=pairs["chosen_length"],
        rejected_length=pairs["rejected_length"],
    )
    described = [
        {
            **members[index],
            "accuracy": result.evaluation["accuracy"],
            "loss": result.evaluation["loss"],
            "best_step": result.selection.get("best_step"),
            "stopped_early_at": result.selection.get("stopped_early_at"),
            "offset": float(offsets[index]),
        }
        for index, result in enumerate(results)
    ]
    evaluation["ensemble"] = {
        "size": len(results),
        "uncertainty_mean": float(spread.mean()),
        "uncertainty_max": float(spread.max()) if spread.size else None,
        "members": described,
    }
    calibration = calibration_report(chosen, rejected, vote_share=vote_share) if calibrate else None
    model_dir = output_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    save_ensemble(
        [Path(result.artifact_dir) for result in results],
        model_dir,
        offsets=offsets.tolist(),
        evaluation=evaluation,
        calibration=calibration,
    )
    first = results[0]
    steps = sum(result.global_step for result in results)
    return TrainResult(
        status="completed",
        global_step=steps,
        total_steps=steps,
        epoch=first.epoch,
        device=first.device,
        artifact_dir=str(model_dir),
        history=[entry for result in results for entry in result.history],
        eval_history=[
            {**entry, "member": index} for index, r in enumerate(results) for entry in r.eval_history
        ],
        evaluation=evaluation,
        data=first.data,
        timing=_timing(results),
        selection={"metric": selection_metric, "members": [result.selection for result in results]},
        calibration=calibration,
        validation_rewards={**pairs, "chosen": chosen.tolist(), "rejected": rejected.tolist()},
    )


def _timing(results: list[TrainResult]) -> dict[str, Any]:
    seconds = sum(result.timing.get("train_seconds") or 0.0 for result in results)
    pairs = sum(
        (result.timing.get("pairs_per_second") or 0.0) * (result.timing.get("train_seconds") or 0.0)
        for result in results
    )
    return {
        **results[0].timing,
        "train_seconds": seconds,
        "train_cpu_seconds": sum(result.timing.get("train_cpu_seconds") or 0.0 for result in results),
        "eval_seconds": sum(result.timing.get("eval_seconds") or 0.0 for result in results),
        "pairs_per_second": pairs / seconds if seconds else None,
    }
