"""What this machine can hold, and the one-line refusal of work it cannot.

A count in a config or a shape an input file declares can ask for more memory than the
machine has; the work would then run for minutes and end in swapping, a MemoryError
traceback or the kernel killing the process. So work that scales with a setting or an
input estimates its memory (and disk, where it writes much) before it starts and is
refused at once, naming the setting or file, when it cannot fit (`require`).

Available memory is the least of: the kernel's estimate of what can be allocated without
swapping (MemAvailable), what the process's cgroup still allows, and what the process's
own address-space limit (`ulimit -v`) leaves.
"""
from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


class TooLarge(UserError):
    """The work asked for needs more memory or disk than the machine has."""


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """What the process's cgroup (v2) still allows, if it sets a limit."""
    try:
        rel = next(line.split(":", 2)[2].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
        root = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((root / "memory.current").read_text()), 0)
    except (OSError, ValueError, StopIteration):
        return None


def _address_space_left() -> int | None:
    """What `ulimit -v` (RLIMIT_AS) leaves beside what the process has mapped already."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        used = 0
    return max(soft - used, 0)


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None where unknown."""
    known = [v for v in (_meminfo_available(), _cgroup_available(), _address_space_left()) if v is not None]
    return min(known) if known else None


def free_disk(folder: str | Path) -> int:
    """Free bytes on the file system that holds `folder` (or its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def human(nbytes: float) -> str:
    """'19 GB', '640 MB': a size as a person reads it (decimal units)."""
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{nbytes:.0f} bytes"


@dataclass(frozen=True)
class Need:
    """What one piece of work needs, and what asks for it (a setting with its value, or a
    file with its declared shape), for the message."""

    what: str
    memory: float = 0.0
    disk: float = 0.0
    disk_folder: str | None = None


def require(needs: list[Need] | Need) -> None:
    """Raise TooLarge, naming the first setting or file whose work cannot fit, before any
    of it starts: `data.n_modules=50000000: needs about 19 GB of memory, 12 GB available`."""
    memory = available_memory()
    for need in [needs] if isinstance(needs, Need) else needs:
        if memory is not None and need.memory > memory:
            raise TooLarge(f"{need.what}: needs about {human(need.memory)} of memory, "
                           f"{human(memory)} available; ask for less")
        if need.disk and need.disk_folder is not None:
            free = free_disk(need.disk_folder)
            if need.disk > free:
                raise TooLarge(f"{need.what}: needs about {human(need.disk)} of disk in {need.disk_folder}, "
                               f"{human(free)} free; ask for less or free some space")
