"""The ECON-T autoencoder's input normalization, in floating point ("sumlog2").

The ASIC divides each module by a power of two, 2**floor(log2(sum of the 48 CALQ)), so the
normalized sum lies in [1, 2) and the division is a shift in hardware; its converter then
keeps 7 fractional bits (`econt.autoencoder.converter`, the exact integer form). The
product's QKeras encoders take the float quotient and quantize it with their own input
quantizer. The module sum that travels beside the latents is a 5E4M code
(`econt.codes.E5M4`).
"""
from __future__ import annotations

import numpy as np


def sumlog2_scale(charges: np.ndarray) -> np.ndarray:
    """Per-module divisor 2**floor(log2(sum)), shape (n,). Sums must be positive."""
    s = np.asarray(charges, dtype=np.float64).sum(-1)
    if np.any(s <= 0):
        raise ValueError("sumlog2 normalization needs modules with a positive charge sum")
    # frexp is exact: s = m * 2**e with m in [0.5, 1), so floor(log2 s) = e - 1.
    _, e = np.frexp(s)
    return np.ldexp(1.0, e - 1)


def sumlog2_normalize(charges: np.ndarray) -> np.ndarray:
    """Charges divided by 2**floor(log2(sum)): each module's sum lands in [1, 2)."""
    charges = np.asarray(charges, dtype=np.float64)
    return charges / sumlog2_scale(charges)[..., None]
