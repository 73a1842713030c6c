"""Data-parallel training over several processes, started by torchrun (``torch.distributed.run``).

    result = train_in_processes(config, train_rows, eval_rows, processes=4, output_dir=run_dir,
                                on_progress=..., should_stop=..., resume_from=...)

Same arguments and result as ``trainer.train``, plus ``processes``. This process (a Celery task or the
command) starts torchrun, which starts the ranks (``python -m rewardtrain.training.launch rank JOB``); each
joins the process group (NCCL on GPUs, one GPU per rank; gloo on the CPU) and calls ``train``, which trains
under DistributedDataParallel. This process waits, relays rank 0's progress to ``on_progress`` and a
``should_stop()`` to the ranks. Everything travels through the folder ``output_dir/.launch``:

- ``job.json``, ``train.jsonl``, ``eval.jsonl``: written here before the start;
- ``events.jsonl``: rank 0 appends a line per progress call; read here as it grows;
- ``stop``: created here when ``should_stop()`` says so; rank 0 looks for it before every step and tells the
  other ranks, which all stop at the same step (rank 0 keeps a checkpoint);
- ``result.json`` (rank 0, at the end), ``error-<rank>.json`` (a rank that raised a TrainingError);
- ``torchrun.log``: the processes' output, whose end goes into the error of a failed launch.

When a rank dies, torchrun ends the others and exits non-zero: ``train_in_processes`` then raises the rank's
TrainingError (bad model, data or checkpoint: the run fails) or ``LaunchError`` (anything else: the caller
retries from the latest checkpoint, as after any crash). When this process stops waiting (a task's soft time
limit, Ctrl-C) it ends the processes first; when it is killed outright (a hard time limit), the kernel sends
torchrun SIGTERM (Linux parent-death signal), and torchrun ends the ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from palate.processes import process_alive
from rewardtrain.training.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelLoadError,
    TrainingError,
)

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ".launch"
JOB, EVENTS, STOP, RESULT, LOG = "job.json", "events.jsonl", "stop", "result.json", "torchrun.log"
POLL_SECONDS = 0.5
SHUTDOWN_SECONDS = 45  # torchrun gives its ranks 30 s after SIGTERM before it kills them
ERRORS = {
    cls.__name__: cls for cls in (ConfigError, DataError, ModelLoadError, CheckpointError, TrainingError)
}


class LaunchError(RuntimeError):
    """The training processes failed for a reason that is not the run's (a crash, a killed rank)."""


def train_in_processes(
    config: Any,
    train_rows: Iterable[Mapping[str, Any]],
    eval_rows: Iterable[Mapping[str, Any]] | None = None,
    *,
    processes: int,
    output_dir: str | Path,
    device: str = "auto",
    on_progress: Callable[[int, int, float, dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: str | Path | None = None,
    policy: Any = None,
    timeout_seconds: int = 1800,
) -> Any:
    """``trainer.train`` over ``processes`` data-parallel ranks (see the module's docstring).

    ``timeout_seconds`` bounds how long a rank waits for the others at a collective (rank 0 evaluates and
    writes checkpoints while they wait)."""
    from rewardtrain.training.config import TrainConfig
    from rewardtrain.training.trainer import TrainResult

    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    output_dir = Path(output_dir).resolve()
    job_dir = output_dir / LAUNCH_DIR
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    _write_rows(job_dir / "train.jsonl", train_rows)
    if eval_rows is not None:
        _write_rows(job_dir / "eval.jsonl", eval_rows)
    job = {
        "config": config.to_dict(),
        "has_eval": eval_rows is not None,
        "output_dir": str(output_dir),
        "device": device,
        "resume_from": str(resume_from) if resume_from is not None else None,
        "policy": policy,
        "timeout_seconds": timeout_seconds,
        "launcher_pid": os.getpid(),
    }
    (job_dir / JOB).write_text(json.dumps(job))
    command = [
        sys.executable, "-m", "rewardtrain.training.launch", "agent",
        "--standalone", f"--nproc-per-node={processes}", "--max-restarts=0",
        "-m", "rewardtrain.training.launch", "rank", str(job_dir),
    ]  # fmt: skip
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PALATE_LAUNCHER_PID": str(os.getpid()),
    }
    events = _EventReader(job_dir / EVENTS)
    with open(job_dir / LOG, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while True:
                code = process.poll()
                for step, total, epoch, metrics in events.read():
                    if on_progress is not None:
                        on_progress(step, total, epoch, metrics)
                if code is not None:
                    break
                if should_stop is not None and not (job_dir / STOP).exists() and should_stop():
                    (job_dir / STOP).touch()
                time.sleep(POLL_SECONDS)
        finally:
            _end(process)
    try:
        if code == 0 and (job_dir / RESULT).is_file():
            result = TrainResult(**json.loads((job_dir / RESULT).read_text()))
            result.device = f"{result.device} × {processes} processes"
            return result
        errors = sorted(job_dir.glob("error-*.json"), key=lambda path: int(path.stem.split("-")[1]))
        if errors:
            raise _error_from_json(json.loads(errors[0].read_text()))
        raise LaunchError(
            f"the training processes failed (torchrun exit code {code}); their output ends with:\n"
            + _tail(job_dir / LOG)
        )
    finally:
        for name in ("train.jsonl", "eval.jsonl", EVENTS):
            (job_dir / name).unlink(missing_ok=True)


def _write_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=_plain) + "\n")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _plain(value: Any) -> Any:
    """numpy scalars (metrics, row fields from Parquet) as Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _EventReader:
    """The complete lines appended to rank 0's event file since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[tuple[int, int, float, dict[str, Any]]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [tuple(json.loads(line)) for line in complete.splitlines() if line.strip()]


