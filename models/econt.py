"""The ECON-T autoencoder: a quantized QKeras encoder (on the ASIC) and a float decoder.

Encoder (reference architecture, 2,144 parameters):
  Input(8, 8, 1) -> QActivation(input quantizer) -> QConv2D(8, 3x3, stride 2, same)
  -> QActivation(quantized_relu) -> Flatten(128) -> QDense(16) -> QActivation(quantized_relu)
Every weight and bias quantizer has alpha=1: QKeras 0.9.0 turns alpha=None into 'auto_po2'
in QDense/QConv2D, and hls4ml then inserts a scaling layer that breaks bit-exactness.
The input quantizer is signed (hls4ml maps any quantized_bits to a signed type).

The latent width follows the number of output links (each carries 32 bits per bunch
crossing): 2 -> 3 bits, 3 -> 5, 4 -> 7, 5 -> 9 (`econt.link_budget`, which verifies that the 16
latents, the 9-bit module sum and the header fit).

Decoder (float, off-detector, 2,833 parameters): Dense(128, relu) -> Reshape(4, 4, 8) ->
Conv2DTranspose(8, 3x3, stride 2, same, relu) -> Conv2DTranspose(1, 3x3, same) -> sigmoid,
multiplied by the mask of the 48 live pixels of the 8x8 image.
Layer names avoid `input` (hls4ml reserves it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from econ_emd.geometry import MASK_8X8

from .arch import EncoderArch  # noqa: F401 (re-exported)
from econ_emd.econt.autoencoder import N_LATENT

#: logit of 1/48, the mean pixel of a unit-sum module over the 48 live pixels
OUTPUT_BIAS = float(np.log(1.0 / 47.0))




def quantizers(arch: EncoderArch) -> dict:
    """The QKeras quantizers of the encoder (also used by firmware/ to derive precisions)."""
    from qkeras import quantized_bits, quantized_relu

    sym = int(arch.symmetric_weights)
    wq = quantized_bits(arch.weight_bits, arch.weight_integer, symmetric=sym, keep_negative=1, alpha=1)
    return {
        "input": quantized_bits(arch.input_bits, arch.input_integer, symmetric=1, keep_negative=1, alpha=1),
        "weight": wq,
        "bias": quantized_bits(arch.weight_bits, arch.weight_integer, symmetric=sym, keep_negative=1, alpha=1),
        "conv_act": quantized_relu(arch.conv_act_bits, arch.conv_act_integer),
        "latent": quantized_relu(arch.latent_bits, arch.latent_integer),
    }


def build_encoder(arch: EncoderArch = EncoderArch()) -> tf.keras.Model:
    """The ECON-T encoder, quantized (QKeras) or, with quantized=False, its float twin."""
    x_in = tf.keras.Input((8, 8, 1), name="wafer")
    if arch.quantized:
        from qkeras import QActivation, QConv2D, QDense

        q = quantizers(arch)
        x = QActivation(q["input"], name="input_qa")(x_in)
        x = QConv2D(arch.filters, 3, strides=2, padding="same", kernel_quantizer=q["weight"],
                    bias_quantizer=q["bias"], name="conv2d")(x)
        x = QActivation(q["conv_act"], name="conv_act")(x)
        x = tf.keras.layers.Flatten(name="flatten")(x)
        x = QDense(arch.n_latent, kernel_quantizer=q["weight"], bias_quantizer=q["bias"], name="dense")(x)
        x = QActivation(q["latent"], name="latent")(x)
    else:
        x = tf.keras.layers.Conv2D(arch.filters, 3, strides=2, padding="same", name="conv2d")(x_in)
        x = tf.keras.layers.ReLU(name="conv_act")(x)
        x = tf.keras.layers.Flatten(name="flatten")(x)
        x = tf.keras.layers.Dense(arch.n_latent, name="dense")(x)
        x = tf.keras.layers.ReLU(name="latent")(x)
    return tf.keras.Model(x_in, x, name="encoder")


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class LiveMask(tf.keras.layers.Layer):
    """Zeroes the 16 dead pixels of an (8, 8, 1) image."""

    def call(self, x):
        return x * tf.constant(MASK_8X8[..., None], dtype=x.dtype)


def build_decoder(n_latent: int = N_LATENT) -> tf.keras.Model:
    z = tf.keras.Input((n_latent,), name="latent_code")
    x = tf.keras.layers.Dense(128, activation="relu", name="dec_dense")(z)
    x = tf.keras.layers.Reshape((4, 4, 8), name="dec_reshape")(x)
    x = tf.keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="dec_convt1")(x)
    # Output bias at logit(1/48): the untrained decoder already outputs a unit-sum-like image
    # (the targets), instead of 0.5 everywhere, so MSE-type losses do not start by
    # crushing every pixel (which can leave the latents dead).
    x = tf.keras.layers.Conv2DTranspose(1, 3, padding="same", name="dec_convt2",
                                        bias_initializer=tf.keras.initializers.Constant(OUTPUT_BIAS))(x)
    x = tf.keras.layers.Activation("sigmoid", name="dec_sigmoid")(x)
    x = LiveMask(name="dec_mask")(x)
    return tf.keras.Model(z, x, name="decoder")


def build_autoencoder(encoder: tf.keras.Model, decoder: tf.keras.Model,
                      latent_max: float | None = None) -> tf.keras.Model:
    """Encoder then decoder; with `latent_max`, the latents saturate there on their way to
    the decoder, as the ECON-T field does (the QKeras encoder's last quantizer saturates
    itself; the HGQ encoder's latent quantizer learns no range, so training must see it)."""
    x_in = tf.keras.Input((8, 8, 1), name="wafer_in")
    z = encoder(x_in)
    if latent_max is not None:
        z = tf.keras.layers.ReLU(max_value=latent_max, name="latent_field")(z)
    return tf.keras.Model(x_in, decoder(z), name="autoencoder")
