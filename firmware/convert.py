"""hls4ml conversion of the QKeras encoder into an HLS project, set up for bit-exactness.

What bit-exactness needs, applied here:
* the 'name'-granularity config from the QKeras model;
* the input precision equal to the encoder's real input format (the signed format of its
  input quantizer), instead of hls4ml's default fixed<16,6>;
* accumulators and pre-activation results of the convolution and the dense layer wide
  enough that nothing is truncated (`precision.accumulator_format`, from the weights);
* alpha=1 in every weight/bias quantizer (enforced by `models.econt`; checked here).

hls4ml's own `bit_exact=True` mode re-derives every accumulator and result type itself and
overrides the ones set in the config; it is not used for QKeras encoders, so the precisions
above are what the firmware gets, and a too-narrow one shows up as a C-simulation mismatch
(tested). A resource-aware encoder's proxy model (models.hgq_encoder) is the opposite: its
quantizers carry every precision, and hls4ml's proxy pass, which runs in that mode only,
turns them into the firmware's types. The
encoder ends in a quantized_relu, which hls4ml keeps without that mode, and the input
precision is set explicitly (no float input is truncated into fixed<16,6>).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ModelFileError

from .params import FirmwareParams
from .precision import FixedFormat, accumulator_format, format_of

log = logging.getLogger("econ_emd")

PROJECT_NAME = "myproject"


class NotAnEncoderError(ModelFileError):
    """The model is not a QKeras ECON-T-style encoder this stage can convert."""


#: layer name -> fractional bits each of its products is cut to (floor) before the sum;
#: {} for exact products (econ-emd's own networks), `models.asic_encoder.PRODUCT_CUTS` for
#: the ECON-T block
ProductCuts = dict[str, int]

#: the Keras layers a QKeras stack may hold besides its quantized layers (they move values
#: without computing on them)
PASS_THROUGH = ("InputLayer", "Flatten", "Reshape")
AFFINE = ("QDense", "QConv2D")


def affine_layers(model) -> list:
    """The quantized affine layers (QConv2D, QDense) of a QKeras stack, in order."""
    return [layer for layer in model.layers if type(layer).__name__ in AFFINE]


def model_formats(model, product_cuts: ProductCuts | None = None) -> dict[str, FixedFormat]:
    """The fixed formats of a QKeras stack: an input quantizer, then affine layers (QConv2D,
    QDense) each followed by a quantized activation, as econ-emd's encoders and the asic
    encoder's dense decoder are. Keys: "input" (the input quantizer's), per affine layer
    `<name>_weight`, `<name>_bias` and `<name>_accum` (sized from its quantized weights,
    `precision.accumulator_format`), the activation after it by its layer name, and
    "output" (the last activation's). A resource-aware encoder's proxy model gives only
    "input" and "output" (its quantizers carry the rest).

    `product_cuts` names the layers whose products are cut to a number of fractional bits
    (hls4ml stores each product in the accumulator type, which then does the cut:
    `nnet_dense_latency.h` / `nnet_conv2d_latency.h`, mult[] of accum_t)."""
    products = product_cuts or {}
    if is_proxy(model):
        if products:
            raise ValueError("product cuts apply to QKeras models; a proxy model carries its own formats")
        from .proxy_trace import proxy_input_format, proxy_output_format

        return {"input": proxy_input_format(model), "output": proxy_output_format(model)}
    unknown = set(products) - {layer.name for layer in affine_layers(model)}
    if unknown:
        raise ValueError(f"product fractions for unknown layers: {sorted(unknown)}")
    fm: dict[str, FixedFormat] = {}
    current, pending = None, None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in PASS_THROUGH:
            continue
        if kind == "QActivation":
            fmt = format_of(layer.quantizer)
            if current is None:
                fm["input"] = fmt
            elif pending is None:
                raise NotAnEncoderError(f"layer '{layer.name}': two activations in a row")
            else:
                fm[layer.name] = fmt
            current, pending = fmt, None
        elif kind in AFFINE:
            if current is None or pending is not None:
                raise NotAnEncoderError(f"layer '{layer.name}': an affine layer must follow a quantized activation "
                                        "(the input quantizer or the previous layer's)")
            for q in (getattr(layer, "kernel_quantizer_internal", None), getattr(layer, "bias_quantizer_internal", None)):
                if q is None:
                    raise NotAnEncoderError(f"layer '{layer.name}' is not a quantized QKeras layer")
                if getattr(q, "alpha", None) not in (1, 1.0):
                    raise NotAnEncoderError(f"layer '{layer.name}': quantizer alpha is {q.alpha!r}; "
                                            f"bit-exact firmware needs alpha=1")
            w_q, b_q = layer.kernel_quantizer_internal, layer.bias_quantizer_internal
            kernel = np.asarray(w_q(layer.kernel)).reshape(-1, layer.kernel.shape[-1])
            bias = np.asarray(b_q(layer.bias))
            fm[f"{layer.name}_weight"] = format_of(w_q)
            fm[f"{layer.name}_bias"] = format_of(b_q)
            fm[f"{layer.name}_accum"] = accumulator_format(current, format_of(w_q), format_of(b_q), kernel, bias,
                                                           products.get(layer.name))
            pending = layer.name
        else:
            raise NotAnEncoderError(f"layer '{layer.name}' ({kind}): not a layer of a QKeras stack the firmware "
                                    f"flow converts (layers: {', '.join(l.name for l in model.layers)})")
    if "input" not in fm or pending is not None or not affine_layers(model):
        raise NotAnEncoderError("not a QKeras stack of an input quantizer and affine layers each followed by a "
                                f"quantized activation (layers: {', '.join(l.name for l in model.layers)})")
    fm["output"] = current
    return fm


def is_proxy(encoder) -> bool:
    """A resource-aware (HGQ) encoder frozen into a proxy model (models.hgq_encoder)."""
    return any(type(layer).__name__ == "FixedPointQuantizer" for layer in encoder.layers)


def hls_config(encoder, opts: FirmwareParams, product_cuts: ProductCuts | None = None
               ) -> tuple[dict, dict[str, FixedFormat]]:
    """The 'name'-granularity config; a proxy model's quantizers set every precision
    themselves (hls4ml's HGQ pass), a QKeras encoder's are set here."""
    import hls4ml

    fm = model_formats(encoder, product_cuts)
    cfg = hls4ml.utils.config_from_keras_model(encoder, granularity="name", backend=opts.backend)
    cfg["Model"]["Strategy"] = opts.strategy
    cfg["Model"]["ReuseFactor"] = opts.reuse_factor
    if is_proxy(encoder):
        for layer in cfg["LayerName"].values():
            layer.pop("ParallelizationFactor", None)
        return cfg, fm
    layers = cfg["LayerName"]
    in_name = encoder.layers[0].name
    layers[in_name]["Precision"]["result"] = fm["input"].hls()
    for name in (layer.name for layer in affine_layers(encoder)):
        acc = fm[f"{name}_accum"].hls()
        layers[name]["Precision"]["accum"] = acc
        layers[name]["Precision"]["result"] = acc
        if f"{name}_linear" in layers:
            layers[f"{name}_linear"]["Precision"]["result"] = acc
        layers[name]["ReuseFactor"] = opts.reuse_factor
    return cfg, fm


def convert(encoder, out_dir: str | Path, opts: FirmwareParams, product_cuts: ProductCuts | None = None):
    """Write the HLS project into out_dir (replacing it); return the hls4ml model."""
    import hls4ml

    out_dir = Path(out_dir)
    if opts.strategy == "distributed_arithmetic" and opts.reuse_factor != 1:
        raise ValueError("the distributed_arithmetic strategy requires reuse_factor 1")
    cfg, _ = hls_config(encoder, opts, product_cuts)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    import contextlib
    import io

    chatter = io.StringIO()  # hls4ml prints its layer walk to stdout
    with contextlib.redirect_stdout(chatter):
        hls_model = hls4ml.converters.convert_from_keras_model(
            encoder, output_dir=str(out_dir), project_name=PROJECT_NAME, backend=opts.backend,
            hls_config=cfg, io_type=opts.io_type, part=opts.part, clock_period=opts.clock_period_ns,
            bit_exact=is_proxy(encoder))
        hls_model.write()
    log.debug("hls4ml: %s", chatter.getvalue())
    return hls_model
