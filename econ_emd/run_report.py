"""The run summary a person reads instead of logs: <run>/report.md and <run>/report.json.

Aggregates the summary.json of every stage that has run (data, labels, EMD-CNN, encoder,
loss comparison, C simulation, RTL, firmware report) and links every PNG of the run. It is
rebuilt at the end of every `econ-emd pipeline` (cheap: it only reads the stage summaries),
so it always reflects the stages on disk.
"""
from __future__ import annotations

import json
from pathlib import Path

from firmware.reports import budget_table, figures_table
from training.artifacts import atomic_write_json, atomic_write_text

STAGES = ("data", "label", "emd_cnn", "encoder", "compare", "firmware", "csim", "rtl", "report")


def _load(run_dir: Path, stage: str) -> dict | None:
    try:
        return json.loads((run_dir / stage / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.4f}%"


def _occupancy_lines(hist: list[int]) -> list[str]:
    bins = [(1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 48)]
    total = max(sum(hist), 1)
    lines = ["| TCs above threshold | modules | share |", "|---|---|---|"]
    for lo, hi in bins:
        n = sum(hist[lo: hi + 1])
        lines.append(f"| {lo}-{hi} | {n:,} | {100 * n / total:.1f}% |")
    return lines


def build(run_dir: str | Path) -> tuple[str, dict]:
    run_dir = Path(run_dir)
    s = {name: _load(run_dir, name) for name in STAGES}
    md = [f"# econ-emd run summary: {run_dir}", ""]
    out: dict = {"run_dir": str(run_dir), "stages_present": [k for k, v in s.items() if v]}
    if s["data"]:
        d = s["data"]
        n = d["n_modules"]
        out["data"] = {"source": d["source"], "n_modules": n, "occupancy_median": d["occupancy_median"],
                       "occupancy_histogram": d["occupancy_histogram"]}
        md += ["## Data", "", f"Source: {d['source']}; modules train/val/test: {n['train']:,} / {n['val']:,} / "
               f"{n['test']:,}; median occupancy {d['occupancy_median']:g} TCs.", ""]
        md += _occupancy_lines(d["occupancy_histogram"]) + [""]
    if s["label"]:
        lab = s["label"]
        out["labels"] = {"n_pairs": lab["n_pairs"], "pairs_per_second": lab["pairs_per_second"]}
        md += ["## Exact EMD labels", "", f"{lab['n_pairs']:,} pairs with the {lab['solver']} solver at "
               f"{lab['pairs_per_second']:,.0f} pairs/s ({lab['n_jobs']} workers).", ""]
    if s["emd_cnn"]:
        m = s["emd_cnn"]["metrics"]
        out["emd_cnn"] = {k: {"rel_mean": v["rel_mean"], "rel_sigma": v["rel_sigma"]} for k, v in m.items()}
        md += ["## EMD-CNN accuracy (held-out pairs, relative error (pred - exact) / exact)", "",
               "| pairs | n | mean | sigma |", "|---|---|---|---|"]
        md += [f"| {k} | {v['n_pairs']:,} | {v['rel_mean']:+.4f} | {v['rel_sigma']:.4f} |" for k, v in m.items()]
        own = (s["encoder"] or {}).get("emd_cnn_on_reconstructions")
        if own:
            out["emd_cnn"]["encoder_reconstructions"] = {"rel_mean": own["rel_mean"], "rel_sigma": own["rel_sigma"]}
            md.append(f"| the trained encoder's reconstructions (test modules) | {own['n_pairs']:,} | "
                      f"{own['rel_mean']:+.4f} | {own['rel_sigma']:.4f} |")
        md += [""]
    if s["compare"]:
        c = s["compare"]
        rows = {name: r["evaluation"]["overall"] for name, r in c["runs"].items()}
        out["loss_comparison"] = {"median_exact_emd": {k: v["median"] for k, v in rows.items()}, "ratios": c["ratios"]}
        md += ["## Encoder loss comparison (exact EMD of the reconstructions, test modules)", "",
               "| loss | median | mean |", "|---|---|---|"]
        md += [f"| {k} | {v['median']:.4f} | {v['mean']:.4f} |" for k, v in rows.items()]
        md += [""] + [f"- {k}: {v:.3f}" for k, v in c["ratios"].items()] + [""]
    elif s["encoder"]:
        ev = s["encoder"]["evaluation"]["overall"]
        out["encoder"] = {"median_exact_emd": ev["median"], "loss": s["encoder"]["loss"]}
        md += ["## Encoder", "", f"Loss {s['encoder']['loss']}: median exact EMD {ev['median']:.4f}.", ""]
    if s["csim"] or s["rtl"]:
        md += ["## Bit-exactness against QKeras", "", "| check | modules | bit-exact | max diff (LSB) |",
               "|---|---|---|---|"]
        checks = {}
        if s["csim"]:
            for name, key in (("HLS C simulation (g++)", "testbench"), ("hls4ml compiled predict", "predict")):
                r = s["csim"][key]
                checks[name] = r["bit_exact_fraction"]
                md.append(f"| {name} | {r['n_modules']:,} | {_pct(r['bit_exact_fraction'])} | {r['max_abs_diff_lsb']} |")
        if s["rtl"]:
            r = s["rtl"]["simulation"]
            checks["RTL simulation (Verilator)"] = r["bit_exact_fraction"]
            md.append(f"| RTL simulation (Verilator, da4ml Verilog) | {r['n_modules']:,} | "
                      f"{_pct(r['bit_exact_fraction'])} | {r['max_abs_diff_lsb']} |")
        out["bit_exact"] = checks
        md += [""]
    if s["report"]:
        rep = s["report"]
        out["figures"], out["budget"] = rep["figures"], rep["budget"]
        md += ["## Resources and latency (each figure with its source)", ""]
        if rep["figures"]:
            md += figures_table(rep["figures"])
        else:
            md.append("No vendor, Yosys or RTL figures (run `econ-emd rtl`, or install Vivado/Vitis).")
        ex = rep.get("exact_counts")
        if ex:
            md += ["", f"Exact counts: conv2d {ex['conv2d']['multipliers']} multipliers / {ex['conv2d']['adders']} "
                   f"adders; dense {ex['dense']['multipliers']} multipliers / {ex['dense']['adders']} adders; "
                   f"weights {ex['weight_storage_bits']:,} bits."]
        md += ["", "### Budget", ""] + budget_table(rep["budget"])
        md += [""]
    pngs = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*.png"))
    out["plots"] = [str(p) for p in pngs]
    if pngs:
        md += ["## Plots", ""] + [f"- [{p}]({p})" for p in pngs] + [""]
    missing = [k for k, v in s.items() if not v]
    if missing:
        md += [f"Stages not run yet: {', '.join(missing)}.", ""]
    return "\n".join(md), out


def write(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    text, data = build(run_dir)
    atomic_write_text(run_dir / "report.md", text)
    atomic_write_json(run_dir / "report.json", data)
    return run_dir / "report.md"
