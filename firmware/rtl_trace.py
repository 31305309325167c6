"""A trained QKeras stack (an econ-emd encoder, the asic encoder's dense decoder)
re-expressed as da4ml fixed-point arithmetic, ready for RTL.

da4ml has no QKeras reader: the model is traced by hand from its quantized weights.
* the input port carries the model's input format (the signed format of its input
  quantizer; the data are already on that grid, see training.encoder_train.encoder_inputs);
* a convolution becomes one constant matrix (for the encoder's 3x3 stride-2 'same' one: 64
  pixels -> 4x4x8 outputs, Keras Flatten order), found by convolving the unit images, plus
  the tiled bias;
* a dense layer is its quantized kernel plus bias;
* each quantized_relu is rebuilt exactly: QKeras rounds half to even (tf.round) and then
  clips to [0, 2^i - 2^-f]. da4ml only rounds half up, so the tie is resolved by the
  integer identity round_half_even(X / 2^d) = floor((X + 2^(d-1) - 1 + q0) / 2^d), where q0
  is the least significant kept bit of X (a wire, taken by wrapping X to that one bit).
  round_half_even(relu(x)) = relu(round_half_even(x)) since rounding is monotone and keeps 0.
Every constant matrix-vector product is optimized by da4ml into adder trees (no multipliers).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .convert import AFFINE, PASS_THROUGH, model_formats
from .precision import FixedFormat

log = logging.getLogger("econ_emd")


@dataclass(frozen=True)
class AffineStep:
    """One affine layer of the stack and the activation after it, as plain numbers."""

    name: str
    matrix: np.ndarray          # (n_in, n_out)
    bias: np.ndarray            # (n_out,)
    activation: FixedFormat     # the quantized_relu after it
    #: fractional bits each product is cut to before the sum (floor); None: exact products
    product_fraction: int | None = None


@dataclass(frozen=True)
class Arithmetic:
    """The model as plain numbers: the input format and its affine steps in order."""

    input_format: FixedFormat
    steps: tuple[AffineStep, ...]

    @property
    def n_inputs(self) -> int:
        return self.steps[0].matrix.shape[0]

    @property
    def output_format(self) -> FixedFormat:
        return self.steps[-1].activation


def _quantized(layer) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.asarray(layer.kernel_quantizer_internal(layer.kernel), dtype=np.float64)
    bias = np.asarray(layer.bias_quantizer_internal(layer.bias), dtype=np.float64)
    return kernel, bias


def _conv_matrix(layer, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A convolution as one constant matrix (inputs flattened, outputs in Keras Flatten
    order) and its tiled bias, from convolving every unit image."""
    import tensorflow as tf

    h, w, c = layer.input_shape[1:]
    n_pix = h * w * c
    basis = np.eye(n_pix, dtype=np.float32).reshape(n_pix, h, w, c)
    # weights are short dyadic numbers: float32 sums of them are exact
    matrix = tf.nn.conv2d(basis, kernel.astype(np.float32), strides=layer.strides, padding=layer.padding.upper()).numpy()
    n_pos = int(np.prod(matrix.shape[1:3]))
    return matrix.reshape(n_pix, -1).astype(np.float64), np.tile(bias, n_pos)


def model_arithmetic(model, product_cuts: dict[str, int] | None = None) -> Arithmetic:
    """Constant matrices and formats of a trained QKeras stack (`convert.model_formats`
    checks its layers and alpha=1)."""
    fm = model_formats(model, product_cuts)
    cuts = product_cuts or {}
    layers = [layer for layer in model.layers if type(layer).__name__ not in PASS_THROUGH]
    steps = []
    for i, layer in enumerate(layers):
        if type(layer).__name__ not in AFFINE:
            continue
        kernel, bias = _quantized(layer)
        if type(layer).__name__ == "QConv2D":
            matrix, bias = _conv_matrix(layer, kernel, bias)
        else:
            matrix = kernel
        activation = layers[i + 1].name
        steps.append(AffineStep(layer.name, matrix, bias, fm["output"] if i + 2 == len(layers) else fm[activation],
                                cuts.get(layer.name)))
    return Arithmetic(fm["input"], tuple(steps))


