"""The asic encoder's back-end decoder as firmware: C simulation and RTL bit-exact on inputs
that put its sums on rounding ties, and the FPGA capacity by hand."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from econ_emd.firmware.flow import build_firmware
from econ_emd.firmware.params import FirmwareParams, RtlParams
from econ_emd.models.arch import DenseDecoderArch
from econ_emd.models.asic_encoder import DECODER_INPUT_BITS, DECODER_INPUT_INTEGER, DECODER_INPUTS, build_dense_decoder
from econ_emd.stages.asic import decoder_resources, fpga_capacity

ARCH = DenseDecoderArch(hidden=(8,), weight_bits=8, weight_integer=0, act_bits=8, act_integer=1, output_bits=8)
INPUT_LSB = 2.0 ** -(DECODER_INPUT_BITS - 1 - DECODER_INPUT_INTEGER)


def _tie_decoder():
    """Weights of few bits (+-1/2, +-1/4, 0) and half-LSB biases: the sums of inputs on the
    input grid land on the activations' rounding midpoints again and again."""
    tf.keras.utils.set_random_seed(5)
    dec = build_dense_decoder(ARCH)
    rng = np.random.default_rng(5)
    for layer in dec.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            kernel = rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5], size=kernel.shape)
            bias = rng.choice([-1, 1, 3], size=bias.shape) * 2.0 ** -(ARCH.act_bits - ARCH.act_integer) / 2
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return dec


def _tie_inputs() -> np.ndarray:
    """All zero, all equal at every small multiple of the input LSB, alternating, saturated,
    a single input, and random odd multiples of the LSB."""
    rows = [np.zeros(DECODER_INPUTS)]
    rows += [np.full(DECODER_INPUTS, k * INPUT_LSB) for k in range(1, 64)]
    rows += [np.where(np.arange(DECODER_INPUTS) % 2 == 0, k, -k) * INPUT_LSB for k in (1, 3, 255)]
    top = 2.0 ** DECODER_INPUT_INTEGER - INPUT_LSB
    rows += [np.full(DECODER_INPUTS, top), np.full(DECODER_INPUTS, -top)]
    rows += [np.eye(DECODER_INPUTS)[i] * INPUT_LSB * 3 for i in range(DECODER_INPUTS)]
    rng = np.random.default_rng(6)
    rows += list((2 * rng.integers(-40, 40, size=(200, DECODER_INPUTS)) + 1) * INPUT_LSB)
    return np.asarray(rows, dtype=np.float32)


def test_the_decoder_is_bit_exact_in_c_simulation_and_rtl_on_ties(tmp_path):
    dec = _tie_decoder()
    x = _tie_inputs()
    y = dec.predict(x, verbose=0)
    lsb = 2.0 ** -ARCH.output_bits
    assert np.allclose(y / lsb, np.round(y / lsb))                  # outputs on the output grid
    assert len(np.unique(y)) > 20                                    # not a constant decoder
    kernel, bias = dec.get_layer("dec_dense0").get_weights()
    hidden = (x @ kernel + bias) / 2.0 ** -(ARCH.act_bits - ARCH.act_integer)
    assert np.mean(np.isclose(hidden % 1, 0.5)) > 0.1                # the premise: many sums on a midpoint
    build = build_firmware(dec, x, y, tmp_path, firmware=FirmwareParams(), rtl=RtlParams(synthesize="never"),
                           products=("hls", "csim", "rtl"))
    assert build.csim.accuracy.n_modules == len(x)
    assert build.csim.accuracy.bit_exact_fraction == 1.0
    assert build.rtl.simulation.bit_exact_fraction == 1.0
    assert build.rtl.simulation.initiation_interval == 1
    counts, source = decoder_resources(build.rtl)                   # not synthesized: da4ml's figures
    assert build.rtl.synthesis is None and source == "da4ml estimate"
    assert counts == {"lut": round(build.rtl.design["estimated_luts"]), "ff": build.rtl.design["register_bits"]}
    assert counts["lut"] > 0 and counts["ff"] > 0


def test_fpga_capacity_by_hand():
    # xcvu13p: 1,728,000 LUT, 3,456,000 FF; 10,000 LUT -> 172 decoders, 5,000 FF -> 691
    cap = fpga_capacity({"lut": 10_000, "ff": 5_000, "dsp": 0}, "Yosys", "xcvu13p-flga2577-2-e", 4.0)
    assert cap["instances"] == 172 and cap["limited_by"] == "lut"
    assert cap["modules_per_instance"] == 6                          # 250 MHz / 40 MHz, II 1
    assert cap["modules"] == 172 * 6
    # 4.167 ns is 239.98 MHz: five modules per decoder, not six
    assert fpga_capacity({"lut": 10_000}, "Yosys", "xcvu13p", 4.167)["modules_per_instance"] == 5
    # II 2 halves what one decoder serves
    assert fpga_capacity({"lut": 10_000}, "Yosys", "xcvu13p", 4.0, initiation_interval=2)["modules_per_instance"] == 3
    # FF the scarcer resource
    assert fpga_capacity({"lut": 100, "ff": 2_000_000}, "Yosys", "xcvu13p", 4.0)["limited_by"] == "ff"
    # an unknown part or no synthesis: no figure, never a guess
    assert fpga_capacity({"lut": 10_000}, "Yosys", "xc9unknown", 4.0)["modules"] is None
    assert fpga_capacity({}, "Yosys", "xcvu13p", 4.0)["instances"] is None
