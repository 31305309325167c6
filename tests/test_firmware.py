import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from econ_emd.firmware import csim, reports
from econ_emd.firmware.convert import NotAnEncoderError, convert, model_formats, hls_config
from econ_emd.firmware.params import FirmwareParams
from econ_emd.firmware.results import BitAccuracy
from econ_emd.models.econt import EncoderArch, build_encoder
from econ_emd.training.encoder_train import encoder_inputs

FIXTURE = Path(__file__).parent / "fixtures" / "econt_encoder_pynq_z2"


@pytest.fixture(scope="module")
def encoder():
    tf.keras.utils.set_random_seed(3)
    return build_encoder()


@pytest.fixture(scope="module")
def tb(encoder, modules):
    x = encoder_inputs(modules, encoder)
    return x, encoder.predict(x, verbose=0)


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_csim_bit_exact(encoder, tb, tmp_path, io_type):
    x, y = tb
    lsb = model_formats(encoder)["output"].lsb
    model = convert(encoder, tmp_path / "prj", FirmwareParams(io_type=io_type))
    rep = csim.c_simulation(tmp_path / "prj", x, y, lsb).accuracy
    assert rep.n_modules == len(x) and rep.bit_exact_fraction == 1.0
    assert rep.mismatching_latents == 0 and rep.max_abs_diff_lsb == 0
    pred = csim.predict_check(model, x, y, lsb)
    assert pred.bit_exact_fraction == 1.0
    for f in ("firmware/myproject.cpp", "myproject_test.cpp", "build_prj.tcl", "hls4ml_config.yml",
              "tb_data/tb_input_features.dat", "tb_data/csim_results.log"):
        assert (tmp_path / "prj" / f).exists(), f


def test_too_narrow_accumulator_is_detected(encoder, tb, tmp_path, monkeypatch):
    """The check can fail: a dense accumulator with 2 integer bits (wraps) and 4 fractional
    bits fewer than needed (truncates) gives mismatches in the C simulation."""
    import econ_emd.firmware.convert as conv

    real = conv.hls_config

    def narrow(enc, opts, product_cuts=None):
        cfg, fm = real(enc, opts, product_cuts)
        acc = fm["dense_accum"]
        bad = f"fixed<{acc.fraction - 4 + 2},2,TRN,WRAP,0>"
        for key in ("accum", "result"):
            cfg["LayerName"]["dense"]["Precision"][key] = bad
        cfg["LayerName"]["dense_linear"]["Precision"]["result"] = bad
        return cfg, fm

    monkeypatch.setattr(conv, "hls_config", narrow)
    x, y = tb
    lsb = model_formats(encoder)["output"].lsb
    convert(encoder, tmp_path / "prj", FirmwareParams())
    rep = csim.c_simulation(tmp_path / "prj", x, y, lsb).accuracy
    assert rep.bit_exact_fraction < 1.0 and rep.mismatching_latents > 0
    assert rep.first_mismatches and len(rep.first_mismatches[0]["input"]) == 64


def test_input_precision_is_the_encoder_input_format(encoder):
    cfg, fm = hls_config(encoder, FirmwareParams())
    assert cfg["LayerName"]["wafer"]["Precision"]["result"].startswith("fixed<10,4")
    # accumulators hold the worst case exactly: fraction = input + weight fractions
    assert fm["conv2d_accum"].fraction == fm["input"].fraction + fm["conv2d_weight"].fraction
    assert fm["dense_accum"].fraction == fm["conv_act"].fraction + fm["dense_weight"].fraction


def test_compare_lsb_counts():
    e = np.array([[0.5, 0.25], [1.0, 0.0]])
    g = np.array([[0.5, 0.25], [1.0078125, 0.0]])
    rep = BitAccuracy.compare(e, g, 2 ** -7)
    assert rep.mismatching_modules == 1 and rep.mismatching_latents == 1
    assert rep.max_abs_diff_lsb == 1 and rep.bit_exact_fraction == 0.5


def test_not_a_qkeras_stack_is_a_clear_error():
    with pytest.raises(NotAnEncoderError, match=r"layer 'plain' \(Dense\): not a layer of a QKeras stack"):
        model_formats(tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2, name="plain")]))
    # Keras numbers a layer's default name by the models built before it in the process
    with pytest.raises(NotAnEncoderError, match=r"layer 'conv2d(_\d+)?' \(Conv2D\): not a layer of a QKeras stack"):
        model_formats(build_encoder(EncoderArch(quantized=False)))
    from qkeras import QActivation, QDense, quantized_bits

    x = tf.keras.Input((4,))
    no_act = tf.keras.Model(x, QDense(2, kernel_quantizer=quantized_bits(6, 0, alpha=1),
                                      bias_quantizer=quantized_bits(6, 0, alpha=1))(
        QActivation(quantized_bits(8, 1, alpha=1))(x)))
    with pytest.raises(NotAnEncoderError, match="each followed by a quantized activation"):
        model_formats(no_act)


