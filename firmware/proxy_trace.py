"""A resource-aware (HGQ) encoder's proxy model re-expressed as da4ml fixed-point arithmetic.

The proxy model (`models.hgq_encoder.freeze`) is a chain of plain Keras layers (Conv2D,
ReLU, Flatten, Dense) and `FixedPointQuantizer` layers that give every value its own
(sign, integer, fraction) bits, rounding (TRN: floor, RND: half up) and overflow (WRAP,
SAT) mode; a value with zero bits is pruned to 0. da4ml 0.5 reads no such model (its
converter is for HGQ2 on Keras 3), so it is traced here layer by layer: each quantizer
becomes one `quantize` per value with that value's widths, each layer with weights a
constant matrix (the convolution's found from the 64 unit images). da4ml's rounding modes
are HGQ's (TRN and RND = floor(x + 1/2)), so the trace is exact.

`proxy_input_format` gives the widest input each input quantizer lets through: the RTL's
input port carries the inputs already quantized (training.encoder_train.encoder_inputs).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .precision import FixedFormat

log = logging.getLogger("econ_emd")


def _quantizer_kif(layer, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per value (flattened in `shape`, channels last): sign, integer bits without the
    sign, fractional bits, and whether the value is kept (bits > 0)."""
    k = np.broadcast_to(layer.keep_negative.numpy().astype(np.int64), (1, *shape)).reshape(-1)
    b = np.broadcast_to(layer.bits.numpy().astype(np.int64), (1, *shape)).reshape(-1)
    i = np.broadcast_to(layer.integers.numpy().astype(np.int64), (1, *shape)).reshape(-1)
    return k, i - k, b - i, b > 0


def _is_identity(layer) -> bool:
    """A quantizer HGQ left without widths (shape (0,)): the proxy passes values through."""
    return int(np.prod(layer.bits.shape)) == 0


def _quantize(values, layer, shape):
    from da4ml.trace import FixedVariableArray
    from da4ml.trace.fixed_variable import FixedVariable

    if _is_identity(layer):
        return values
    k, i, f, kept = _quantizer_kif(layer, shape)
    flat = list(np.ravel(values))
    if len(flat) != len(k):
        raise ValueError(f"quantizer {layer.name}: {len(k)} widths for {len(flat)} values")
    rnd = {"TRN": "TRN", "RND": "RND"}.get(layer.RND)
    sat = {"WRAP": "WRAP", "SAT": "SAT"}.get(layer.SAT)
    if rnd is None or sat is None:
        raise ValueError(f"quantizer {layer.name}: rounding {layer.RND} / overflow {layer.SAT} not traced "
                         "(TRN/RND and WRAP/SAT are)")
    hwconf = flat[0].hwconf
    out = [v.quantize(int(kk), int(ii), int(ff), sat, rnd) if keep else FixedVariable.from_const(0.0, hwconf, 1)
           for v, kk, ii, ff, keep in zip(flat, k, i, f, kept)]
    return FixedVariableArray(np.array(out, dtype=object))


def _conv_matrix(layer, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    import tensorflow as tf

    n = int(np.prod(in_shape))
    basis = np.eye(n, dtype=np.float32).reshape(n, *in_shape)
    kernel = layer.kernel.numpy().astype(np.float32)
    out = tf.nn.conv2d(basis, kernel, strides=layer.strides, padding=layer.padding.upper()).numpy()
    out_shape = tuple(out.shape[1:])
    bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[-1])
    return out.reshape(n, -1).astype(np.float64), np.tile(bias, int(np.prod(out_shape[:-1]))), out_shape


def proxy_input_format(proxy) -> FixedFormat:
    """The widest format among the input quantizer's per-value formats (the port's slot)."""
    q = proxy.layers[1]
    if type(q).__name__ != "FixedPointQuantizer":
        raise ValueError("a proxy encoder starts with its input quantizer")
    shape = tuple(proxy.input_shape[1:])
    k, i, f, kept = _quantizer_kif(q, shape)
    kk, ii, ff = int(k[kept].max(initial=0)), int(i[kept].max(initial=0)), int(f[kept].max(initial=0))
    return FixedFormat(kk + ii + ff, kk + ii, bool(kk))


def proxy_output_format(proxy) -> FixedFormat:
    q = proxy.layers[-1]
    k, i, f, kept = _quantizer_kif(q, tuple(proxy.output_shape[1:]))
    kk, ii, ff = int(k[kept].max(initial=0)), int(i[kept].max(initial=0)), int(f[kept].max(initial=0))
    return FixedFormat(kk + ii + ff, kk + ii, bool(kk))


def trace_proxy(proxy, solver_options: dict | None = None):
    """da4ml combinational logic of a proxy encoder: 64 inputs -> its latents."""
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    t0 = time.perf_counter()
    shape = tuple(proxy.input_shape[1:])
    x = FixedVariableArrayInput(int(np.prod(shape)), solver_options=solver_options)
    layers = proxy.layers[1:]
    if not layers or type(layers[0]).__name__ != "FixedPointQuantizer":
        raise ValueError("a proxy encoder starts with its input quantizer")
    inputs = _quantize(x, layers[0], shape)
    v = inputs
    for layer in layers[1:]:
        kind = type(layer).__name__
        if kind == "FixedPointQuantizer":
            v = _quantize(v, layer, shape)
        elif kind == "Conv2D":
            matrix, bias, shape = _conv_matrix(layer, shape)
            v = v @ matrix + bias
        elif kind == "Dense":
            kernel = layer.kernel.numpy().astype(np.float64)
            bias = layer.bias.numpy().astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[1])
            v = v @ kernel + bias
            shape = (kernel.shape[1],)
        elif kind == "ReLU" or (kind == "Activation" and layer.get_config().get("activation") == "relu"):
            from da4ml.trace import FixedVariableArray

            v = FixedVariableArray(np.array([u.relu() for u in np.ravel(v)], dtype=object))
        elif kind in ("Flatten", "PFlatten", "Reshape"):
            shape = (int(np.prod(shape)),)
        else:
            raise ValueError(f"layer {layer.name} ({kind}) of the proxy model is not traced")
    comb = comb_trace(inputs, v)
    log.info("traced the resource-aware encoder with da4ml in %.1f s: estimated cost %d LUT, %s adder levels",
             time.perf_counter() - t0, comb.cost, max(comb.latency))
    return comb
