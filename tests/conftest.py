"""Shared fixtures: small synthetic data sets, made once per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# the product's signing key (base.integrity) of this test session, never the user's own;
# the subprocesses the tests start inherit it
os.environ.setdefault("ECON_EMD_KEY_FILE", str(Path(tempfile.mkdtemp(prefix="econ-emd-tests-")) / "key"))

import numpy as np
import pytest

from econ_emd.data.synthetic import generate


@pytest.fixture(scope="session")
def modules() -> np.ndarray:
    """600 synthetic modules (raw ADC charges)."""
    return generate(600, seed=11)


def error_line(err: str) -> str:
    """The one error line of a failed command (and that there is exactly one, no traceback)."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("econ-emd: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]