def test_vendor_fixture_figures(tmp_path):
    prj = tmp_path / "prj"
    shutil.copytree(FIXTURE, prj)
    f = reports.parse_vendor_reports(prj)
    assert f["latency_cycles"]["value"] == 103 and f["ii"]["value"] == 92
    assert f["estimated_clock_ns"]["value"] == pytest.approx(5.019)
    assert f["latency_ns"]["value"] == pytest.approx(515.0)
    assert f["hls_lut"]["value"] == 59895 and f["hls_dsp"]["value"] == 132 and f["hls_ff"]["value"] == 34199
    assert f["hls_bram_18k"]["value"] == 1 and f["hls_lut"]["available"] == 53200
    assert f["lut"]["value"] == 36023 and f["ff"]["value"] == 29474 and f["dsp"]["value"] == 59
    assert f["lut"]["source"] == reports.SRC_SYNTH and f["hls_lut"]["source"] == reports.SRC_HLS
    assert f["lut"]["percent"] == pytest.approx(100 * 36023 / 53200)
    assert f["cosim"]["value"] == "Pass" and f["cosim"]["rtl"] == "Verilog"


def test_budget_pass_and_fail(tmp_path):
    prj = tmp_path / "prj"
    shutil.copytree(FIXTURE, prj)
    f = reports.parse_vendor_reports(prj)
    lines = reports.check_budget(f, {"max_ii": 100, "max_latency_ns": 500, "max_lut_percent": 80,
                                     "max_bram_percent": None})
    verdict = {(b["item"], b["source"]): b["verdict"] for b in lines}
    # one line per source: post-synthesis LUTs fit the Zynq-7020, the HLS estimate does not
    assert verdict == {("max_ii", reports.SRC_HLS): "pass", ("max_latency_ns", reports.SRC_HLS): "fail",
                       ("max_lut_percent", reports.SRC_SYNTH): "pass", ("max_lut_percent", reports.SRC_HLS): "fail"}
    assert reports.check_budget({}, {"max_ii": 1})[0]["verdict"] == "n/a"
    md = reports.to_markdown({"figures": f, "budget": lines})
    assert "| max_latency_ns | 500 | 515 | vendor HLS estimate | fail |" in md


def test_no_vendor_reports_gives_empty(tmp_path):
    assert reports.parse_vendor_reports(tmp_path) == {}


def test_missing_vendor_tool_is_a_message(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = csim.vendor_build(hls_model=None)
    assert out["ran"] is False and "no vitis_hls/vivado_hls on PATH" in out["message"]


def test_exact_counts(encoder):
    ex = reports.exact_counts(encoder, model_formats(encoder))
    kd = np.asarray(encoder.get_layer("dense").kernel_quantizer_internal(encoder.get_layer("dense").kernel))
    assert ex["dense"]["nonzero_weights"] == int((kd != 0).sum())
    assert ex["dense"]["multipliers"] + ex["dense"]["power_of_two_products"] == ex["dense"]["nonzero_weights"]
    assert ex["weight_storage_bits"] == 2144 * 5
    assert ex["source"] == reports.SRC_EXACT


@pytest.mark.parametrize("weight,pow2", [(0.75, False), (0.5, True)])
def test_exact_counts_against_a_hand_count(weight, pow2):
    """Independent of the product's loop: 'same' padding, stride 2, 3x3 on 8x8 gives 4x4
    outputs whose in-image taps sum to 121 per filter (9 x 9 full windows + 3 x 6 + 3 x 6 +
    4 at the clipped bottom/right edges: TF pads bottom/right only); with every weight
    non-zero each output adds its taps, so 121 - 16 adders per filter; the dense layer has
    128 x 16 products and 127 adders per output."""
    enc = build_encoder(EncoderArch())
    conv, dense = enc.get_layer("conv2d"), enc.get_layer("dense")
    conv.kernel.assign(np.full(conv.kernel.shape, weight, np.float32))
    conv.bias.assign(np.zeros(conv.bias.shape, np.float32))
    dense.kernel.assign(np.full(dense.kernel.shape, weight, np.float32))
    dense.bias.assign(np.zeros(dense.bias.shape, np.float32))
    ex = reports.exact_counts(enc, model_formats(enc))
    products = "power_of_two_products" if pow2 else "multipliers"
    other = "multipliers" if pow2 else "power_of_two_products"
    assert ex["conv2d"][products] == 121 * 8 and ex["conv2d"][other] == 0
    assert ex["conv2d"]["adders"] == (121 - 16) * 8
    assert ex["dense"][products] == 128 * 16 and ex["dense"]["adders"] == 127 * 16


def test_csim_bit_exact_on_rounding_ties(encoder, tmp_path):
    """Inputs on the input grid make many pre-activations fall exactly halfway between two
    output steps (checked): the C simulation must round those as QKeras does."""
    rng = np.random.default_rng(11)
    x = (rng.integers(0, 128, (3000, 8, 8, 1)) * (rng.random((3000, 8, 8, 1)) < 0.4) / 64.0).astype(np.float32)
    x = np.asarray(encoder.get_layer("input_qa").quantizer(x), dtype=np.float32)
    pre = tf.keras.Model(encoder.input, encoder.get_layer("conv2d").output)(x).numpy()
    step = model_formats(encoder)["conv_act"].lsb
    assert np.isclose(np.mod(pre / step, 1.0), 0.5).mean() > 0.01       # ties are really there
    y = encoder.predict(x, verbose=0)
    convert(encoder, tmp_path / "prj", FirmwareParams())
    rep = csim.c_simulation(tmp_path / "prj", x, y, model_formats(encoder)["output"].lsb).accuracy
    assert rep.n_modules == 3000 and rep.bit_exact_fraction == 1.0