def _end(process: subprocess.Popen) -> None:
    """Ends torchrun and its ranks if they still run: SIGTERM (torchrun passes it on), then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _error_to_json(error: TrainingError) -> dict[str, Any]:
    kind = type(error).__name__ if type(error).__name__ in ERRORS else "TrainingError"
    if isinstance(error, ConfigError):
        return {"kind": kind, "field": error.field, "message": error.message, "errors": error.errors}
    if isinstance(error, DataError):
        return {"kind": kind, "row": error.row, "message": error.message}
    return {"kind": kind, "message": str(error)}


def _error_from_json(data: dict[str, Any]) -> TrainingError:
    kind = ERRORS.get(data.get("kind"), TrainingError)
    if kind is ConfigError:
        return ConfigError(data["field"], data["message"], data.get("errors"))
    if kind is DataError:
        return DataError(data.get("row"), data["message"])
    return kind(data.get("message", "training failed"))


def _die_with_parent(death_signal: int) -> None:
    """Linux: asks the kernel to send ``death_signal`` to this process when its parent ends, so that no
    training outlives the worker that started it (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(death_signal), 0, 0, 0)


# --- inside the processes -------------------------------------------------------------------------------------


def _agent(arguments: list[str]) -> None:
    """torchrun's own entry point, with the parent-death signal set first."""
    _die_with_parent(signal.SIGTERM)
    if str(os.getppid()) != os.environ.get("PALATE_LAUNCHER_PID", str(os.getppid())):
        sys.exit(1)  # the launcher ended before the signal was set
    from torch.distributed.run import main

    main(arguments)


def _rank_device(requested: str, local_rank: int, world_size: int):
    import torch

    from rewardtrain.training.model import resolve_device

    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if world_size > count:
        raise TrainingError(
            f"{world_size} training processes need {world_size} GPUs; this machine has {count}"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _rank(job_dir: Path) -> int:
    """One rank: joins the process group, trains, and (rank 0) writes the result. Returns the exit code."""
    import torch.distributed as dist

    from rewardtrain.training.trainer import train

    _die_with_parent(signal.SIGKILL)
    job = json.loads((job_dir / JOB).read_text())
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    launcher_pid = int(job["launcher_pid"])
    on_progress = should_stop = None
    if rank == 0:
        events = open(job_dir / EVENTS, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

        def on_progress(step: int, total: int, epoch: float, metrics: dict[str, Any]) -> None:
            events.write(json.dumps([step, total, epoch, metrics], default=_plain) + "\n")
            events.flush()

        def should_stop() -> bool:
            return (job_dir / STOP).exists() or not process_alive(launcher_pid)

    try:
        device = _rank_device(job["device"], local_rank, world_size)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=job["timeout_seconds"]),
            device_id=device if device.type == "cuda" else None,
        )
        result = train(
            job["config"],
            _read_rows(job_dir / "train.jsonl"),
            _read_rows(job_dir / "eval.jsonl") if job["has_eval"] else None,
            output_dir=job["output_dir"],
            device=str(device),
            on_progress=on_progress,
            should_stop=should_stop,
            resume_from=job["resume_from"],
            policy=job["policy"],
        )
    except TrainingError as error:
        (job_dir / f"error-{rank}.json").write_text(json.dumps(_error_to_json(error)))
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        partial = job_dir / f".{RESULT}"
        partial.write_text(json.dumps(result.to_dict(), default=_plain))
        os.replace(partial, job_dir / RESULT)
    return 0


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "agent":
        _agent(rest)
    elif role == "rank":
        sys.exit(_rank(Path(rest[0])))
    else:
        sys.exit(f"unknown role {role!r}: 'agent' or 'rank'")
