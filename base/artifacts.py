"""Crash-safe artifact writing: nothing half-written is ever left under its final name.

Every artifact is written to a temporary file in the target directory and renamed into
place (atomic on POSIX), so an interrupted stage leaves either the old file or none.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


#: the exact names `atomic_path` gives its temporaries (`tempfile.mkstemp`: 8 random
#: characters): the only files the debris sweep of a run folder removes
TEMPORARY_NAME = re.compile(r"\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]{1,8})?")


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    An OSError about the temporary (a full disk while writing it) names `path`, the file
    the user knows, instead of the temporary's random name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).name == tmp_path.name:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: room kept free beyond an estimated write, for the file system's own bookkeeping
FREE_SPACE_MARGIN = 16 << 20


def ensure_free_space(folder: str | Path, nbytes: int) -> None:
    """Raise ENOSPC before writing about `nbytes` into `folder` if they cannot fit: HDF5
    does not survive a full disk (h5py crashes the process instead of raising)."""
    import errno
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < nbytes + FREE_SPACE_MARGIN:
        raise OSError(errno.ENOSPC, f"no space left for ~{(nbytes + FREE_SPACE_MARGIN) >> 20} MiB "
                                    f"({free >> 20} MiB free)", str(folder))


def atomic_save_model(model, path: str | Path) -> None:
    """Save a Keras model as `.h5` atomically, after checking the disk has room for it (its
    weights and optimizer state, 3 x 4 bytes a parameter, and 1 MB of structure): h5py
    crashes the process on a full disk instead of raising."""
    ensure_free_space(Path(path).parent, 12 * int(model.count_params()) + (1 << 20))
    with atomic_path(path, ".h5") as tmp:
        model.save(tmp, save_format="h5")


def atomic_save_npy(path: str | Path, values: np.ndarray) -> None:
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, values, allow_pickle=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def json_text(data: Any) -> str:
    """The text `atomic_write_json` writes for `data`."""
    return json.dumps(data, indent=2, default=_json_default) + "\n"


def atomic_write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG atomically and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def replace_tree(work: str | Path, final: str | Path) -> None:
    """Give a finished work folder its final name. Between the two renames there is no
    folder of that name (a crash there only means the work is done again); a half-built
    folder never carries the final name."""
    work, final = Path(work), Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(work, final)
    shutil.rmtree(old, ignore_errors=True)


#: marks a work folder with the hash of what it is being built for
WORK_MARKER = ".building"


def work_folder(final: str | Path) -> Path:
    """Where `final` is built before it takes its name: `.<name>.partial` beside it."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


@contextmanager
def building(final: str | Path, key: str, pause: str | None = None) -> Iterator[Path]:
    """Build the folder `final` in its work folder and give it its name when the block ends
    without error; the one work-folder protocol of the product (stages, scan points, the
    commands that write a folder).

    A work folder left by a killed run for the same `key` is kept (its checkpoints let the
    work resume); one begun for another key is wiped first. `pause` names a test pause
    point (`base.testhooks`) at the last moment before the swap."""
    from .testhooks import pause_for_test

    final = Path(final)
    work = work_folder(final)
    marker = work / WORK_MARKER
    if work.exists() and (not marker.is_file() or marker.read_text() != key):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    yield work
    marker.unlink()
    if pause:
        pause_for_test(pause)
    replace_tree(work, final)


#: the file that marks a folder as one the product made for a command's output (`-o DIR`):
#: only such a folder, or an empty one, is ever replaced
OUTPUT_MARKER = ".econ-emd-output"


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a folder (not a file, a device or a
    dangling link), so the output's folders can be made."""
    from .errors import UserError

    for parent in path.absolute().parents:
        if parent.is_symlink() and not parent.exists():
            raise UserError(f"{flag} {path}: {parent} is a symbolic link to a missing folder")
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is not a folder")
            return


def claim_output_folder(path: str | Path, flag: str) -> None:
    """Refuse an output folder the product must not replace: a file or other non-folder,
    a path under a file, or a non-empty folder it did not make (no `OUTPUT_MARKER`): the
    user's own files are never deleted to make room for an output."""
    from .errors import UserError

    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(f"{flag} {path}: exists and is not a folder the product made")
    _check_parents(path, flag)
    if path.is_dir() and any(path.iterdir()) and not (path / OUTPUT_MARKER).is_file():
        raise UserError(f"{flag} {path}: a folder with files the product did not write; "
                        "name a new or empty folder")


def claim_output_file(path: str | Path, flag: str, inputs: tuple[str | Path, ...] = ()) -> None:
    """Refuse an output file the product must not write: anything but a new file or an
    existing regular file (a symbolic link, a folder, a device, a FIFO), a path under a
    file, or one of the command's own inputs. The file is then written by `atomic_path`
    (temporary + rename), which replaces only a regular file."""
    from .errors import UserError

    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{flag} {path}: a symbolic link; name a regular file (the link is not followed "
                        "or replaced)")
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{flag} {path}: {what}; name a new or regular file")
    _check_parents(path, flag)
    for i in inputs:
        try:
            if path.exists() and os.path.samefile(path, i):
                raise UserError(f"{flag} {path}: the command's input {i}; name another file")
        except FileNotFoundError:
            pass


def mark_output_folder(path: str | Path) -> None:
    """Mark a folder the product builds as a command's output (see `claim_output_folder`)."""
    (Path(path) / OUTPUT_MARKER).write_text("made by econ-emd; replaced when the command runs again\n")
