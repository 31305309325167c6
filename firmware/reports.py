"""Resource and latency reports: vendor report parsing, exact counts, budget checks.

Every figure carries its source, so a reader never mistakes an estimate for a measurement:
* `vendor HLS estimate` (C synthesis: csynth.xml), `vendor synthesis` (vivado_synth.rpt),
  `vendor cosim` (cosim report), read with `hls4ml.report.parse_vivado_report`;
* `exact count`: what follows from the quantized weights and formats without synthesis
  (multipliers with operand widths, adders, non-zero weights, weight-storage bits).
"""
from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np

from econ_emd.base.tables import markdown_table

SRC_HLS = "vendor HLS estimate"
SRC_SYNTH = "vendor synthesis"
SRC_COSIM = "vendor cosim"
SRC_EXACT = "exact count"
#: what a vendor build writes into an hls4ml project (here, or on another machine and copied
#: in): products of the project that the report reads, not part of the project itself
VENDOR_OUTPUTS = ("myproject_prj/", "vivado_synth.rpt", "vivado_hls.log", "vitis_hls.log")


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else f


def _figure(value, source: str, unit: str = "", of=None) -> dict:
    d = {"value": value, "source": source}
    if unit:
        d["unit"] = unit
    if of:
        d["available"] = of
        d["percent"] = 100.0 * value / of if value is not None else None
    return d


def parse_vendor_reports(project_dir: str | Path) -> dict:
    """Figures from vendor report files under an hls4ml project directory ({} if none)."""
    import hls4ml.report

    project_dir = Path(project_dir)
    if not (project_dir / "project.tcl").exists():
        return {}
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            raw = hls4ml.report.parse_vivado_report(str(project_dir))
        except (OSError, ValueError, KeyError, UnboundLocalError):
            return {}
    if not raw:
        return {}
    out: dict = {}
    cs = raw.get("CSynthesisReport") or {}
    if cs:
        target = _num(cs.get("TargetClockPeriod"))
        est = _num(cs.get("EstimatedClockPeriod"))
        lat = _num(cs.get("WorstLatency"))
        out["target_clock_ns"] = _figure(target, SRC_HLS, "ns")
        out["estimated_clock_ns"] = _figure(est, SRC_HLS, "ns")
        out["latency_cycles"] = _figure(lat, SRC_HLS, "cycles")
        if lat is not None and target is not None:
            out["latency_ns"] = _figure(lat * target, SRC_HLS, "ns")
        out["ii"] = _figure(_num(cs.get("IntervalMax")), SRC_HLS, "cycles")
        for key, name in (("LUT", "lut"), ("FF", "ff"), ("DSP", "dsp"), ("BRAM_18K", "bram_18k")):
            out[f"hls_{name}"] = _figure(_num(cs.get(key)), SRC_HLS, of=_num(cs.get(f"Available{key}")))
    vs = raw.get("VivadoSynthReport") or {}
    avail = {k: _num(cs.get(f"Available{k}")) for k in ("LUT", "FF", "DSP", "BRAM_18K")}
    for key, name, akey in (("LUT", "lut", "LUT"), ("FF", "ff", "FF"), ("DSP48E", "dsp", "DSP"),
                            ("BRAM_18K", "bram_18k", "BRAM_18K")):
        if key in vs:
            out[name] = _figure(_num(vs[key]), SRC_SYNTH, of=avail.get(akey))
    co = raw.get("CosimReport") or {}
    if co:
        out["cosim"] = {"value": co.get("Status"), "rtl": co.get("RTL"), "source": SRC_COSIM}
    return out


def _is_pow2(w: np.ndarray) -> np.ndarray:
    a = np.abs(w)
    with np.errstate(divide="ignore"):
        lg = np.log2(np.where(a > 0, a, 1.0))
    return (a > 0) & (lg == np.round(lg))


