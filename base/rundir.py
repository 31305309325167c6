"""One process per run directory, and no debris of a killed one.

`run_dir_lock` takes an exclusive `flock` on `<run_dir>/.lock`: the kernel drops it when
the holder dies, so a stale lock of a dead process is simply taken over, and the file says
who holds it for the one-line message a second process prints. A run directory nobody can
write to needs no lock (nothing can be written there; checking an up-to-date run works).

A run folder belongs to the product: `claim_run_dir` lets the product use a folder it
made, or an empty one, and refuses any other non-empty folder unless the user adopts it
explicitly; it then marks the folder (`RUN_MARKER`). So the product never treats a folder
of the user's files as its own, and everything it replaces or sweeps is its own.

`sweep_debris` removes what a killed process leaves behind, and nothing else: temporaries
of `artifacts.atomic_path` by their exact name, and the `.<unit>.old` folders of a swap that
did not finish, only inside the product's own folders of the run (work folders
`.<unit>.partial` stay: they resume).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .artifacts import TEMPORARY_NAME, atomic_write_text
from .errors import UserError

LOCK_FILE = ".lock"
#: the file that makes a folder a run folder of the product (written when the product
#: creates the folder, finds it empty, or the user adopts it)
RUN_MARKER = ".econ-emd-run"
#: the CLI flag that adopts a non-empty folder of other files as a run folder
ADOPT_FLAG = "--adopt-run-dir"


class RunDirBusy(UserError):
    """Another process holds the run directory."""


class RunDirUnusable(UserError):
    """The run directory cannot be created or is not a directory."""


class RunDirForeign(UserError):
    """The run directory holds files the product did not write and was not adopted."""


def _prepare(run_dir: Path) -> None:
    if run_dir.is_symlink() and not run_dir.exists():
        raise RunDirUnusable(f"{run_dir}: a symbolic link to {os.readlink(run_dir)}, which does not exist; "
                             "create that folder or name another run directory")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirUnusable(f"{run_dir}: the run directory is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirUnusable(f"{run_dir}: cannot create the run directory ({exc.strerror})") from None


def claim_run_dir(run_dir: str | Path, adopt: bool = False) -> None:
    """Make sure the run directory is the product's, before anything is written in it: a
    folder with the run marker, a new or empty folder, or (with `adopt`) a folder of other
    files the user hands over; any other folder is refused with one line. The marker is
    written here (a read-only folder is left as it is: nothing can be written there)."""
    run_dir = Path(run_dir)
    _prepare(run_dir)
    if (run_dir / RUN_MARKER).is_file():
        return
    others = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
    if others and not adopt:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RunDirForeign(f"{run_dir}: a folder of files the product did not write ({shown}) is not a run "
                            f"folder; name a new or empty folder, or pass {ADOPT_FLAG} to make it one")
    if os.access(run_dir, os.W_OK):
        atomic_write_text(run_dir / RUN_MARKER, "a run folder of econ-emd: its stage folders are rebuilt and "
                                                "replaced by the product\n")


@contextmanager
def holding_run_dir(run_dir: str | Path, what: str, product_folders: Iterable[str], unit_folders: Iterable[str] = (),
                    product_files: Iterable[str] = (), adopt: bool = False) -> Iterator[None]:
    """The one way a command takes a run directory: claimed as the product's
    (`claim_run_dir`), locked for the block (`run_dir_lock`), and swept of a killed run's
    debris in the product's own folders and files (`sweep_debris`)."""
    claim_run_dir(run_dir, adopt)
    with run_dir_lock(run_dir, what):
        for p in sweep_debris(run_dir, product_folders, unit_folders, product_files):
            logging.getLogger("econ_emd").debug("removed %s (left by a killed run)", p)
        yield


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
    """A name made by artifacts.atomic_path (`.<final>.<8 random>.tmp[.<suffix>]`), exactly."""
    return TEMPORARY_NAME.fullmatch(name) is not None


def _swap_folder_of(name: str, units: Iterable[str] | None) -> bool:
    """`.<unit>.old`: the old folder of a swap (`artifacts.replace_tree`) of one of `units`
    (None: of any unit, in a folder whose entries are all the product's units)."""
    if not (name.startswith(".") and name.endswith(".old")):
        return False
    return units is None or name[1:-len(".old")] in units


def sweep_debris(run_dir: str | Path, product_folders: Iterable[str], unit_folders: Iterable[str] = (),
                 product_files: Iterable[str] = ()) -> list[Path]:
    """Remove a killed run's debris from a run directory we hold, and nothing of anyone
    else's: temporaries (exact `atomic_path` names) of the product's files (`product_files`)
    at the top level and anywhere inside its folders (`product_folders`, and their work
    folders), and the `.<name>.old` folders of an unfinished swap of a product folder at the
    top level or of a unit inside a folder of units (`unit_folders`: a scan point, an `econt
    firmware` report). Symbolic links are never followed."""
    run_dir = Path(run_dir)
    removed: list[Path] = []
    if not run_dir.is_dir() or not os.access(run_dir, os.W_OK):
        return removed
    folders = tuple(product_folders)
    units = set(unit_folders)
    finals = {*product_files, RUN_MARKER}

    def remove(p: Path) -> None:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass

    for p in run_dir.iterdir():
        m = TEMPORARY_NAME.fullmatch(p.name)
        if m and m.group("final") in finals and not p.is_dir():
            remove(p)
        elif _swap_folder_of(p.name, folders) and p.is_dir() and not p.is_symlink():
            remove(p)
    for name in folders:
        for root in (run_dir / name, run_dir / f".{name}.partial"):
            if not root.is_dir() or root.is_symlink():
                continue
            for p in root.iterdir() if name in units else ():      # the swaps of the units it holds
                if _swap_folder_of(p.name, None) and p.is_dir() and not p.is_symlink():
                    remove(p)
            for here, dirs, files in os.walk(root, followlinks=False):
                for f in files:
                    if is_temporary(f):
                        remove(Path(here) / f)
    return removed
