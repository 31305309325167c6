"""The ECON-T autoencoder block, bit for bit: converter, 8x8 image and encoder arithmetic.

What the block does with the 48 CALQ leaving the MUX (found against the CMS golden vectors:
every latent of all 3,564 crossings of `mc_ttbar/AE`, and of a second weight set from the
vectors' history, identical; docs/reference.md "ECON-T emulation" tells how):

* converter: x = floor(CALQ * 2^7 / 2^min(floor(log2(module sum)), 21)), an 8-bit value
  with 7 fractional bits (the sum normalized into [1, 2), as `econt.normalization` does in
  float); an all-zero module gives x = 0. The shift stops at 21 (`CONVERTER_MAX_SHIFT`):
  CALQ is a 22-bit number, and 21 is the shift that keeps the largest one below 2^8, so a
  module summing to 2^22 or more (a busy high-density module) is normalized by 2^21, not
  by its sum: found against the CMS emulator's converter (its compiled HLS model,
  `converter.x`, on 190 modules around every power of two up to the largest CALQ sum:
  all identical, none with an uncapped shift);
* image: the TC leaving the MUX as TC i sits at AE slot i of the 8x8 image (slots 0-31 are
  pixels 0-31, slot 32 + 4r + c is pixel 8(4 + r) + c; `geometry.pixel_of_ae_block`);
  the bottom-right 4x4 block is zero;
* convolution 3x3, 8 filters, stride 2, 'same' padding on the bottom and right (as
  TensorFlow), 6-bit weights and biases with 5 fractional bits; every product x * w is cut
  to 7 fractional bits (floor) before the sum; ReLU;
* dense 128 -> 16 on the 4x4x8 activations in (row, column, filter) order; every product
  is cut to 8 fractional bits (floor); ReLU; the latent is the result in units of 2^-8,
  saturated to 9 bits.

The 2,144 weights travel in 12 register blocks (`econt.registers`). The register image
lists the convolution kernel in (row, column, filter) order, then its 8 biases, then the
dense kernel *output-major* ([out][in]: the 128 weights of latent 0 first), then the 16
dense biases. The CMS script that wrote the vectors' registers (`utils/make_ae_yaml.py`)
flattens the Keras kernel input-major instead, so the golden vectors compute with the
dense kernel of `encoder.hdf5` transposed: their vectors `AE_test_extraQuad_*` (zeroing 512
register weights moves exactly latents 10, 11, 14 and 15) show which reading the block has.
The same writer floors the float weights to 1/32 where QKeras rounds them to the nearest
step in training. `AeWeights.from_registers` reads registers as the block does;
`AeWeights.from_keras` takes a Keras model as trained (rounded as QKeras does, the dense
kernel as Keras holds it; its registers, `to_register_values`, are then output-major).

Integer arithmetic throughout (numpy int64, arithmetic right shifts floor), so the result
is exact for any input the converter can produce.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econ_emd.geometry import N_TC, pixel_of_ae_block

WEIGHT_FRACTION = 5          # 6-bit two's complement weights, values in [-1, 31/32]
WEIGHT_MIN, WEIGHT_MAX = -32, 31
INPUT_FRACTION = 7           # the converter's output: 8 bits, 7 fractional
CONVERTER_MAX_SHIFT = 21     # the converter's largest normalizing shift (module doc)
CONV_FRACTION = 7            # each convolution product is cut to this many fractional bits
DENSE_FRACTION = 8           # each dense product, and the latent, in units of 2^-8
LATENT_BITS = 9
N_FILTERS = 8
N_HIDDEN = 4 * 4 * N_FILTERS
N_LATENT = 16
N_WEIGHTS = 9 * N_FILTERS + N_FILTERS + N_HIDDEN * N_LATENT + N_LATENT      # 2,144
#: crossings per chunk of the dense layer's (n, 128, 16) product array
_CHUNK = 8192


@dataclass(frozen=True, eq=False)
class AeWeights:
    """The encoder's weights as the block computes with them, integers in units of 2^-5."""

    conv_kernel: np.ndarray      # (3, 3, 8): row, column, filter
    conv_bias: np.ndarray        # (8,)
    dense_kernel: np.ndarray     # (128, 16): hidden (row, column, filter) -> latent
    dense_bias: np.ndarray       # (16,)

    def __post_init__(self):
        shapes = {"conv_kernel": (3, 3, N_FILTERS), "conv_bias": (N_FILTERS,),
                  "dense_kernel": (N_HIDDEN, N_LATENT), "dense_bias": (N_LATENT,)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name), dtype=np.int64)
            if value.shape != shape:
                raise ValueError(f"autoencoder {name}: shape {value.shape}, expected {shape}")
            if value.size and (value.min() < WEIGHT_MIN or value.max() > WEIGHT_MAX):
                raise ValueError(f"autoencoder {name}: weights are 6-bit integers "
                                 f"({WEIGHT_MIN}..{WEIGHT_MAX} in units of 2^-{WEIGHT_FRACTION})")
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __eq__(self, other) -> bool:
        return isinstance(other, AeWeights) and all(
            np.array_equal(getattr(self, n), getattr(other, n))
            for n in ("conv_kernel", "conv_bias", "dense_kernel", "dense_bias"))

    __hash__ = None

    @classmethod
    def from_register_values(cls, values) -> "AeWeights":
        """From the 2,144 signed 6-bit register values in register order (see module doc)."""
        v = np.asarray(values, dtype=np.int64)
        if v.shape != (N_WEIGHTS,):
            raise ValueError(f"expected {N_WEIGHTS} register weights, got {v.size}")
        a, b, c = 9 * N_FILTERS, 9 * N_FILTERS + N_FILTERS, 9 * N_FILTERS + N_FILTERS + N_HIDDEN * N_LATENT
        return cls(v[:a].reshape(3, 3, N_FILTERS), v[a:b], v[b:c].reshape(N_LATENT, N_HIDDEN).T, v[c:])

    @classmethod
    def from_registers(cls, words: tuple[tuple[int, ...], ...]) -> "AeWeights":
        """From the 12 register blocks of an `AsicConfig` (`ae_weight_words`)."""
        from econ_emd.econt.registers import ae_register_values

        return cls.from_register_values(ae_register_values(words))

    @classmethod
    def from_keras(cls, conv_kernel, conv_bias, dense_kernel, dense_bias, rounding: str = "nearest") -> "AeWeights":
        """From float Keras weights ((3, 3, 1, 8), (8,), (128, 16), (16,)) on the 1/32 grid,
        saturated to [-1, 31/32]: rounded to the nearest step as QKeras quantizes weights
        in training ("nearest"), or floored as the CMS register writer does ("floor": the
        registers of the golden vectors)."""
        if rounding not in ("nearest", "floor"):
            raise ValueError(f"rounding {rounding!r}: 'nearest' or 'floor'")
        step = np.round if rounding == "nearest" else np.floor

        def q(w):
            return np.clip(step(np.asarray(w, dtype=np.float64) * 2 ** WEIGHT_FRACTION),
                           WEIGHT_MIN, WEIGHT_MAX).astype(np.int64)

        return cls(q(conv_kernel).reshape(3, 3, N_FILTERS), q(conv_bias), q(dense_kernel), q(dense_bias))

    def to_register_values(self) -> np.ndarray:
        """The 2,144 register values (the inverse of `from_register_values`)."""
        return np.concatenate([self.conv_kernel.ravel(), self.conv_bias, self.dense_kernel.T.ravel(),
                               self.dense_bias])

    def keras(self) -> list[np.ndarray]:
        """Float Keras weights [conv kernel (3, 3, 1, 8), conv bias, dense kernel (128, 16),
        dense bias] of the network the block computes."""
        s = 2.0 ** -WEIGHT_FRACTION
        return [self.conv_kernel.reshape(3, 3, 1, N_FILTERS) * s, self.conv_bias * s,
                self.dense_kernel * s, self.dense_bias * s]