def exact_counts(encoder, formats: dict) -> dict:
    """Arithmetic of the fully parallel encoder, from its quantized weights (no synthesis)."""
    conv, dense = encoder.get_layer("conv2d"), encoder.get_layer("dense")
    kc = np.asarray(conv.kernel_quantizer_internal(conv.kernel))      # (3, 3, 1, F)
    bc = np.asarray(conv.bias_quantizer_internal(conv.bias))
    kd = np.asarray(dense.kernel_quantizer_internal(dense.kernel))    # (128, 16)
    bd = np.asarray(dense.bias_quantizer_internal(dense.bias))
    # conv 'same', stride 2 on 8x8: output (i, j) reads input rows 2i-1+{0,1,2} ... (TF pads
    # the bottom/right first: offset = max((out-1)*s + k - in, 0) // 2 = 0 on top/left)
    h_in, k, s = 8, 3, 2
    h_out = math.ceil(h_in / s)
    pad_total = max((h_out - 1) * s + k - h_in, 0)
    pad_top = pad_total // 2
    conv_mults = conv_shifts = conv_adds = 0
    for i in range(h_out):
        for j in range(h_out):
            rows = [i * s + a - pad_top for a in range(k)]
            cols = [j * s + b - pad_top for b in range(k)]
            valid = np.array([[0 <= r < h_in and 0 <= c < h_in for c in cols] for r in rows])
            for f in range(kc.shape[-1]):
                w = kc[..., 0, f][valid]
                nz = w[w != 0]
                p2 = _is_pow2(nz)
                conv_mults += int((~p2).sum())
                conv_shifts += int(p2.sum())
                conv_adds += max(len(nz) - 1, 0) + int(bc[f] != 0)
    nzd = kd[kd != 0]
    p2d = _is_pow2(nzd)
    dense_adds = int(sum(max((kd[:, o] != 0).sum() - 1, 0) + int(bd[o] != 0) for o in range(kd.shape[1])))
    w_bits = formats["conv2d_weight"].width
    storage = (kc.size + bc.size) * w_bits + (kd.size + bd.size) * formats["dense_weight"].width
    fx = formats
    return {
        "source": SRC_EXACT,
        "conv2d": {"multipliers": conv_mults, "power_of_two_products": conv_shifts, "adders": conv_adds,
                   "operands": f"{fx['input'].width}-bit input x {fx['conv2d_weight'].width}-bit weight",
                   "accumulator": fx["conv2d_accum"].hls("TRN", "WRAP"),
                   "nonzero_weights": int((kc != 0).sum()), "weights": int(kc.size)},
        "dense": {"multipliers": int((~p2d).sum()), "power_of_two_products": int(p2d.sum()),
                  "adders": dense_adds,
                  "operands": f"{fx['conv_act'].width}-bit activation x {fx['dense_weight'].width}-bit weight",
                  "accumulator": fx["dense_accum"].hls("TRN", "WRAP"),
                  "nonzero_weights": int((kd != 0).sum()), "weights": int(kd.size)},
        "weight_storage_bits": int(storage),
        "pipeline": [
            {"layer": "input_qa", "format": fx["input"].hls("RND_CONV", "SAT")},
            {"layer": "conv2d (3x3, stride 2, 8 filters)", "format": fx["conv2d_accum"].hls()},
            {"layer": "conv_act (quantized_relu)", "format": fx["conv_act"].hls("RND_CONV", "SAT")},
            {"layer": "dense (128 -> 16)", "format": fx["dense_accum"].hls()},
            {"layer": "latent (quantized_relu)", "format": fx["output"].hls("RND_CONV", "SAT")},
        ],
    }


#: budget item -> (figure names in order of preference: vendor, then vendor-free RTL; field)
BUDGET_FIGURES = {
    "max_ii": (("ii", "rtl_ii"), "value"),
    "max_latency_ns": (("latency_ns", "rtl_latency_ns"), "value"),
    "max_lut_percent": (("lut", "hls_lut", "yosys_lut"), "percent"),
    "max_ff_percent": (("ff", "hls_ff", "yosys_ff"), "percent"),
    "max_dsp_percent": (("dsp", "hls_dsp", "yosys_dsp"), "percent"),
    "max_bram_percent": (("bram_18k", "hls_bram_18k", "yosys_bram_18k"), "percent"),
}


def check_budget(figures: dict, budget: dict) -> list[dict]:
    """Per budget item, one line per source that has the figure (pass or fail), else one n/a.

    Vendor figures and the vendor-free RTL figures describe two implementations of the same
    encoder; both are checked, each line naming its source."""
    lines = []
    for key, limit in budget.items():
        if limit is None:
            continue
        names, field = BUDGET_FIGURES[key]
        found = [figures[n] for n in names if figures.get(n) and figures[n].get(field) is not None]
        if not found:
            lines.append({"item": key, "limit": limit, "value": None, "source": None, "verdict": "n/a"})
        for fig in found:
            value = fig[field]
            lines.append({"item": key, "limit": limit, "value": value, "source": fig["source"],
                          "verdict": "pass" if value <= limit else "fail"})
    return lines


