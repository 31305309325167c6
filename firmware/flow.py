"""The firmware flow, once: a Keras model -> hls4ml project -> C simulation -> RTL (da4ml
Verilog, Verilator simulation) -> Yosys synthesis, each checked bit for bit against the
model's own outputs.

`build_firmware` runs the products asked for in order; the pipeline's stages run the same
steps one per stage (`hls_project` in `firmware`, `c_simulation` in `csim`, `build_rtl`
in `rtl`) so each can be skipped when current; `econ-emd scan` and `econ-emd econt
firmware` call `build_firmware`. Options come from the run configuration's `firmware` and
`rtl` sections (`FirmwareParams`, `RtlParams`): one options type for every caller.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .convert import ProductCuts, convert, model_formats
from .csim import c_simulation, predict_check, vendor_build
from .params import FirmwareParams, RtlParams
from .results import FirmwareBuild, HlsBuild
from .rtl import build_rtl

log = logging.getLogger("econ_emd")

#: what `build_firmware` can make, in the order it makes them
PRODUCTS = ("hls", "csim", "rtl", "synthesis")
HLS_DIR = "hls_project"


def hls_project(model, out_dir: str | Path, firmware: FirmwareParams, *, product_cuts: ProductCuts | None = None,
                inputs: np.ndarray | None = None, expected: np.ndarray | None = None,
                vendor: bool = False) -> HlsBuild:
    """Write the hls4ml project of `model` into `out_dir` (replaced). With `inputs` and
    `expected` (the model's outputs for them), hls4ml's own compiled `predict` is checked
    against the model; with `vendor`, the vendor tool builds it when it is on PATH."""
    formats = model_formats(model, product_cuts)
    lsb = formats["output"].lsb
    t0 = time.perf_counter()
    hls_model = convert(model, out_dir, firmware, product_cuts)
    seconds = time.perf_counter() - t0
    log.info("firmware: HLS project written (%s, %s, %s, RF %d, %s @ %.3f ns) in %.1f s", firmware.backend,
             firmware.io_type, firmware.strategy, firmware.reuse_factor, firmware.part, firmware.clock_period_ns,
             seconds)
    predict = None
    if inputs is not None and expected is not None:
        predict = predict_check(hls_model, inputs, expected, lsb)
        log.info("firmware: hls4ml predict vs the model on %s modules: %.4f%% bit-exact, max %d LSB",
                 f"{predict.n_modules:,}", 100 * predict.bit_exact_fraction, predict.max_abs_diff_lsb)
    built = vendor_build(hls_model, firmware.cosim) if vendor else {"ran": False, "message": "not asked for"}
    if vendor and not built["ran"]:
        log.info("firmware: %s", built["message"])
    return HlsBuild(project=str(out_dir), formats={k: v.hls() for k, v in formats.items()}, output_lsb=lsb,
                    predict=predict, convert_seconds=seconds,
                    vendor={k: v for k, v in built.items() if k != "result"}, hls_model=hls_model)


def build_firmware(model, inputs: np.ndarray, expected: np.ndarray, out_dir: str | Path, *,
                   firmware: FirmwareParams, rtl: RtlParams, products: tuple[str, ...] = PRODUCTS,
                   product_cuts: ProductCuts | None = None, tolerance_lsb: int = 0) -> FirmwareBuild:
    """The firmware of `model`, checked on `inputs` (exactly what the model's first layer
    sees) against `expected` (the model's outputs for them), into `out_dir`: `hls_project/`
    and `verilog/`.

    Parameters
    ----------
    products
        Any of "hls" (the hls4ml project), "csim" (its g++ C simulation; needs "hls"),
        "rtl" (da4ml Verilog and its Verilator simulation), "synthesis" (Yosys, with "rtl";
        without it the RTL is not synthesized whatever `rtl.synthesize` says).
    product_cuts
        Layers whose every product is cut to a number of fractional bits before the sum
        (the ECON-T block's arithmetic); None for exact products.
    tolerance_lsb
        The largest output difference the RTL check still passes.
    """
    unknown = set(products) - set(PRODUCTS)
    if unknown:
        raise ValueError(f"unknown firmware products {sorted(unknown)} (choose from {', '.join(PRODUCTS)})")
    if "csim" in products and "hls" not in products:
        raise ValueError("the C simulation needs the HLS project: products must include 'hls'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build = FirmwareBuild()
    if "hls" in products:
        build.hls = hls_project(model, out_dir / HLS_DIR, firmware, product_cuts=product_cuts)
    if "csim" in products:
        build.csim = c_simulation(out_dir / HLS_DIR, inputs, expected, build.hls.output_lsb)
        acc = build.csim.accuracy
        log.info("firmware: C simulation vs the model on %s modules: %.4f%% bit-exact, max %d LSB",
                 f"{acc.n_modules:,}", 100 * acc.bit_exact_fraction, acc.max_abs_diff_lsb)
    if "rtl" in products:
        build.rtl = build_rtl(model, inputs, expected, out_dir, firmware=firmware, rtl=rtl,
                              tolerance_lsb=tolerance_lsb, product_cuts=product_cuts,
                              synthesize="synthesis" in products)
    return build
