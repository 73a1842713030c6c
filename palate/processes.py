"""Whether a process is alive, and where a process id means that process. Standard library only: the
training launcher's ranks (outside Django) use it too."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs on this machine (a zombie nobody reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@functools.cache
def process_space() -> str:
    """Where a process id means the same process: this machine, and its pid namespace where there is one
    (two containers on one host may share a host name, never a pid namespace)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:[').removesuffix(']')}"
