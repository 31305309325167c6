"""The EMD-CNN: a convolutional network that approximates the exact EMD of two modules.

Published architecture (default): both modules, each normalized to unit sum and arranged
as an image (4x4x3 by default, or 8x8), concatenated on channels ->
n_conv x [Conv2D(filters, kernel, same) + BatchNorm + ReLU] -> Flatten ->
Dense(dense) + BatchNorm + ReLU -> Dense(1). The network is symmetrized: the output is the
mean of f(a, b) and f(b, a), so EMD-CNN(a, b) == EMD-CNN(b, a) exactly.

Unlike the published loss, the model normalizes its inputs itself (`UnitSum`), so a loss
can feed it raw reconstructions, and an all-zero input gives a finite output and gradient.
Inputs are modules in CALQ order, shape (batch, 48); the output has shape (batch,).

Options beyond the published network (all off in `PUBLISHED_EMD_CNN`):
* `output`: `linear` (published: the network output is the EMD); `log`: the network
  predicts log(EMD), so a squared log error is a squared relative error; `mass`: the
  output is the transported mass m = 0.5 * sum|a - b| (unit-sum inputs) times the mean
  transport distance, which the network predicts through an exponential. The EMD is a norm
  of a - b (Kantorovich-Rubinstein), so EMD(a, a) = 0 exactly, and the network only learns
  the mean distance, a smooth quantity bounded by the TC distances (1.8 to 13.8).
* `difference_channel`: the images of a - b join a and b on the channel axis.
* `inputs`: `pair` (published: the images of a and b); `difference`: only the image of
  d = (a - b) / m, m the moved mass (so d has +1 and -1 of mass). With unit-sum inputs the
  EMD depends on a - b alone and scales with m, so the network sees exactly the quantity it
  is a function of; symmetrized as the mean of f(d) and f(-d). Needs `output: mass`.
* `symmetrize`: `mean` (published): the mean of the network on both orders, two passes
  per pair; `canonical`: the pair is put in a canonical order first (b, a) when
  v . (a - b) < 0 for a fixed direction v in CALQ space, (a, b) otherwise, and the
  network runs once. Both orders of a pair give bit-identical inputs, so the model is
  exactly symmetric at half the compute, and the network learns f on half the space
  instead of learning the symmetry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from econ_emd.geometry import N_TC

from .arch import INPUTS, OUTPUTS, PUBLISHED_EMD_CNN, SYMMETRIZE, EmdCnnArch  # noqa: F401 (re-exported)
from .layers import CUSTOM_OBJECTS as LAYER_OBJECTS
from .layers import IMAGE_SHAPES, SUM_FLOOR, ArrangeTCs, UnitSum





def _core_channels(arch: EmdCnnArch) -> int:
    c = IMAGE_SHAPES[arch.arrangement][2]
    if arch.inputs == "difference":
        return c
    return (3 if arch.difference_channel else 2) * c


def _core(arch: EmdCnnArch, batchnorm: bool = True) -> tf.keras.Model:
    """f(a, b) on the concatenated image pair (or f(d) on the normalized difference)."""
    h, w, _ = IMAGE_SHAPES[arch.arrangement]
    x_in = tf.keras.Input((h, w, _core_channels(arch)), name="pair_image")
    x = x_in
    for i in range(arch.n_conv):
        x = tf.keras.layers.Conv2D(arch.filters, arch.kernel, padding="same", name=f"conv{i}")(x)
        if batchnorm:
            x = tf.keras.layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = tf.keras.layers.ReLU(name=f"conv{i}_relu")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(arch.dense, name="dense")(x)
    if batchnorm:
        x = tf.keras.layers.BatchNormalization(name="dense_bn")(x)
    x = tf.keras.layers.ReLU(name="dense_relu")(x)
    out = tf.keras.layers.Dense(1, name="emd")(x)
    return tf.keras.Model(x_in, out, name="emd_core")


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class ExpOutput(tf.keras.layers.Layer):
    """exp of a log-EMD prediction, clipped so that no float32 overflow can occur."""

    def call(self, x):
        return tf.exp(tf.clip_by_value(x, -30.0, 10.0))


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class MovedMass(tf.keras.layers.Layer):
    """0.5 * sum|a - b| of two unit-sum modules: the mass the EMD has to move."""

    def call(self, inputs):
        a, b = inputs
        return 0.5 * tf.reduce_sum(tf.abs(a - b), axis=-1, keepdims=True)


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class NormalizedDifference(tf.keras.layers.Layer):
    """(a - b) / m of two unit-sum modules, m = 0.5 * sum|a - b| (0 where a == b)."""

    def call(self, inputs):
        a, b = inputs
        d = a - b
        m = 0.5 * tf.reduce_sum(tf.abs(d), axis=-1, keepdims=True)
        return d / tf.maximum(m, SUM_FLOOR)


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class CanonicalOrder(tf.keras.layers.Layer):
    """(a, b) -> (b, a) where v . (a - b) < 0, else unchanged, for a fixed direction v.

    The projection of b - a is the exact negative of that of a - b in floating point (same
    products, same order of summation), so both orders of a pair come out identical and a
    one-way network behind this layer is exactly symmetric. v is a stored, non-trainable
    weight (a saved model keeps its own); its irregular entries make a tie (projection 0)
    a coincidence, apart from a == b, where the order does not matter."""

    def build(self, input_shape):
        v = np.random.default_rng(48).standard_normal(input_shape[0][-1])
        self.direction = self.add_weight(name="direction", shape=v.shape, trainable=False,
                                         initializer=tf.keras.initializers.Constant(v))
        super().build(input_shape)

    def call(self, inputs):
        a, b = inputs
        keep = tf.reduce_sum((a - b) * self.direction, axis=-1, keepdims=True) >= 0
        return tf.where(keep, a, b), tf.where(keep, b, a)


def _check(arch: EmdCnnArch) -> None:
    if arch.output not in OUTPUTS:
        raise ValueError(f"unknown EMD-CNN output '{arch.output}' (choose {', '.join(OUTPUTS)})")
    if arch.inputs not in INPUTS:
        raise ValueError(f"unknown EMD-CNN inputs '{arch.inputs}' (choose {', '.join(INPUTS)})")
    if arch.symmetrize not in SYMMETRIZE:
        raise ValueError(f"unknown EMD-CNN symmetrize '{arch.symmetrize}' (choose {', '.join(SYMMETRIZE)})")
    if arch.inputs == "difference" and arch.output != "mass":
        raise ValueError("EMD-CNN inputs 'difference' needs output 'mass' (the network sees a - b "
                         "normalized to unit moved mass, so the mass has to be multiplied back)")


def _assemble(arch: EmdCnnArch, core: tf.keras.Model, symmetric: bool) -> tf.keras.Model:
    """The model around `core`: f(a, b) alone, the mean of f(a, b) and f(b, a), or f of the
    canonically ordered pair."""
    a_in = tf.keras.Input((N_TC,), name="module_a")
    b_in = tf.keras.Input((N_TC,), name="module_b")
    unit = UnitSum(name="unit_sum")
    ua, ub = unit(a_in), unit(b_in)
    if arch.symmetrize == "canonical":
        ua, ub = CanonicalOrder(name="canonical_order")([ua, ub])
        symmetric = False    # already symmetric: one pass
    arrange = ArrangeTCs(arch.arrangement, name="arrange")
    if arch.inputs == "difference":
        d = arrange(NormalizedDifference(name="normalized_difference")([ua, ub]))
        ab = core(d)
        ba = core(tf.keras.layers.Rescaling(-1.0, name="negate")(d)) if symmetric else None
    else:
        ia, ib = arrange(ua), arrange(ub)
        if arch.difference_channel:
            ab = core(tf.keras.layers.Concatenate(axis=-1, name="ab")(
                [ia, ib, tf.keras.layers.Subtract(name="a_minus_b")([ia, ib])]))
            ba = core(tf.keras.layers.Concatenate(axis=-1, name="ba")(
                [ib, ia, tf.keras.layers.Subtract(name="b_minus_a")([ib, ia])])) if symmetric else None
        else:
            ab = core(tf.keras.layers.Concatenate(axis=-1, name="ab")([ia, ib]))
            ba = core(tf.keras.layers.Concatenate(axis=-1, name="ba")([ib, ia])) if symmetric else None
    y = tf.keras.layers.Average(name="symmetrize")([ab, ba]) if symmetric else ab
    if arch.output in ("log", "mass"):
        y = ExpOutput(name="exp")(y)
    if arch.output == "mass":
        y = tf.keras.layers.Multiply(name="times_mass")([MovedMass(name="moved_mass")([ua, ub]), y])
    y = tf.keras.layers.Reshape((), name="emd_pred")(y)
    one_way = not symmetric and arch.symmetrize == "mean"
    return tf.keras.Model([a_in, b_in], y, name="emd_cnn_one_way" if one_way else "emd_cnn")


def build_emd_cnn(arch: EmdCnnArch = PUBLISHED_EMD_CNN) -> tf.keras.Model:
    """Symmetrized EMD-CNN taking two (batch, 48) CALQ-order modules, returning (batch,)."""
    return build_emd_cnn_trainer(arch)[0]


def build_emd_cnn_trainer(arch: EmdCnnArch = PUBLISHED_EMD_CNN) -> tuple[tf.keras.Model, tf.keras.Model]:
    """(symmetrized model, one-way model f(a, b)) sharing one core.

    Training the one-way model on pairs swapped at random costs half the symmetrized
    model's compute per pair and teaches the core both orders; the symmetrized model is
    what is saved and used. With `symmetrize: canonical` the symmetric model costs one
    pass already and is its own one-way model."""
    _check(arch)
    core = _core(arch)
    sym = _assemble(arch, core, True)
    return sym, (sym if arch.symmetrize == "canonical" else _assemble(arch, core, False))


def fold_batchnorm(model: tf.keras.Model, arch: EmdCnnArch) -> tf.keras.Model:
    """The trained symmetrized model as the same function without BatchNorm layers.

    In inference mode a BatchNorm after a Conv2D/Dense is an affine map per output unit,
    s = gamma / sqrt(var + eps): folded into the layer, kernel * s and (bias - mean) * s + beta
    (in float64, then float32; outputs agree to float32 rounding). The frozen EMD-CNN then
    skips 4 element-wise passes per core evaluation, in `predict_emd` and inside an
    encoder's loss alike."""
    old = model.get_layer("emd_core")
    core = _core(arch, batchnorm=False)
    for name in [f"conv{i}" for i in range(arch.n_conv)] + ["dense"]:
        kernel, bias = (w.astype(np.float64) for w in old.get_layer(name).get_weights())
        bn = old.get_layer(f"{name}_bn")
        gamma, beta, mean, var = (w.astype(np.float64) for w in bn.get_weights())
        s = gamma / np.sqrt(var + bn.epsilon)
        core.get_layer(name).set_weights([(kernel * s).astype(np.float32),
                                          ((bias - mean) * s + beta).astype(np.float32)])
    core.get_layer("emd").set_weights(old.get_layer("emd").get_weights())
    folded = _assemble(arch, core, True)
    if arch.symmetrize == "canonical":
        folded.get_layer("canonical_order").set_weights(model.get_layer("canonical_order").get_weights())
    return folded


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class SymmetrizedExternal(tf.keras.layers.Layer):
    """Wraps an external two-input EMD model (published format: two unit-sum 4x4x3 images)
    so it takes CALQ-order modules, normalizes them and is symmetrized like ours."""

    def __init__(self, inner: tf.keras.Model, arrangement: str = "4x4x3", **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.unit = UnitSum()
        self.arrange = ArrangeTCs(arrangement)

    def call(self, inputs):
        a, b = inputs
        ia, ib = self.arrange(self.unit(a)), self.arrange(self.unit(b))
        ab = tf.reshape(self.inner([ia, ib]), (-1,))
        ba = tf.reshape(self.inner([ib, ia]), (-1,))
        return 0.5 * (ab + ba)


def wrap_external(inner: tf.keras.Model) -> tf.keras.Model:
    """A CALQ-input, symmetrized model around a published-format EMD-CNN."""
    shapes = [tuple(i.shape[1:]) for i in inner.inputs]
    if len(shapes) != 2 or shapes[0] != shapes[1] or shapes[0] not in IMAGE_SHAPES.values():
        raise ValueError(f"an external EMD-CNN needs two inputs of shape (4, 4, 3) or (8, 8, 1); got {shapes}")
    arrangement = next(k for k, v in IMAGE_SHAPES.items() if v == shapes[0])
    a_in = tf.keras.Input((N_TC,), name="module_a")
    b_in = tf.keras.Input((N_TC,), name="module_b")
    y = SymmetrizedExternal(inner, arrangement, name="external_emd")([a_in, b_in])
    return tf.keras.Model([a_in, b_in], y, name="emd_cnn_external")


#: everything needed to load a saved EMD-CNN (ours or a wrapped external one)
CUSTOM_OBJECTS = {**LAYER_OBJECTS, "ExpOutput": ExpOutput, "MovedMass": MovedMass,
                  "NormalizedDifference": NormalizedDifference, "CanonicalOrder": CanonicalOrder,
                  "SymmetrizedExternal": SymmetrizedExternal}
