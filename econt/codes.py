"""The ECON-T float codes xEyM (x exponent bits, y mantissa bits), vectorized.

Encoding, as the ASIC: after dropping `drop` LSBs, a value whose bit length L fits the
mantissa (L <= y + drop) is sent as it is with exponent 0; otherwise the exponent is
L - y - drop, the leading 1 is implicit and the next y bits are the mantissa (truncated,
never rounded); an exponent that does not fit saturates the code to all ones.
Decoding restores the value's scale and adds half of the range the dropped bits could
have held (the centre of the bin), as the ASIC's float-to-fix does.

The codes in use: 4E3M (7 bits, trigger-cell energies), 5E3M (8 bits, module sums of best
choice and threshold sum), 5E4M (9 bits, super-trigger-cell and autoencoder sums).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FloatCode:
    exp_bits: int
    mant_bits: int

    @property
    def width(self) -> int:
        return self.exp_bits + self.mant_bits

    @property
    def name(self) -> str:
        return f"{self.exp_bits}E{self.mant_bits}M"


E4M3 = FloatCode(4, 3)
E5M3 = FloatCode(5, 3)
E5M4 = FloatCode(5, 4)


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers (0 -> 0), exact for values below 2**53."""
    v = np.asarray(values, dtype=np.int64)
    out = np.zeros(v.shape, dtype=np.int64)
    pos = v > 0
    # frexp is exact on integers below 2**53: v = m * 2**e with 0.5 <= m < 1
    out[pos] = np.frexp(v[pos].astype(np.float64))[1]
    return out


#: values below this are encoded through a lookup table (one per code and drop)
_TABLE_LIMIT = 1 << 20


@lru_cache(maxsize=64)
def _encode_table(code: FloatCode, drop: int, size: int) -> np.ndarray:
    table = _encode(np.arange(size, dtype=np.int64), code, np.int64(drop)).astype(np.int16)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=64)
def _decode_table(code: FloatCode, drop: int) -> np.ndarray:
    table = _decode(np.arange(1 << code.width, dtype=np.int64), code, np.int64(drop))
    table.flags.writeable = False
    return table


def encode(values, code: FloatCode, drop: int | np.ndarray = 0) -> np.ndarray:
    """Integer codes of non-negative integer `values` (any shape); `drop` broadcasts."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return v.copy()
    low, high = int(v.min()), int(v.max())
    if low < 0:
        raise ValueError("ECON-T float codes encode non-negative integers only")
    if np.ndim(drop) == 0 and high < _TABLE_LIMIT:
        size = 1 << max(high, 1).bit_length()
        return _encode_table(code, int(drop), size)[v].astype(np.int64)
    return _encode(v, code, np.asarray(drop, dtype=np.int64))


def _encode(v: np.ndarray, code: FloatCode, drop: np.ndarray) -> np.ndarray:
    m = code.mant_bits
    length = bit_length(v)
    exponent = length - m - drop
    small = exponent <= 0
    mant_shift = np.maximum(length - 1 - m, 0)
    mantissa = np.where(small, v >> drop, (v >> mant_shift) & ((1 << m) - 1))
    exponent = np.where(small, 0, exponent)
    saturated = exponent >= (1 << code.exp_bits)
    out = (exponent << m) | mantissa
    return np.where(saturated, (1 << code.width) - 1, out).astype(np.int64)


def decode(codes, code: FloatCode, drop: int | np.ndarray = 0) -> np.ndarray:
    """Integer values of `codes`, with half the dropped range added back (bin centre)."""
    c = np.asarray(codes, dtype=np.int64)
    if c.size and (c.min() < 0 or c.max() >= (1 << code.width)):
        raise ValueError(f"{code.name} codes are {code.width}-bit integers")
    if np.ndim(drop) == 0:
        return _decode_table(code, int(drop))[c]
    return _decode(c, code, np.asarray(drop, dtype=np.int64))


def _decode(c: np.ndarray, code: FloatCode, drop: np.ndarray) -> np.ndarray:
    m = code.mant_bits
    exponent = c >> m
    mantissa = c & ((1 << m) - 1)
    shift = np.maximum(exponent - 1, 0)
    data = np.where(exponent > 0, (mantissa << shift) + (1 << (exponent + m - 1)), mantissa)
    data = data << drop
    half = drop + shift
    return np.where(half > 0, data + (np.int64(1) << np.maximum(half - 1, 0)), data)
