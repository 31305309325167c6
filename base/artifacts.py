"""Crash-safe artifact writing: nothing half-written is ever left under its final name.

Every artifact is written to a temporary file in the target directory and renamed into
place (atomic on POSIX), so an interrupted stage leaves either the old file or none.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
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
