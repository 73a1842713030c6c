"""Resumable checkpoints and the best evaluation's weights, on disk under a run's output directory.

- ``checkpoints/step-N/``: weights, optimizer, scheduler, random state and ``trainer_state.json`` (written
  last: a checkpoint without it is incomplete and never resumed from), plus ``best.safetensors``, the best
  evaluation's weights as they stood at step N (a hard link where the file system allows one), so a run resumed
  from it knows its best model even where ``best/`` is gone;
- ``best/model.safetensors``: the best evaluation's weights, replaced (never rewritten in place, so the links
  in older checkpoints keep their content) at each new best.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from rewardtrain.training.errors import CheckpointError

CHECKPOINT_FORMAT = 2
STATE_FILE = "trainer_state.json"
BEST_DIR, BEST_WEIGHTS = "best", "best.safetensors"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints``, or None."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return None
    complete = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and p.name[5:].isdigit()]
    return max(complete, key=lambda p: int(p.name[5:]), default=None)


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint; CheckpointError when it is missing or unreadable."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"no complete checkpoint at {path}: {error}") from error
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state.get('format')}, expected {CHECKPOINT_FORMAT}"
        )
    return state


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content, atomically: a hard link where the file system allows one."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def best_weights(output_dir: Path) -> Path:
    return output_dir / BEST_DIR / "model.safetensors"


def save_best(output_dir: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save_model

    target = best_weights(output_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    save_model(model, str(partial))
    os.replace(partial, target)


def load_best(output_dir: Path, model: torch.nn.Module, device: Any) -> None:
    from safetensors.torch import load_model

    load_model(model, str(best_weights(output_dir)), device=str(device))


def write_checkpoint(
    output_dir: Path,
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    with_best: bool,
    keep: int,
) -> Path:
    """Writes ``checkpoints/step-<step>`` (``state`` is the trainer's JSON state), keeps the newest ``keep``
    checkpoints, and returns its path. ``with_best`` links the best weights into it."""
    from safetensors.torch import save_model

    root = output_dir / "checkpoints"
    final = root / f"step-{step}"
    partial = root / f".step-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_model(model, str(partial / "model.safetensors"))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(scheduler.state_dict(), partial / "scheduler.pt")
    random_state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        random_state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(random_state, partial / "random_state.pt")
    if with_best:
        link_or_copy(best_weights(output_dir), partial / BEST_WEIGHTS)
    (partial / STATE_FILE).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "step": step, **state}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    kept = sorted(
        (p for p in root.glob("step-*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]), reverse=True
    )
    for old in kept[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore_checkpoint(
    path: Path,
    output_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: Any,
    total_steps: int,
) -> dict[str, Any]:
    """Loads a checkpoint into the model, optimizer, scheduler and random generators, puts its best weights
    back in ``best/``, and returns its state. CheckpointError when it was written for another step count."""
    from safetensors.torch import load_model

    state = read_checkpoint_state(path)
    if state.get("total_steps") != total_steps:
        raise CheckpointError(
            f"checkpoint {path} was written for {state.get('total_steps')} steps, this run has {total_steps}:"
            " the training pairs differ"
        )
    load_model(model, str(path / "model.safetensors"), device=str(device))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    random_state = torch.load(path / "random_state.pt", weights_only=True)
    torch.set_rng_state(random_state["torch"])
    if "cuda" in random_state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(random_state["cuda"])
    if (path / BEST_WEIGHTS).is_file():
        best_weights(output_dir).parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path / BEST_WEIGHTS, best_weights(output_dir))
    return state
