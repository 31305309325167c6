"""The ECON-T encoder trained in the ASIC's own arithmetic, and its dense back-end decoder.

The ASIC's autoencoder block (`econt.autoencoder`, proven bit for bit on the CMS vectors)
computes with fixed widths and cuts every product; an encoder trained with other widths
cannot be loaded into its registers. This encoder's forward pass *is* the block's
arithmetic, so the weights it trains are register values and its latents are the packet's:

  input      the converter's image x = floor(CALQ 2^7 / 2^floor(log2 sum)) / 2^7, made
             exactly from integer CALQ outside the graph (`encoder_image`); `input_qa`,
             quantized_bits(9, 1), is the identity on it and gives a firmware its type
  conv2d     AsicConv2D: 3x3, 8 filters, stride 2, 'same' (padded bottom and right);
             weights and biases quantized_bits(6, 0, alpha=1, two's complement): 1/32
             steps in [-1, 31/32]; every product x w floored to 2^-7; summed with the
             bias; ReLU
  flatten    (row, column, filter), the block's order
  dense      AsicDense: 128 -> 16, the same weight quantizer; every product floored to
             2^-8; plus the bias; ReLU; saturated at 511/256 (the 9-bit latent L / 2^8)
  latent     TransmittedLatents(b): floor(L / 2^(9-b)) 2^(9-b) / 2^8, the top b of the 9
             bits, the ones the formatter's mask keeps at the link count (b = 3, 5, 7, 9
             at 2-5 links). The top bits, because the block saturates at 9 bits: a lower
             window would wrap where the block's latent exceeds it.

Straight-through estimators (the backward pass): the weight quantizers are QKeras' (the
gradient passes the rounding and the clipping); each layer's output is the exact value in
the forward pass and, in the backward pass, the float convolution or matrix product of
the quantized weights (the per-product floors are skipped: identity gradient); the
transmitted latents pass the floor likewise. ReLU and the saturation keep their own
gradients (zero where they cut, as QKeras' quantized_relu does).

Training starts from the float twin (`fold_into_registers`, encoder.asic_start float): the
same network trained in float, its weights scaled into the registers' ranges without
changing its function, then trained on in this arithmetic. From a random start the cuts
erase most products before the weights have grown into the range that keeps them.

Every product is a multiple of 2^-12 below 2^5 (at most 17 significant bits) and every sum
a multiple of 2^-8 of magnitude about 2^12 at most (20 bits), so float32's 24-bit
significand holds each exactly: `encoder.predict` equals `econt.autoencoder.encode` to the
bit (tests/test_asic_encoder.py; `econ-emd econt export` proves it on every export).

The decoder runs on the back-end FPGA: dense layers only (hls4ml io_parallel converts
them; da4ml can trace them), from the 16 transmitted latents and the packet's 5E4M
module-sum code (code / 2^9: the piecewise-linear log2 of the sum, which the converter's
normalization took from the latents) to the module's energy pattern over its 48 trigger
cells (CALQ order), each in [0, 1). The pattern is proportional to the energies, not
normalized: the EMD-CNN loss compares unit-sum modules and is blind to the scale (trained
with it, the 48 outputs of a module sum to 1-7). The back end gets the energies as
pattern x decoded sum / sum(pattern), as `training.compare_econt.autoencoder_energies` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from econ_emd.geometry import N_TC, calq_to_8x8
from econ_emd.econt import autoencoder as ae
from econ_emd.econt.algorithms import module_sum_5e4m

from .arch import ECONT_ASIC_ENCODER, AsicArch, DenseDecoderArch
from .layers import ArrangeTCs

#: the block's latent: 9 bits in units of 2^-8, saturated
LATENT_LSB = 2.0 ** -ae.DENSE_FRACTION
LATENT_MAX = ((1 << ae.LATENT_BITS) - 1) * LATENT_LSB
#: the decoder's input: 16 latents and the module-sum code / 2^SUM_CODE_SCALE_BITS
SUM_CODE_SCALE_BITS = 9
DECODER_INPUTS = ae.N_LATENT + 1
#: the decoder's input quantizer: 9 fractional bits hold the latents (at most 8) and the
#: scaled sum code (9) exactly; values below 2 (one integer bit, and hls4ml's sign bit)
DECODER_INPUT_BITS, DECODER_INPUT_INTEGER = 11, 1
#: the initial bias of each output: the mean trigger cell of a unit-sum module
PATTERN_BIAS = 1.0 / N_TC


def _weight_quantizer():
    """The register's quantizer: ECONT_ASIC_ENCODER's weights (6-bit two's complement, 5
    fractional bits, alpha=1), as models.econt.quantizers makes them."""
    from qkeras import quantized_bits

    a = ECONT_ASIC_ENCODER
    return quantized_bits(a.weight_bits, a.weight_integer, symmetric=int(a.symmetric_weights), keep_negative=1,
                          alpha=1)


def _input_quantizer():
    """ECONT_ASIC_ENCODER's input quantizer, as models.econt.quantizers makes it."""
    from qkeras import quantized_bits

    a = ECONT_ASIC_ENCODER
    return quantized_bits(a.input_bits, a.input_integer, symmetric=1, keep_negative=1, alpha=1)