def _kif(fmt: FixedFormat) -> tuple[int, int, int]:
    """da4ml's (sign, integer bits without sign, fraction bits) of a format."""
    k = int(fmt.signed)
    return k, fmt.integer - k, fmt.fraction


def _fraction_bits(v) -> int:
    return max(0, -int(np.round(np.log2(float(v.step))))) if float(v.step) > 0 else 0


def quantized_relu(v, fmt: FixedFormat):
    """QKeras quantized_relu on one traced variable: round half to even, relu, saturate."""
    if fmt.signed:
        raise ValueError("quantized_relu has an unsigned output format")
    _, i, f = _kif(fmt)
    if float(v.low) == float(v.high):          # a constant (a unit with all-zero weights)
        from da4ml.trace.fixed_variable import FixedVariable

        value = min(max(float(np.round(float(v.low) * 2.0 ** f)) * 2.0 ** -f, 0.0), 2.0 ** i - 2.0 ** -f)
        return FixedVariable.from_const(value, v.hwconf, 1)
    f_in = _fraction_bits(v)
    if f_in > f:
        d = f_in - f
        kept_lsb = v.quantize(0, 1 - f, f)     # the bit of weight 2^-f, as 0 or 2^-f
        v = v + (2 ** (d - 1) - 1) * 2.0 ** -f_in + kept_lsb * 2.0 ** -d
        k_v, i_v, _ = v.kif                    # the range after the addition: floor, no wrap
        v = v.quantize(k_v, i_v, f)
    return v.relu().quantize(0, i, f, "SAT", "TRN")


def _activation(values, fmt: FixedFormat):
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(np.array([quantized_relu(v, fmt) for v in np.ravel(values)], dtype=object))


def _cut_products(values, matrix: np.ndarray, bias: np.ndarray, fraction: int):
    """sum_i floor(x_i * m_ij, 2^-fraction) + b_j: each product cut before the sum, as an
    ASIC keeping narrow products does (no shared adder tree across products)."""
    from da4ml.trace import FixedVariableArray

    xs = list(np.ravel(values))
    outs = []
    for j in range(matrix.shape[1]):
        terms = []
        for i in np.flatnonzero(matrix[:, j]):
            p = xs[i] * float(matrix[i, j])
            k, integer, _ = p.kif
            terms.append(p.quantize(k, integer, fraction, "WRAP", "TRN"))
        if not terms:
            raise ValueError("a unit without weights: cut products need at least one input")
        while len(terms) > 1:           # a balanced adder tree: log2(n) levels, not n
            terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
        outs.append(terms[0] + float(bias[j]))
    return FixedVariableArray(np.array(outs, dtype=object))


def _affine(values, matrix: np.ndarray, bias: np.ndarray, fraction: int | None):
    if fraction is None:
        return values @ matrix + bias
    return _cut_products(values, matrix, bias, fraction)


def trace_model(arith: Arithmetic, solver_options: dict | None = None):
    """da4ml combinational logic (CombLogic) of the stack: its inputs -> its outputs."""
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    t0 = time.perf_counter()
    x = FixedVariableArrayInput(arith.n_inputs, solver_options=solver_options)
    xq = values = x.quantize(*_kif(arith.input_format))
    for step in arith.steps:
        values = _activation(_affine(values, step.matrix, step.bias, step.product_fraction), step.activation)
    comb = comb_trace(xq, values)
    log.info("traced the model with da4ml in %.1f s: estimated cost %d LUT, %s adder levels",
             time.perf_counter() - t0, comb.cost, max(comb.latency))
    return comb


def input_integers(inputs: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """Encoder inputs as integers in units of the input LSB (what the RTL input port carries).

    Raises ValueError if a value is off the input grid or out of range: the RTL has no input
    quantizer, so only data already quantized by the encoder's input quantizer are valid."""
    x = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    scaled = x / fmt.lsb
    ints = np.rint(scaled)
    if not np.array_equal(ints, scaled):
        raise ValueError(f"inputs are not on the {fmt.hls()} grid: quantize them first")
    lo, hi = fmt.bounds()
    if x.min(initial=0) < lo or x.max(initial=0) > hi:
        raise ValueError(f"inputs outside the range [{lo}, {hi}] of {fmt.hls()}")
    return ints.astype(np.int64)