def converter(calq: np.ndarray) -> np.ndarray:
    """(n, 48) CALQ -> (n, 48) encoder inputs in units of 2^-7 (see module doc)."""
    q = np.asarray(calq, dtype=np.int64)
    if q.ndim != 2 or q.shape[1] != N_TC:
        raise ValueError(f"expected (n, {N_TC}) CALQ, got shape {q.shape}")
    if q.size and q.min() < 0:
        raise ValueError("CALQ are non-negative")
    total = q.sum(axis=1)
    msb = np.zeros(len(q), dtype=np.int64)
    pos = total > 0
    msb[pos] = np.frexp(total[pos].astype(np.float64))[1] - 1     # exact below 2**53
    msb = np.minimum(msb, CONVERTER_MAX_SHIFT)
    return (q << INPUT_FRACTION) >> msb[:, None]


def image(x: np.ndarray) -> np.ndarray:
    """(n, 48) values in MUX (AE slot) order -> (n, 8, 8) image (integers kept as given)."""
    x = np.asarray(x)
    out = np.zeros((len(x), 64), dtype=x.dtype)
    out[:, pixel_of_ae_block(np.arange(N_TC))] = x
    return out.reshape(len(x), 8, 8)


def _windows() -> np.ndarray:
    """(16, 9) pixel index (0-63, or 64 for the zero padding) of each output's 3x3 window."""
    idx = np.full((16, 9), 64, dtype=np.int64)
    for i in range(4):
        for j in range(4):
            for a in range(3):
                for b in range(3):
                    r, c = 2 * i + a, 2 * j + b
                    if r < 8 and c < 8:
                        idx[4 * i + j, 3 * a + b] = 8 * r + c
    return idx


