"""Content digests of files and folders: what a stage's hash and its outputs' integrity
checks are made of (`econ_emd.registry`), and what makes a cache entry a given one."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path) -> str:
    """sha256 of a file (or of a tree: its files' relative paths and digests, sorted)."""
    path = Path(path)
    if path.is_dir():
        return tree_digest(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """sha256 over a folder's files (relative path and digest of each, sorted); `ignore`
    lists relative paths to leave out (entries ending in "/" are folders)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() or q.is_symlink()):
        rel = p.relative_to(root).as_posix()
        if any(rel == i or (i.endswith("/") and rel.startswith(i)) for i in ignore):
            continue
        h.update(rel.encode() + b"\0" + file_digest(p).encode() + b"\n")
    return h.hexdigest()
