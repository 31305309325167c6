"""`econ-emd scan`: what each encoder choice costs in resources and gains in exact EMD.

For every link count in `scan.link_counts` and every quantization choice (the QKeras
encoder; the resource-aware HGQ encoder at each `scan.hgq_betas`; QKeras encoders at each
`scan.weight_bits`), one point: the encoder trained against the run's frozen EMD-CNN on the
run's data (the encoder stage's own training reused where it is the same configuration),
its median exact EMD on the test modules, its hls4ml project checked by C simulation, its
da4ml Verilog checked by Verilator (bit-exactness, latency, II) and synthesized by Yosys
(LUT, FF). The table (`scan/scan.md`, `scan/summary.json`) and the Pareto plot
(`scan/pareto.png`: median exact EMD against LUTs, the non-dominated points joined) go
into the run directory.

Resumable like the pipeline: each point builds in its own work folder, renamed into place
with its summary when done; a point is redone only if its settings or the data and
EMD-CNN it was trained with changed. The run's data, label and emd_cnn stages are run
first when they are not current.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from econ_emd.base.artifacts import atomic_write_json, atomic_write_text, read_json, replace_tree, save_figure
from econ_emd.base.seeds import seed_int
from econ_emd.base.tables import markdown_table

from .config import RunConfig

log = logging.getLogger("econ_emd")

SCAN_DIR = "scan"
POINT_SUMMARY = "point.json"


@dataclass(frozen=True)
class Point:
    n_links: int
    kind: str                    # qkeras | hgq
    weight_bits: int | None = None
    beta: float | None = None

    @property
    def name(self) -> str:
        extra = f"_w{self.weight_bits}" if self.weight_bits else f"_beta{self.beta:g}" if self.beta is not None else ""
        return f"{self.n_links}links_{self.kind}{extra}"

    @property
    def label(self) -> str:
        if self.kind == "hgq":
            return f"HGQ (beta {self.beta:g})"
        return f"QKeras ({self.weight_bits}-bit weights)" if self.weight_bits else "QKeras"


def points(cfg: RunConfig) -> list[Point]:
    s = cfg.scan
    out = []
    for n in s.link_counts:
        if "qkeras" in s.kinds:
            out.append(Point(n, "qkeras"))
            out += [Point(n, "qkeras", weight_bits=b) for b in s.weight_bits if b != cfg.encoder.weight_bits]
        if "hgq" in s.kinds:
            out += [Point(n, "hgq", beta=b) for b in s.hgq_betas]
    return out


def point_params(cfg: RunConfig, p: Point):
    """The encoder settings of a point: the run's encoder at the point's link count."""
    update = {"elinks": p.n_links, "latent_bits": None, "kind": p.kind, "quantized": True}
    if p.weight_bits:
        update["weight_bits"] = p.weight_bits
    if p.kind == "hgq":
        update.update(hgq_beta=p.beta, epochs=cfg.scan.hgq_epochs)
    return cfg.encoder.model_copy(update=update)


def _point_hash(cfg: RunConfig, run_dir: Path, p: Point) -> str:
    from .registry import STAGES, stage_hash

    inputs = {name: stage_hash(cfg, run_dir, name) for name in ("data", "emd_cnn") if name in STAGES}
    blob = {"point": vars(p), "encoder": point_params(cfg, p).model_dump(mode="json"), "inputs": inputs,
            "seed": cfg.seed, "n_check": cfg.scan.n_check, "synthesize": cfg.scan.synthesize,
            "firmware": {"part": cfg.firmware.part, "clock": cfg.firmware.clock_period_ns},
            "rtl": cfg.rtl.model_dump(mode="json"), "solver": cfg.emd.solver}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _reuses_encoder_stage(cfg: RunConfig, p: Point) -> bool:
    e = cfg.encoder
    return (p.kind == e.kind == "qkeras" and e.quantized and p.n_links == e.elinks and e.latent_bits is None
            and not p.weight_bits)


def _prepare(cfg: RunConfig, run_dir: Path, progress: bool) -> None:
    """The stages a point needs (data, its labels and the EMD-CNN), run if not current."""
    from .registry import is_current, run_stage

    for name in ("data", "label", "emd_cnn"):
        if not is_current(cfg, run_dir, name):
            log.info("scan: running the %s stage first", name)
            run_stage(cfg, run_dir, name, progress)


def _run_point(cfg: RunConfig, run_dir: Path, p: Point, work: Path, ds, frozen, runner) -> dict:
    from econ_emd.firmware import csim
    from econ_emd.firmware.convert import FirmwareOptions, convert, encoder_formats
    from econ_emd.firmware.rtl import build_rtl
    from econ_emd.training.comparison import EncoderRun, train_and_evaluate
    from econ_emd.training.encoder_train import encoder_inputs, load_encoder

    t0 = time.perf_counter()
    params = point_params(cfg, p)
    if _reuses_encoder_stage(cfg, p):
        from econ_emd.training.comparison import RUN_FILE

        src = run_dir / "encoder"
        run = EncoderRun.from_json(read_json(src / RUN_FILE))
        log.info("scan[%s]: the encoder stage's training, reused", p.name)
        encoder = load_encoder(src)
    else:
        run = train_and_evaluate(ds, params, work / "encoder", "emd_cnn", True, frozen, runner,
                                 seed_int(cfg.seed, "encoder_training"), f"scan[{p.name}]")
        encoder = load_encoder(work / "encoder")
    t1 = time.perf_counter()
    modules = ds["test"][: cfg.scan.n_check]
    x = encoder_inputs(modules, encoder)
    y = encoder.predict(x, batch_size=4096, verbose=0)
    lsb = encoder_formats(encoder)["latent"].lsb
    convert(encoder, work / "hls_project", FirmwareOptions(part=cfg.firmware.part,
                                                           clock_period=cfg.firmware.clock_period_ns))
    c = csim.csim_check(work / "hls_project", x, y, lsb)
    t2 = time.perf_counter()
    rtl_params = cfg.rtl.model_copy(update={"synthesize": "always" if cfg.scan.synthesize else "never"})
    rtl = build_rtl(encoder, x, y, rtl_params, cfg.firmware.part, cfg.firmware.clock_period_ns, work)
    t3 = time.perf_counter()
    shutil.rmtree(work / "hls_project", ignore_errors=True)        # the figures are kept; the project is large
    syn = rtl.get("synthesis") or {}
    counts = syn.get("counts", {})
    return {"point": vars(p), "name": p.name, "label": p.label, "latent_bits": params.bits(),
            "median_exact_emd": run.evaluation.overall.median, "mean_exact_emd": run.evaluation.overall.mean,
            "ebops": run.history.get("ebops"), "epochs_run": run.epochs_run,
            "csim_bit_exact": c["bit_exact_fraction"], "rtl_bit_exact": rtl["simulation"]["bit_exact_fraction"],
            "n_check": int(len(x)), "lut": counts.get("lut"), "ff": counts.get("ff"),
            "latency_cycles": rtl["simulation"]["latency_cycles"], "ii": rtl["simulation"]["initiation_interval"],
            "estimated_lut_da4ml": rtl["design"].get("estimated_luts"),
            "synthesis": {k: v for k, v in syn.items() if k in ("version", "script", "family", "seconds")},
            "seconds": {"train": t1 - t0, "csim": t2 - t1, "rtl": t3 - t2}}


def run_scan(cfg: RunConfig, run_dir: Path, progress: bool = True) -> dict:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    from .stages.data import emd_runner

    _prepare(cfg, run_dir, progress)
    root = run_dir / SCAN_DIR
    root.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(run_dir / "data")
    frozen = load_frozen_emd_cnn(cfg.encoder.emd_cnn_path or run_dir / "emd_cnn")
    from types import SimpleNamespace

    runner = emd_runner(cfg, SimpleNamespace(run_dir=run_dir, progress=progress))
    results = []
    todo = points(cfg)
    for i, p in enumerate(todo, 1):
        h = _point_hash(cfg, run_dir, p)
        final = root / p.name
        done = final / POINT_SUMMARY
        if done.exists():
            try:
                prev = read_json(done)
            except (OSError, ValueError):
                prev = {}
            if prev.get("hash") == h:
                log.info("scan %d/%d %s: done earlier, kept", i, len(todo), p.name)
                results.append(prev)
                continue
        work = root / f".{p.name}.partial"
        marker = work / "hash"
        if work.exists() and (not marker.exists() or marker.read_text() != h):
            shutil.rmtree(work)             # begun for other settings: start over
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(h)
        log.info("scan %d/%d %s: %s at %d links", i, len(todo), p.name, p.label, p.n_links)
        summary = {**_run_point(cfg, run_dir, p, work, ds, frozen, runner), "hash": h}
        marker.unlink()
        atomic_write_json(work / POINT_SUMMARY, summary)
        replace_tree(work, final)
        results.append(summary)
        log.info("scan %s: median exact EMD %.3f, %s LUT, %s FF, latency %s cycles, csim %.2f%% / RTL %.2f%% bit-exact",
                 p.name, summary["median_exact_emd"], summary["lut"], summary["ff"], summary["latency_cycles"],
                 100 * summary["csim_bit_exact"], 100 * summary["rtl_bit_exact"])
    table = scan_markdown(results)
    atomic_write_text(root / "scan.md", table)
    _pareto_plot(results, root / "pareto.png")
    out = {"points": results, "pareto": pareto_front(results), "table": "scan.md", "plot": "pareto.png"}
    atomic_write_json(root / "summary.json", out)
    return out


def pareto_front(results: list[dict]) -> list[str]:
    """Names of the points no other point beats in both LUTs and median exact EMD."""
    have = [r for r in results if r.get("lut") is not None]
    front = []
    for r in have:
        dominated = any(o["lut"] <= r["lut"] and o["median_exact_emd"] <= r["median_exact_emd"]
                        and (o["lut"] < r["lut"] or o["median_exact_emd"] < r["median_exact_emd"]) for o in have)
        if not dominated:
            front.append(r["name"])
    return front


def scan_markdown(results: list[dict]) -> str:
    front = set(pareto_front(results))
    rows = []
    for r in sorted(results, key=lambda r: (r["point"]["n_links"], r["label"])):
        rows.append([r["point"]["n_links"], r["latent_bits"], r["label"], f"{r['median_exact_emd']:.3f}",
                     "-" if r["lut"] is None else f"{r['lut']:,}", "-" if r["ff"] is None else f"{r['ff']:,}",
                     r["latency_cycles"], r["ii"], f"{100 * r['csim_bit_exact']:.2f}%", f"{100 * r['rtl_bit_exact']:.2f}%",
                     "-" if r.get("ebops") is None else f"{r['ebops']:,.0f}", "yes" if r["name"] in front else ""])
    versions = {f"{r['synthesis'].get('version')}, {r['synthesis'].get('script')}" for r in results if r["synthesis"]}
    lines = ["# Exact EMD against resources", "",
             f"Median exact EMD on the test modules; LUT/FF from Yosys ({'; '.join(sorted(versions)) or 'not run'}); "
             "latency and II measured in the Verilator simulation; bit-exactness of the C and RTL simulation "
             f"against the encoder on {results[0]['n_check']:,} held-out modules." if results else "No points.", "",
             *markdown_table(["links", "latent bits", "encoder", "median EMD", "LUT", "FF", "latency (cycles)", "II",
                              "C sim bit-exact", "RTL bit-exact", "EBOPs", "Pareto"], rows), ""]
    return "\n".join(lines) + "\n"


def _pareto_plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    have = [r for r in results if r.get("lut") is not None]
    for label in sorted({r["label"] for r in have}):
        pts = [r for r in have if r["label"] == label]
        ax.scatter([r["lut"] for r in pts], [r["median_exact_emd"] for r in pts], label=label)
        for r in pts:
            ax.annotate(f"{r['point']['n_links']}", (r["lut"], r["median_exact_emd"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in have if r["name"] in set(pareto_front(results))), key=lambda r: r["lut"])
    if front:
        ax.plot([r["lut"] for r in front], [r["median_exact_emd"] for r in front], "k--", lw=1, label="Pareto front")
    ax.set(xlabel="LUT (Yosys)", ylabel="median exact EMD (test modules)",
           title="Encoder choices: exact EMD against LUTs (numbers: output links)")
    ax.legend(fontsize=8)
    save_figure(fig, path)