_WINDOWS = _windows()


def hidden(x: np.ndarray, w: AeWeights) -> np.ndarray:
    """(n, 48) converter outputs -> (n, 128) convolution activations in units of 2^-7."""
    flat = np.concatenate([image(np.asarray(x, dtype=np.int64)).reshape(len(x), 64),
                           np.zeros((len(x), 1), dtype=np.int64)], axis=1)
    taps = flat[:, _WINDOWS]                                             # (n, 16, 9)
    prods = (taps[:, :, :, None] * w.conv_kernel.reshape(9, N_FILTERS)) >> (
        INPUT_FRACTION + WEIGHT_FRACTION - CONV_FRACTION)                # (n, 16, 9, 8)
    acc = prods.sum(axis=2) + (w.conv_bias << (CONV_FRACTION - WEIGHT_FRACTION))
    return np.maximum(acc, 0).reshape(len(x), N_HIDDEN)


def latents_from_hidden(h: np.ndarray, w: AeWeights) -> np.ndarray:
    """(n, 128) activations (units of 2^-7) -> (n, 16) latents (units of 2^-8, 9 bits)."""
    shift = CONV_FRACTION + WEIGHT_FRACTION - DENSE_FRACTION
    out = np.empty((len(h), N_LATENT), dtype=np.int64)
    for lo in range(0, len(h), _CHUNK):
        part = np.asarray(h[lo:lo + _CHUNK], dtype=np.int64)
        acc = ((part[:, :, None] * w.dense_kernel) >> shift).sum(axis=1)
        acc += w.dense_bias << (DENSE_FRACTION - WEIGHT_FRACTION)
        out[lo:lo + len(part)] = np.clip(acc, 0, (1 << LATENT_BITS) - 1)
    return out


def encode(calq: np.ndarray, w: AeWeights) -> np.ndarray:
    """(n, 48) CALQ in MUX order -> (n, 16) latents, integers in units of 2^-8."""
    return latents_from_hidden(hidden(converter(calq), w), w)
