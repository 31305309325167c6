"""Shared fixtures: small synthetic data sets, made once per session."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from econ_emd.data.synthetic import generate


@pytest.fixture(scope="session")
def modules() -> np.ndarray:
    """600 synthetic modules (raw ADC charges)."""
    return generate(600, seed=11)