def _exact_forward(exact: tf.Tensor, smooth: tf.Tensor) -> tf.Tensor:
    """`exact` in the forward pass, the gradient of `smooth` in the backward pass (both are
    computed; smooth - stop_gradient(smooth) is exactly 0)."""
    return tf.stop_gradient(exact) + (smooth - tf.stop_gradient(smooth))


def _floor_to(x: tf.Tensor, fraction: int) -> tf.Tensor:
    scale = float(1 << fraction)
    return tf.floor(x * scale) / scale


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class AsicConv2D(tf.keras.layers.Layer):
    """The block's convolution: 3x3, stride 2, 'same', every product floored to 2^-7."""

    def __init__(self, filters: int = ae.N_FILTERS, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.quantizer = _weight_quantizer()

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (3, 3, int(input_shape[-1]), self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.filters,), initializer="zeros")

    def call(self, x):
        kq, bq = self.quantizer(self.kernel), self.quantizer(self.bias)
        smooth = tf.nn.conv2d(x, kq, strides=2, padding="SAME") + bq
        patches = tf.image.extract_patches(tf.stop_gradient(x), [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
        taps = tf.reshape(tf.stop_gradient(kq), (-1, self.filters))                 # (9, filters)
        products = _floor_to(patches[..., None] * taps, ae.CONV_FRACTION)          # (n, 4, 4, 9, filters)
        exact = tf.reduce_sum(products, axis=-2) + tf.stop_gradient(bq)
        return tf.nn.relu(_exact_forward(exact, smooth))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class AsicDense(tf.keras.layers.Layer):
    """The block's dense layer: every product floored to 2^-8, ReLU, 9-bit saturation."""

    def __init__(self, units: int = ae.N_LATENT, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.quantizer = _weight_quantizer()

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.units), initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.units,), initializer="zeros")

    def call(self, h):
        kq, bq = self.quantizer(self.kernel), self.quantizer(self.bias)
        smooth = tf.matmul(h, kq) + bq
        products = _floor_to(tf.stop_gradient(h)[:, :, None] * tf.stop_gradient(kq), ae.DENSE_FRACTION)
        exact = tf.reduce_sum(products, axis=1) + tf.stop_gradient(bq)
        return tf.minimum(tf.nn.relu(_exact_forward(exact, smooth)), LATENT_MAX)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class TransmittedLatents(tf.keras.layers.Layer):
    """The top `bits` of each 9-bit latent, at their weight: what the packet carries."""

    def __init__(self, bits: int = ae.LATENT_BITS, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= bits <= ae.LATENT_BITS:
            raise ValueError(f"transmitted latent bits {bits}: 1..{ae.LATENT_BITS}")
        self.bits = bits

    def call(self, z):
        kept = _floor_to(z, self.bits - 1)          # z < 2: the top `bits` bits of the 9
        return z + tf.stop_gradient(kept - z)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


def build_asic_encoder(arch: AsicArch) -> tf.keras.Model:
    """The encoder in the block's arithmetic (module doc), on (8, 8, 1) converter images."""
    from qkeras import QActivation

    x_in = tf.keras.Input((8, 8, 1), name="wafer")
    x = QActivation(_input_quantizer(), name="input_qa")(x_in)
    x = AsicConv2D(ae.N_FILTERS, name="conv2d")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = AsicDense(ae.N_LATENT, name="dense")(x)
    x = TransmittedLatents(arch.latent_bits, name="latent")(x)
    return tf.keras.Model(x_in, x, name="asic_encoder")


def is_asic_encoder(model) -> bool:
    return any(isinstance(layer, AsicDense) for layer in model.layers)


def transmitted_bits(model) -> int:
    """The latent bits an asic encoder was trained to send (its TransmittedLatents layer)."""
    layer = next((layer for layer in model.layers if isinstance(layer, TransmittedLatents)), None)
    if layer is None:
        raise ValueError(f"model {model.name!r} is not an encoder in the ASIC's arithmetic")
    return layer.bits


def transmitted_integers(z: np.ndarray, bits: int) -> np.ndarray:
    """(n, 16) int64 floor(L / 2^(9 - bits)): the integers whose bits the packet carries,
    from an asic encoder's output `z` (exact: z is a multiple of 2^(1 - bits))."""
    scaled = np.asarray(z, dtype=np.float64) * 2.0 ** (bits - 1)
    out = np.rint(scaled).astype(np.int64)
    if not np.array_equal(out, scaled):
        raise ValueError(f"latents off the grid of {bits}-bit transmitted latents")
    return out


def asic_weights(model) -> ae.AeWeights:
    """The register values of an asic encoder: its weights through its own quantizers
    (the values its forward pass computes with), as the block's integers."""
    if not is_asic_encoder(model):
        raise ValueError(f"model {model.name!r} is not an encoder in the ASIC's arithmetic")
    conv, dense = model.get_layer("conv2d"), model.get_layer("dense")

    def integers(layer, weight) -> np.ndarray:
        q = np.asarray(layer.quantizer(weight), dtype=np.float64) * 2 ** ae.WEIGHT_FRACTION
        out = np.rint(q).astype(np.int64)
        if not np.array_equal(out, q):
            raise RuntimeError(f"{layer.name}: a quantized weight is off the 1/32 grid")
        return out

    return ae.AeWeights(integers(conv, conv.kernel).reshape(3, 3, ae.N_FILTERS), integers(conv, conv.bias),
                        integers(dense, dense.kernel), integers(dense, dense.bias))


def set_asic_weights(model, weights: ae.AeWeights) -> None:
    """Load register values into an asic encoder (exactly representable: the quantizer
    leaves them unchanged)."""
    k, b, dk, db = weights.keras()
    model.get_layer("conv2d").set_weights([k, b])
    model.get_layer("dense").set_weights([dk, db])


def encoder_image(calq: np.ndarray) -> np.ndarray:
    """(n, 8, 8, 1) float32 converter images of integer CALQ in CALQ order: exactly the
    block's input (its 8x8 image of the AE slots is the product's 8x8 image)."""
    return (calq_to_8x8(ae.converter(calq)) * 2.0 ** -ae.INPUT_FRACTION).astype(np.float32)[..., None]


def sum_feature(calq: np.ndarray) -> np.ndarray:
    """(n, 1) float32: the packet's 5E4M module-sum code / 2^9, the decoder's 17th input."""
    return (module_sum_5e4m(calq) * 2.0 ** -SUM_CODE_SCALE_BITS).astype(np.float32)[:, None]


def decoder_inputs(latents: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """(n, 17) the decoder's input: transmitted latents, then `sum_feature`."""
    return np.concatenate([np.asarray(latents, np.float32), np.asarray(sums, np.float32)], axis=1)


def takes_module_sum(decoder) -> bool:
    """A dense decoder of this module (its input: latents and the sum code)."""
    return tuple(decoder.input_shape) == (None, DECODER_INPUTS)


def build_dense_decoder(arch: DenseDecoderArch) -> tf.keras.Model:
    """The back-end decoder (module doc); float with arch.quantized False. The quantized
    and float decoders have the same layer names and weight shapes (one initializes the
    other)."""
    z = tf.keras.Input((DECODER_INPUTS,), name="latents_and_sum")
    pattern_bias = tf.keras.initializers.Constant(PATTERN_BIAS)
    if arch.quantized:
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu

        def weights():
            return quantized_bits(arch.weight_bits, arch.weight_integer, keep_negative=1, alpha=1)

        x = QActivation(quantized_bits(DECODER_INPUT_BITS, DECODER_INPUT_INTEGER, keep_negative=1, alpha=1),
                        name="dec_input_qa")(z)
        for i, width in enumerate(arch.hidden):
            x = QDense(width, kernel_quantizer=weights(), bias_quantizer=weights(), name=f"dec_dense{i}")(x)
            x = QActivation(quantized_relu(arch.act_bits, arch.act_integer), name=f"dec_act{i}")(x)
        x = QDense(N_TC, kernel_quantizer=weights(), bias_quantizer=weights(), bias_initializer=pattern_bias,
                   name="dec_out")(x)
        x = QActivation(quantized_relu(arch.output_bits, 0), name="dec_pattern")(x)
    else:
        x = z
        for i, width in enumerate(arch.hidden):
            x = tf.keras.layers.Dense(width, name=f"dec_dense{i}")(x)
            x = tf.keras.layers.ReLU(name=f"dec_act{i}")(x)
        x = tf.keras.layers.Dense(N_TC, bias_initializer=pattern_bias, name="dec_out")(x)
        x = tf.keras.layers.ReLU(name="dec_pattern")(x)
    return tf.keras.Model(z, x, name="dense_decoder")


def build_autoencoder_with_sum(encoder: tf.keras.Model, decoder: tf.keras.Model) -> tf.keras.Model:
    """[converter image, sum feature] -> the decoder's pattern as the (8, 8, 1) image the
    losses take (the trigger cells at their pixels, dead pixels zero)."""
    image = tf.keras.Input((8, 8, 1), name="wafer_in")
    total = tf.keras.Input((1,), name="module_sum")
    z = encoder(image)
    pattern = decoder(tf.keras.layers.Concatenate(name="latents_and_sum")([z, total]))
    return tf.keras.Model([image, total], ArrangeTCs("8x8", name="pattern_image")(pattern), name="autoencoder")


#: the register's largest value, where `fold_into_registers` puts each filter's and each
#: latent's largest weight (the positive end: -1 would not hold the sign flip)
REGISTER_MAX = ae.WEIGHT_MAX * 2.0 ** -ae.WEIGHT_FRACTION
#: the share of training modules whose folded latent stays below the block's saturation
LATENT_FILL_QUANTILE = 99.0


@dataclass(frozen=True)
class FoldedStart:
    """A float twin's weights folded into the register ranges: the asic encoder's starting
    conv and dense weights, its float decoder's (the first layer's latent rows rescaled),
    the scales that did it (per filter, per latent) and which latents were revived."""

    encoder_weights: list
    decoder_weights: list
    filter_scales: np.ndarray
    latent_scales: np.ndarray
    revived: np.ndarray


def _largest_scale(*limits_and_values) -> np.ndarray:
    """Per unit, the largest factor that keeps every (limit, value) pair's value at most its
    limit; 1 where a value is zero (a unit dead on the sample: its scale does not matter)."""
    scale = np.full(np.shape(limits_and_values[0][1]), np.inf)
    for limit, value in limits_and_values:
        scale = np.minimum(scale, limit / np.where(value > 0, value, np.inf))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def fold_into_registers(float_encoder, float_decoder, images: np.ndarray, seed: int = 0) -> FoldedStart:
    """Why: trained from scratch in the block's arithmetic, the encoder starts where its cuts
    erase most products (a converter image gives a cell a few LSBs, each product is cut to
    2^-7) and does not recover; trained float first, its weights are anywhere, mostly far
    below the register's 1/32 steps. ReLU is positively homogeneous, so the float function
    is kept exactly while each filter is scaled to put its largest weight (bias included) at
    `REGISTER_MAX`, the dense rows reading it divided by the same scale, and each latent
    scaled up to the most that keeps its column in the register and its
    `LATENT_FILL_QUANTILE` percentile on `images` below saturation; the decoder's row of
    that latent divides by its scale. Products then keep the most bits the block allows.

    A latent the float twin left dead (zero on every one of `images`: ReLU latents die in
    some trainings, 7 of 16 in the worst of five seeds) passes no gradient and would stay
    dead; it is revived with a random dense column (`seed`; the spread of the live columns,
    inside the register) and a bias that makes it positive on about half of `images`, and
    its decoder row is zeroed, so the start still computes the float twin's function.

    `float_encoder`: the float twin (conv 3x3x1x8 'same' stride 2, ReLU, dense 128 -> 16,
    ReLU; models.econt.build_encoder); `float_decoder`: the dense decoder trained with it;
    `images`: (n, 8, 8, 1) converter images of training modules."""
    k, b = (np.asarray(w, np.float64) for w in float_encoder.get_layer("conv2d").get_weights())
    w, d = (np.asarray(v, np.float64) for v in float_encoder.get_layer("dense").get_weights())
    s = _largest_scale((REGISTER_MAX, np.maximum(np.abs(k).reshape(-1, k.shape[-1]).max(0), np.abs(b))))
    k, b = k * s, b * s
    w = w / np.tile(s, w.shape[0] // len(s))[:, None]              # flatten order (row, column, filter)
    hidden = tf.nn.relu(tf.nn.conv2d(np.asarray(images, np.float64), k, 2, "SAME") + b).numpy().reshape(len(images), -1)
    z = np.maximum(hidden @ w + d, 0.0)
    t = _largest_scale((REGISTER_MAX, np.maximum(np.abs(w).max(0), np.abs(d))),
                       (LATENT_MAX, np.percentile(z, LATENT_FILL_QUANTILE, axis=0)))
    dec = [np.array(v) for v in float_decoder.get_weights()]
    dec[0][: ae.N_LATENT] /= t[:, None]
    w, d = w * t, d * t
    dead = z.max(0) <= 0
    if dead.any():
        spread = w[:, ~dead].std() if (~dead).any() else REGISTER_MAX / 4
        column = np.random.default_rng(seed).normal(0.0, spread, (w.shape[0], int(dead.sum())))
        w[:, dead] = np.clip(column, -REGISTER_MAX, REGISTER_MAX)
        d[dead] = np.clip(-np.median(hidden @ w[:, dead], axis=0), -REGISTER_MAX, REGISTER_MAX)
        dec[0][np.flatnonzero(dead)] = 0.0
    f32 = np.float32
    return FoldedStart([k.astype(f32), b.astype(f32), w.astype(f32), d.astype(f32)], dec, s, t, dead)


#: the share of training modules whose folded decoder activations (each hidden unit, and
#: each module's largest output) stay inside their quantizer's range
DECODER_FILL_QUANTILE = 99.9


def fold_decoder_into_ranges(float_decoder, inputs: np.ndarray, arch: DenseDecoderArch) -> list:
    """The float decoder's weights scaled into the quantized decoder's ranges, its function
    kept: the quantized decoder's starting weights.

    Why: the quantized decoder starts from the float one, but a float decoder trained long
    grows weights past the quantizer's [-2^i, 2^i) and hidden activations past
    quantized_relu's [0, 2^i) (a 40-epoch training lost 0.59 -> 1.21 of validation loss to
    the clipping, more than its quantization-aware epochs win back). ReLU is positively
    homogeneous: each hidden unit is scaled by the most that keeps its weights in range and
    its `DECODER_FILL_QUANTILE` percentile on `inputs` below the activation's top, the next
    layer's row divided by it; the outputs are scaled by one factor for all (the pattern's
    scale is free: the energies are pattern x decoded sum / sum(pattern)), the most that
    keeps the output layer's weights in range and each module's largest output below 1.

    `inputs`: (n, 17) the decoder's inputs on training modules (`decoder_inputs`)."""
    weights = [np.asarray(w, np.float64) for w in float_decoder.get_weights()]
    w_max = 2.0 ** arch.weight_integer - 2.0 ** (arch.weight_integer - arch.weight_bits + 1)
    act_max = 2.0 ** arch.act_integer - 2.0 ** (arch.act_integer - arch.act_bits)
    out_max = 1.0 - 2.0 ** -arch.output_bits
    x = np.asarray(inputs, np.float64)
    folded, row_scale = [], np.ones(x.shape[1])
    for i in range(len(arch.hidden)):
        w, b = weights[2 * i] / row_scale[:, None], weights[2 * i + 1]
        a = np.maximum(x @ w + b, 0.0)
        c = _largest_scale((w_max, np.maximum(np.abs(w).max(0), np.abs(b))),
                           (act_max, np.percentile(a, DECODER_FILL_QUANTILE, axis=0)))
        folded += [w * c, b * c]
        x, row_scale = a * c, c
    w, b = weights[-2] / row_scale[:, None], weights[-1]
    out = np.maximum(x @ w + b, 0.0)
    g = _largest_scale((w_max, np.array(max(np.abs(w).max(), np.abs(b).max()))),
                       (out_max, np.array(np.percentile(out.max(1), DECODER_FILL_QUANTILE))))
    folded += [w * g, b * g]
    return [v.astype(np.float32) for v in folded]


#: the block's product cuts, as the firmware flow takes them (layer of the QKeras encoder of
#: `firmware_encoder` -> fractional bits each product is cut to before the sum)
PRODUCT_CUTS = {"conv2d": ae.CONV_FRACTION, "dense": ae.DENSE_FRACTION}


def firmware_encoder(weights: ae.AeWeights) -> tf.keras.Model:
    """The ECON-T block as a plain QKeras encoder (`models.arch.ECONT_ASIC_ENCODER`) holding
    `weights`: what hls4ml converts and da4ml traces, with `PRODUCT_CUTS`. Its outputs are
    the block's 9-bit latents; an asic encoder's transmitted latents are their top bits."""
    from .econt import build_encoder

    model = build_encoder(ECONT_ASIC_ENCODER)
    model.set_weights(weights.keras())
    return model


def custom_objects() -> dict:
    return {"AsicConv2D": AsicConv2D, "AsicDense": AsicDense, "TransmittedLatents": TransmittedLatents}
