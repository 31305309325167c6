"""Compile da4ml's solver ahead of the rtl stage, in a low-priority background process.

da4ml's constant-matrix solver is numba code, compiled on its first use in an environment
and then cached on disk (da4ml's `__pycache__`). On 2 cores that first compile takes 2-5
minutes, longer than the rest of the rtl stage. `econ-emd pipeline` therefore starts this
module as a child process (nice 19) when the rtl stage is going to run: it traces a tiny
matrix product, which compiles the same specializations as the encoder, using CPU time the
training stages leave idle. The rtl stage waits for it before tracing. With a warm cache the
child only imports da4ml (a few seconds). It then runs a pip-installed Yosys once, which
compiles and caches its WebAssembly. `python -m econ_emd.firmware.rtl_warmup` runs it by hand.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("econ_emd")

_proc: subprocess.Popen | None = None


def warm_yosys() -> None:
    """The pip-installed Yosys (yowasp) compiles its WebAssembly on its first run on a
    machine (~35 s here), then caches it: run it once, so the synthesis does not wait."""
    from .rtl_synth import yosys_command

    try:
        cmd = yosys_command()
    except Exception:       # no Yosys: the rtl stage says so itself
        return
    if "yowasp" in Path(cmd[0]).name:
        subprocess.run(cmd + ["-V"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600)


def compile_solver() -> None:
    """Trace x @ W through quantize/relu: the numba functions the encoder trace needs."""
    import numpy as np
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    x = FixedVariableArrayInput(4)
    xq = x.quantize(0, 3, 6)
    y = (xq @ np.array([[0.5, -1.25, 0.0], [0.75, 0.25, 1.0], [-0.5, 0.125, 2.0], [1.0, 1.0, -0.25]])).relu()
    comb_trace(xq, y.quantize(0, 4, 3, "SAT", "TRN"))


def _lower_priority() -> None:
    try:
        os.nice(19)
    except OSError:
        pass


def start() -> None:
    """Start the background compile (once per process); a failure to start is only logged."""
    global _proc
    if _proc is not None:
        return
    try:
        _proc = subprocess.Popen([sys.executable, "-m", "econ_emd.firmware.rtl_warmup"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 preexec_fn=_lower_priority if os.name == "posix" else None)
    except OSError as exc:
        log.debug("rtl: background solver compile not started (%s)", exc)
        return
    atexit.register(stop)
    log.debug("rtl: compiling da4ml's solver in the background (pid %d)", _proc.pid)


def wait() -> int | None:
    """Block until a started background compile is done; its exit code (None if none ran).
    A failed warm-up only costs time: the trace then compiles in the foreground."""
    global _proc
    if _proc is None:
        return None
    if _proc.poll() is None:
        log.info("rtl: waiting for the background compile of da4ml's solver (first use in this environment)")
        t0 = time.perf_counter()
        _proc.wait()
        log.info("rtl: solver compiled (waited %.0f s)", time.perf_counter() - t0)
    code, _proc = _proc.returncode, None
    if code:
        log.warning("rtl: the background solver compile failed (exit code %s); compiling in the foreground", code)
    return code


def finished() -> bool:
    """No background compile is running (never started, or done): a child process may trace."""
    return _proc is None or _proc.poll() is not None


@contextlib.contextmanager
def warming() -> Iterator[None]:
    """The background compile for the duration of the block (`Stage.prepare` of the rtl
    stage: it runs beside the training stages, then stops whatever happens)."""
    start()
    try:
        yield
    finally:
        stop()


def stop() -> None:
    """Terminate a still-running background compile (interrupt, error or exit)."""
    global _proc
    if _proc is not None and _proc.poll() is None:
        _proc.terminate()
        try:
            _proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _proc.kill()
    _proc = None


if __name__ == "__main__":
    compile_solver()
    warm_yosys()
