"""A deterministic pause point for fault-injection tests.

With ECON_EMD_TEST_PAUSE=<point>, the process announces reaching <point> by writing its
pid to the file ECON_EMD_TEST_PAUSE_FILE and waits (up to 10 minutes) for a signal, so a
test interrupts it at a known place instead of racing the machine's load. Without the
variable, a call costs one environment lookup."""
from __future__ import annotations

import os
import time
from pathlib import Path


def pause_for_test(point: str) -> None:
    if os.environ.get("ECON_EMD_TEST_PAUSE") != point:
        return
    Path(os.environ["ECON_EMD_TEST_PAUSE_FILE"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.05)
