"""Firmware normalization of module charges and the 9-bit module-sum code.

The ECON-T encoder sees each module divided by a power of two ("sumlog2"): by
2**floor(log2(sum of the 48 charges)), so the normalized sum lies in [1, 2) and the division
is a shift in hardware. The module sum itself travels beside the 16 latents in 9 bits: a
5-bit exponent and a 4-bit mantissa, a small float format with a denormal range.

Sum code (E = 5 exponent bits, M = 4 mantissa bits), for an integer sum s >= 0:
  * s < 2**M: exponent 0, mantissa s (exact);
  * else: shift = floor(log2 s) - M, exponent = shift + 1, mantissa = the M bits after the
    leading one of s (truncated, as a hardware shifter does).
Decoding returns the lower edge of the code's bin (exact for representable sums); the
relative error of encode->decode is below 2**-M. Sums up to 2**(2**E - 1 + M) - 1 (far
beyond the 22-bit TC range times 48) are representable; larger sums saturate.
"""
from __future__ import annotations

import numpy as np

SUM_EXPONENT_BITS = 5
SUM_MANTISSA_BITS = 4
SUM_CODE_BITS = SUM_EXPONENT_BITS + SUM_MANTISSA_BITS


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


def encode_sum(total: np.ndarray) -> np.ndarray:
    """Integer module sums -> 9-bit codes (exponent << 4 | mantissa)."""
    s = np.asarray(total)
    if np.any(s < 0) or np.any(s != np.floor(s)):
        raise ValueError("module sums to encode must be non-negative integers")
    s = s.astype(np.int64)
    m_bits = SUM_MANTISSA_BITS
    max_exp = 2**SUM_EXPONENT_BITS - 1
    max_sum = (2 ** (m_bits + 1) - 1) << (max_exp - 1)
    s = np.minimum(s, max_sum)
    nbits = np.zeros(s.shape, dtype=np.int64)
    pos = s > 0
    nbits[pos] = np.frexp(s[pos].astype(np.float64))[1]  # bit length of s
    shift = np.maximum(nbits - 1 - m_bits, 0)
    exponent = np.where(s < 2**m_bits, 0, shift + 1)
    mantissa = np.where(s < 2**m_bits, s, (s >> shift) & (2**m_bits - 1))
    return (exponent << m_bits) | mantissa


def decode_sum(code: np.ndarray) -> np.ndarray:
    """9-bit codes -> the lower edge of each code's bin (int64)."""
    code = np.asarray(code, dtype=np.int64)
    if np.any(code < 0) or np.any(code >= 2**SUM_CODE_BITS):
        raise ValueError(f"sum codes must lie in [0, {2**SUM_CODE_BITS})")
    m_bits = SUM_MANTISSA_BITS
    exponent = code >> m_bits
    mantissa = code & (2**m_bits - 1)
    shift = np.maximum(exponent - 1, 0)
    return np.where(exponent == 0, mantissa, (mantissa + 2**m_bits) << shift)