def figures_table(figs: dict) -> list[str]:
    """Markdown rows of the figures, each with its source (firmware report and run summary)."""
    rows = [[name, f"{f.get('value')} {f.get('unit', '')}", f.get("available", ""),
             "" if f.get("percent") is None else f"{f['percent']:.1f}", f["source"]] for name, f in figs.items()]
    return markdown_table(["figure", "value", "of", "%", "source"], rows)


def budget_table(budget: list[dict]) -> list[str]:
    rows = [[b["item"], b["limit"], "-" if b["value"] is None else f"{b['value']:.4g}", b["source"] or "-",
             b["verdict"]] for b in budget]
    return markdown_table(["item", "limit", "value", "source", "verdict"], rows)


def to_markdown(report: dict) -> str:
    lines = ["# Resources and latency", ""]
    figs = report.get("figures", {})
    if figs:
        lines += figures_table(figs)
    else:
        lines.append("No vendor, Yosys or RTL-simulation figures: only exact counts below.")
    ex = report.get("exact_counts")
    if ex:
        rows = [[layer, d["multipliers"], d["power_of_two_products"], d["adders"], f"{d['nonzero_weights']}/{d['weights']}",
                 d["operands"], f"`{d['accumulator']}`"] for layer, d in ((n, ex[n]) for n in ("conv2d", "dense"))]
        lines += ["", f"## Exact counts (source: {ex['source']}, no synthesis)", "",
                  *markdown_table(["layer", "multipliers", "power-of-two products", "adders", "non-zero weights",
                                   "operands", "accumulator"], rows)]
        lines += ["", f"Weight storage: {ex['weight_storage_bits']} bits.", "", "Pipeline:", ""]
        lines += [f"{i + 1}. {p['layer']}: `{p['format']}`" for i, p in enumerate(ex["pipeline"])]
    budget = report.get("budget", [])
    if budget:
        lines += ["", "## Budget", ""] + budget_table(budget)
    return "\n".join(lines) + "\n"


def rtl_markdown(summary: dict) -> str:
    """The vendor-free RTL stage's summary for people."""
    d, sim, syn = summary["design"], summary["simulation"], summary.get("synthesis")
    lat = sim["latency_cycles"]
    latency = "not found" if lat is None else f"{lat} cycles = {sim['latency_ns']:.2f} ns"
    lines = ["# Vendor-free RTL (da4ml Verilog, Verilator, Yosys)", "",
             f"Part {summary['part']}, clock {summary['clock_period_ns']} ns. Pipeline: {d['pipeline_stages']} "
             f"stages of at most {d['latency_cutoff']:g} adder levels, {d['register_bits']:,} register bits "
             f"(da4ml estimate {d['estimated_luts']:,.0f} LUT).", "",
             "## Verilator simulation against QKeras (one module per clock cycle)", "",
             f"- modules: {sim['n_modules']:,}; bit-exact: {100 * sim['bit_exact_fraction']:.4f}%; "
             f"mismatching latents: {sim['mismatching_latents']}; max diff: {sim['max_abs_diff_lsb']} LSB",
             f"- latency: {latency}; initiation interval: {sim['initiation_interval'] or 'n/a'}",
             f"- Verilator build {sim['build_seconds']:.1f} s, simulation {sim['simulation_seconds']:.2f} s", ""]
    if syn:
        c = syn["counts"]
        lines += [f"## Yosys synthesis ({syn.get('version', 'Yosys')}, {syn.get('script', 'synth_xilinx')}, "
                  f"-family {syn['family']})", "",
                  *markdown_table(["LUT", "FF", "CARRY", "DSP", "BRAM_18K", "LUT as memory", "MUXF"],
                                  [[f"{c['lut']:,}", f"{c['ff']:,}", f"{c['carry']:,}", c["dsp"], c["bram_18k"],
                                    c["lut_memory"], c["muxf"]]]), "",
                  f"Synthesis took {syn['seconds']:.0f} s. Yosys does no timing analysis: the clock is not "
                  f"verified here (a vendor implementation run is).", ""]
    else:
        lines += [f"Synthesis: {summary.get('synthesis_skipped')}", ""]
    for ex in sim["first_mismatches"]:
        lines.append(f"- module {ex['module']}: expected {ex['expected_lsb']}, got {ex['got_lsb']}")
    return "\n".join(lines) + "\n"
