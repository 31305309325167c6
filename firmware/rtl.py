"""The vendor-free RTL path end to end: trace -> Verilog -> Verilator check -> Yosys report.

Figures carry their source like the HLS path's (`firmware.reports`): latency and II are
measured in the Verilator simulation, resources come from Yosys synthesis. Each figure is
keyed apart from the vendor ones (rtl_*, yosys_*) so both paths can sit in one report.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from . import parts, rtl_warmup
from .params import FirmwareParams, RtlParams
from .reports import _figure
from .results import RtlBuild, RtlSimulation, Synthesis
from .rtl_sim import RtlToolError, port_layout, rtl_check, write_project
from .rtl_synth import SRC_YOSYS, run_yosys, yosys_command, yosys_version
from .rtl_trace import input_integers, model_arithmetic, trace_model

log = logging.getLogger("econ_emd")

SRC_RTL_SIM = "RTL simulation (Verilator)"


def labelled(source: str, version: str | None) -> str:
    """A figure's source with the tool and version that produced it."""
    return f"{source}, {version}" if version else source


def rtl_figures(sim: RtlSimulation, synth: Synthesis | None, part: str) -> dict:
    src_sim = labelled(SRC_RTL_SIM, sim.simulator)
    figs = {
        "rtl_latency_cycles": _figure(sim.latency_cycles, src_sim, "cycles"),
        "rtl_latency_ns": _figure(sim.latency_ns, src_sim, "ns"),
        "rtl_ii": _figure(sim.initiation_interval, src_sim, "cycles"),
    }
    if synth:
        cap = parts.capacity(part) or {}
        src = labelled(SRC_YOSYS, ", ".join(v for v in (synth.version, synth.script) if v))
        for name in ("lut", "ff", "carry", "dsp", "bram_18k"):
            figs[f"yosys_{name}"] = _figure(synth.counts[name], src, of=cap.get(name))
    return figs


def _should_synthesize(mode: str) -> tuple[bool, str]:
    if mode == "never":
        return False, "synthesis disabled (rtl.synthesize: never)"
    try:
        yosys_command()
    except RtlToolError as e:
        if mode == "always":
            raise
        return False, f"synthesis skipped: {e}"
    return True, ""


def build_rtl(model, inputs: np.ndarray, expected: np.ndarray, out_dir: str | Path, *, firmware: FirmwareParams,
              rtl: RtlParams, tolerance_lsb: int = 0, product_cuts: dict[str, int] | None = None,
              synthesize: bool = True) -> RtlBuild:
    """Generate the Verilog into `out_dir`/verilog, simulate it against `expected` (the
    model's outputs for `inputs`) and, as `rtl.synthesize` says, synthesize it (never when
    the caller's `synthesize` is False: a build that does not ask for it).
    `product_cuts`: layers whose products are cut before the sum (convert.model_formats)."""
    from .convert import is_proxy

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proxy = is_proxy(model)
    if proxy:
        from .proxy_trace import proxy_input_format, trace_proxy

        input_integers(inputs, proxy_input_format(model))
    else:
        arith = model_arithmetic(model, product_cuts)
        input_integers(inputs, arith.input_format)           # validates the grid and range
    rtl_warmup.wait()
    t0 = time.perf_counter()
    comb = trace_proxy(model) if proxy else trace_model(arith)
    t1 = time.perf_counter()
    project = out_dir / "verilog"
    clock = firmware.clock_period_ns
    design = write_project(comb, project, rtl.latency_cutoff, clock, firmware.part)
    layout = port_layout(comb)
    log.info("rtl: Verilog written (%d pipeline stages, %d register bits)", design["pipeline_stages"],
             design["register_bits"])
    sim, outputs = rtl_check(project, layout, inputs, expected, design["pipeline_stages"], clock)
    log.info("rtl: Verilator vs the model on %s modules: %.4f%% bit-exact, max %d LSB; latency %s cycles at II=1",
             f"{sim.n_modules:,}", 100 * sim.bit_exact_fraction, sim.max_abs_diff_lsb, sim.latency_cycles)
    do_synth, why_not = _should_synthesize(rtl.synthesize) if synthesize else (False, "synthesis not asked for")
    synth = None
    if do_synth:
        family = parts.yosys_family(firmware.part) if rtl.yosys_family == "auto" else rtl.yosys_family
        log.info("rtl: Yosys synth_xilinx -family %s (the full encoder takes minutes)", family)
        raw = run_yosys(project, family, rtl.yosys_timeout_s)
        synth = Synthesis.from_json({**raw, "version": yosys_version()})
        c = synth.counts
        log.info("rtl: Yosys %s: %d LUT, %d FF, %d CARRY, %d DSP, %d BRAM18 in %.0f s", family, c["lut"], c["ff"],
                 c["carry"], c["dsp"], c["bram_18k"], synth.seconds)
    elif synthesize:
        log.warning("rtl: %s", why_not)
    return RtlBuild(part=firmware.part, clock_period_ns=clock, design=design, simulation=sim, synthesis=synth,
                    synthesis_skipped=None if do_synth else why_not, figures=rtl_figures(sim, synth, firmware.part),
                    check_passed=sim.max_abs_diff_lsb <= tolerance_lsb and sim.latency_cycles is not None,
                    details={"trace_seconds": t1 - t0}, outputs=outputs)
