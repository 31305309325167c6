"""One process per run directory, and no debris of a killed one.

`run_dir_lock` takes an exclusive `flock` on `<run_dir>/.lock`: the kernel drops it when
the holder dies, so a stale lock of a dead process is simply taken over, and the file says
who holds it for the one-line message a second process prints. A run directory nobody can
write to needs no lock (nothing can be written there; checking an up-to-date run works).

`sweep_debris` removes what a killed process leaves behind: the temporary files of
`artifacts.atomic_path` and the folders of a stage swap that did not finish.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_FILE = ".lock"


class RunDirBusy(UserError):
    """Another process holds the run directory."""


class RunDirUnusable(UserError):
    """The run directory cannot be created or is not a directory."""


def _prepare(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirUnusable(f"{run_dir}: the run directory is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirUnusable(f"{run_dir}: cannot create the run directory ({exc.strerror})") from None


@contextmanager
def run_dir_lock(run_dir: str | Path, what: str) -> Iterator[None]:
    """Hold the run directory for the duration of the block, or raise RunDirBusy at once."""
    run_dir = Path(run_dir)
    _prepare(run_dir)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and not os.access(run_dir, os.W_OK):
            yield                      # read-only: nothing can be written, so nothing to guard
            return
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunDirBusy(f"{run_dir}: in use by {holder}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        yield
    finally:
        os.close(fd)                   # releases the lock; the file stays (removing it would race)


def is_temporary(name: str) -> bool:
    """A name made by artifacts.atomic_path (`.<final>.<random>.tmp[suffix]`)."""
    return name.startswith(".") and ".tmp" in name


def sweep_debris(run_dir: str | Path) -> list[Path]:
    """Remove temporaries and unfinished stage swaps under a run directory we hold."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir() or not os.access(run_dir, os.W_OK):
        return removed
    for p in run_dir.iterdir():
        if p.is_dir() and p.name.startswith(".") and p.name.endswith(".old"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for p in list(run_dir.rglob(".*")):
        if p.is_file() and is_temporary(p.name):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
