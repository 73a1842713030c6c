"""Scratch folders: a process's own folder on this machine's disk for a block of work (a training attempt's
checkpoints), removed when the block ends however it ends, and those of processes that no longer run removed
at the next start. Local disk only, never shared: what must outlive the block goes to a store
(``palate.storage``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings


def _scratch_root() -> Path:
    return Path(getattr(settings, "TRAINING_SCRATCH_DIR", "") or tempfile.gettempdir())


@contextmanager
def scratch_directory(label: str) -> Iterator[Path]:
    """A folder of this process's own on this machine's disk for the block (a training attempt's
    checkpoints), removed when the block ends however it ends. Those left by killed processes are removed
    first (``scratch_reap``; a worker also does so when it starts)."""
    scratch_reap()
    root = _scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"palate-{label}-pid{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def scratch_reap() -> list[Path]:
    """Removes the scratch folders of processes of this machine that no longer run; returns them."""
    from palate.processes import process_alive

    root = _scratch_root()
    removed = []
    for folder in root.glob("palate-*-pid*-*") if root.is_dir() else []:
        found = re.search(r"-pid(\d+)-", folder.name)
        if found and folder.is_dir() and not process_alive(int(found[1])):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
