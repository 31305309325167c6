"""Fixed-point formats of the encoder, derived from its QKeras quantizers and weights.

hls4ml maps quantized_bits(b, i) to fixed<b, i+1> and quantized_relu(b, i) to
ufixed<b, i>. For bit-exactness the firmware must never truncate or wrap an intermediate
value, so the accumulators of the convolution and the dense layer are sized here from the
actual (quantized) weights: fractional bits = input fraction + weight fraction (a product
is exact), integer bits = enough for the largest possible |sum| over the input range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FixedFormat:
    width: int
    integer: int      # integer bits including the sign bit when signed
    signed: bool = True

    @property
    def fraction(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.fraction

    def bounds(self) -> tuple[float, float]:
        if self.signed:
            return -(2.0 ** (self.integer - 1)), 2.0 ** (self.integer - 1) - self.lsb
        return 0.0, 2.0 ** self.integer - self.lsb

    def hls(self, rounding: str = "TRN", overflow: str = "WRAP") -> str:
        kind = "fixed" if self.signed else "ufixed"
        return f"{kind}<{self.width},{self.integer},{rounding},{overflow},0>"


def format_of(quantizer) -> FixedFormat:
    """Fixed format of a QKeras quantized_bits / quantized_relu quantizer (as hls4ml maps it)."""
    name = type(quantizer).__name__
    bits, integer = int(quantizer.bits), int(quantizer.integer)
    if name == "quantized_bits":
        if not quantizer.keep_negative:
            raise ValueError("unsigned quantized_bits are mapped to signed types by hls4ml: use a signed quantizer")
        return FixedFormat(bits, integer + 1, True)
    if name == "quantized_relu":
        return FixedFormat(bits, integer, False)
    raise ValueError(f"unsupported quantizer {name}")


def accumulator_format(x_fmt: FixedFormat, w_fmt: FixedFormat, b_fmt: FixedFormat,
                       kernel: np.ndarray, bias: np.ndarray, product_fraction: int | None = None) -> FixedFormat:
    """The narrowest signed format holding every sum(x * w) + b exactly.

    kernel: (n_inputs, n_outputs) quantized weights; x ranges over x_fmt's bounds. With
    `product_fraction`, every product is cut (floor) to that many fractional bits before
    the sum, as an ASIC that keeps narrow products does (the ECON-T autoencoder): the format
    has those fractional bits, and room for the lower bound moved by one LSB per product."""
    exact = max(x_fmt.fraction + w_fmt.fraction, b_fmt.fraction)
    frac = exact if product_fraction is None else product_fraction
    if frac < b_fmt.fraction:
        raise ValueError(f"products cut to {frac} fractional bits cannot hold the bias ({b_fmt.fraction})")
    x_lo, x_hi = x_fmt.bounds()
    pos = np.clip(kernel, 0, None)
    neg = np.clip(kernel, None, 0)
    hi = (pos * x_hi + neg * x_lo).sum(0) + bias
    lo = (pos * x_lo + neg * x_hi).sum(0) + bias
    if frac < exact:
        lo = lo - np.count_nonzero(kernel, axis=0) * 2.0 ** -frac
    extreme = max(float(np.abs(hi).max()), float(np.abs(lo).max()), 2.0 ** -frac)
    integer = math.floor(math.log2(extreme)) + 2  # magnitude bits + sign
    return FixedFormat(integer + frac, integer, True)
