"""The resource-aware ECON-T encoder, built with HGQ (High Granularity Quantization).

Same network as `models.econt.build_encoder` (input quantizer, conv 3x3 / 8 filters /
stride 2 / ReLU, flatten, dense 16 / ReLU), but every weight and every activation has its
own number of fractional bits, trained by gradient descent together with the weights under
an EBOPs penalty (an estimate of the LUTs the constant multiplications cost) of strength
`beta`: resources become part of the loss. The latents keep the ECON-T format of the link
count: their fractional bits are fixed (not trained), and freezing clamps them to the
field's range.

A trained HGQ model is frozen into a *proxy model* (`freeze`): plain Keras layers with the
quantized weights and `FixedPointQuantizer` layers holding every value's (sign, integer,
fraction) bits. The proxy is what is saved, evaluated and converted: hls4ml parses it bit
for bit, and `firmware.proxy_trace` traces it for the RTL path.

HGQ 0.2.6 needs the `tensorflow` distribution (not `tensorflow-cpu`), both 2.14.1 here.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .arch import HgqArch


def _conf(kind: str, **update) -> dict:
    from HGQ.utils import get_default_kq_conf, get_default_paq_conf

    conf = get_default_kq_conf() if kind == "kernel" else get_default_paq_conf()
    conf.update(update)
    return conf


def build_hgq_encoder(arch: HgqArch) -> tf.keras.Model:
    from HGQ.layers import HConv2D, HDense, HQuantize, PFlatten

    b = arch.beta
    x_in = tf.keras.Input((8, 8, 1), name="wafer")
    x = HQuantize(beta=b, paq_conf=_conf("act", init_bw=arch.input_bits), name="inp_q")(x_in)
    x = HConv2D(arch.filters, 3, strides=2, padding="same", activation="relu", beta=b,
                kq_conf=_conf("kernel", init_bw=arch.init_bits), paq_conf=_conf("act", init_bw=arch.init_bits),
                name="conv2d")(x)
    x = PFlatten(name="flatten")(x)
    x = HDense(arch.n_latent, activation="relu", beta=b, kq_conf=_conf("kernel", init_bw=arch.init_bits),
               paq_conf=_conf("act", init_bw=arch.latent_bits - arch.latent_integer, trainable=False),
               name="dense")(x)
    return tf.keras.Model(x_in, x, name="encoder")


def latent_max(arch: HgqArch) -> float:
    """The largest value of the latent field (e.g. 511/256 for 9 bits, 1 integer bit)."""
    return 2.0 ** arch.latent_integer - 2.0 ** -(arch.latent_bits - arch.latent_integer)


def training_callbacks() -> list:
    """What HGQ's training needs each epoch: fresh value ranges, the EBOPs in the logs."""
    from HGQ import FreeBOPs, ResetMinMax

    return [ResetMinMax(), FreeBOPs()]


def freeze(encoder: tf.keras.Model, calibration: np.ndarray, arch: HgqArch) -> tuple[tf.keras.Model, float]:
    """(proxy model, exact EBOPs): the value ranges traced on `calibration` inputs fix every
    integer width (values beyond them wrap, HGQ's aggressive mode, in the proxy and the
    firmware alike); the input quantizer keeps at least one integer bit (the normalized
    charges span [0, 2)), and the latents' quantizer is clamped to the ECON-T field (at most
    `latent_integer` integer bits, unsigned, saturating)."""
    from HGQ import to_proxy_model, trace_minmax

    ebops = float(trace_minmax(encoder, calibration, verbose=0))
    proxy = to_proxy_model(encoder, aggressive=True)
    first = proxy.layers[1]
    if type(first).__name__ != "FixedPointQuantizer":
        raise RuntimeError(f"the HGQ proxy model starts with {type(first).__name__}, not its input quantizer")
    # the normalized input spans [0, 2) whatever the calibration saw: one integer bit at least
    # (wider, not different: a value the traced range held is quantized as before)
    bits, ints = first.bits.numpy(), first.integers.numpy()
    kept = bits > 0
    grow = np.where(kept, np.maximum(1 - ints, 0), 0).astype(bits.dtype)
    first.integers.assign(ints + grow)
    first.bits.assign(bits + grow)
    out = proxy.layers[-1]
    if type(out).__name__ != "FixedPointQuantizer":
        raise RuntimeError(f"the HGQ proxy model ends in {type(out).__name__}, not its latent quantizer")
    integers = np.minimum(out.integers.numpy(), arch.latent_integer)
    out.integers.assign(integers)
    out.bits.assign(integers + (arch.latent_bits - arch.latent_integer))
    out.keep_negative.assign(np.zeros_like(out.keep_negative.numpy()))
    out.SAT = "SAT"
    return proxy, ebops


def is_proxy(model) -> bool:
    return any(type(layer).__name__ == "FixedPointQuantizer" for layer in model.layers)


def custom_objects() -> dict:
    """Keras custom objects of saved proxy models ({} where HGQ is not installed)."""
    try:
        from HGQ.proxy import FixedPointQuantizer
    except ImportError:
        return {}
    return {"FixedPointQuantizer": FixedPointQuantizer}
