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

Resumable like the pipeline, and built the same way: a point is a unit of the registry
(`registry.SCAN_POINT`), hashed from exactly the config values it reads (the run's config
with the point's encoder) and the digests of the data and EMD-CNN it was trained with,
built in its own work folder and renamed into place with its summary; it is redone only
if one of those changed or its outputs were damaged. The encoder stage's training is
reused where it was asked exactly what the point asks (`training.encoder_run.TrainRequest`:
same settings, seed and loss). The run's data, label and emd_cnn stages are run first when
they are not current.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from econ_emd.base.artifacts import atomic_write_json, atomic_write_text, save_figure
from econ_emd.base.limits import require
from econ_emd.base.tables import markdown_table

from .config import RunConfig
from .stages.result import BOOKKEEPING, SCAN_DIR, StageResult

log = logging.getLogger("econ_emd")



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
        if self.kind == "asic":
            return "ASIC arithmetic"
        return f"QKeras ({self.weight_bits}-bit weights)" if self.weight_bits else "QKeras"


def points(cfg: RunConfig) -> list[Point]:
    s = cfg.scan
    out = []
    for n in s.link_counts:
        if "qkeras" in s.kinds:
            out.append(Point(n, "qkeras"))
            out += [Point(n, "qkeras", weight_bits=b) for b in s.weight_bits if b != cfg.encoder.weight_bits]
        if "asic" in s.kinds:
            out.append(Point(n, "asic"))
        if "hgq" in s.kinds:
            out += [Point(n, "hgq", beta=b) for b in s.hgq_betas]
    return out


def point_config(cfg: RunConfig, p: Point) -> RunConfig:
    """The run's config with the point's encoder: the run's encoder at the point's link
    count and quantization choice, trained against the run's frozen EMD-CNN."""
    update = {"links": p.n_links, "latent_bits": None, "kind": p.kind, "quantized": True, "loss": "emd_cnn",
              "learning_rate": cfg.scan.learning_rates[p.kind]}
    if p.weight_bits:
        update["weight_bits"] = p.weight_bits
    if p.kind == "hgq":
        update.update(hgq_beta=p.beta, epochs=cfg.scan.hgq_epochs)
    return cfg.model_copy(update={"encoder": cfg.encoder.model_copy(update=update)})


@dataclass(kw_only=True)
class PointResult(StageResult):
    """A finished point: the summary its folder holds (figures for the table and the plot)."""

    figures: dict

    def to_json(self) -> dict:
        return {**self.details, **self.figures}

    @classmethod
    def from_json(cls, d: dict) -> "PointResult":
        return cls(figures={k: v for k, v in d.items() if k not in BOOKKEEPING})


def _prepare(cfg: RunConfig, run_dir: Path, progress: bool) -> None:
    """The stages a point needs (data, its labels and the EMD-CNN), run if not current."""
    from .registry import is_current, run_stage

    for name in ("data", "label", "emd_cnn"):
        if not is_current(cfg, run_dir, name):
            log.info("scan: running the %s stage first", name)
            run_stage(cfg, run_dir, name, progress)


def _run_point(cfg: RunConfig, run_dir: Path, p: Point, work: Path, ds, frozen, runner,
               reuse_from: list[Path]) -> PointResult:
    """Train (or reuse an identical training: the encoder stage's, or an earlier point's
    float start), judge, and build the firmware of one point; the HLS project is removed
    after its C simulation (the figures are kept, the project is large)."""
    from econ_emd.firmware.flow import HLS_DIR, build_firmware
    from econ_emd.training.encoder_run import train_and_evaluate
    from econ_emd.training.encoder_train import firmware_form, load_encoder

    from .stages.result import encoder_request

    t0 = time.perf_counter()
    request = encoder_request(cfg)
    run = train_and_evaluate(request, data=ds, out=work / "encoder", frozen=frozen, runner=runner,
                             label=f"scan[{p.name}]", reuse_from=reuse_from)
    encoder = load_encoder(work / "encoder")
    t1 = time.perf_counter()
    form = firmware_form(encoder, ds["test"][: cfg.scan.n_check])
    x = form.inputs
    rtl = cfg.rtl.model_copy(update={"synthesize": "always" if cfg.scan.synthesize else "never"})
    build = build_firmware(form.model, x, form.expected, work, firmware=cfg.firmware, rtl=rtl,
                           product_cuts=form.product_cuts)
    t2 = time.perf_counter()
    shutil.rmtree(work / HLS_DIR, ignore_errors=True)
    r = build.rtl
    counts = r.synthesis.counts if r.synthesis else {}
    return PointResult(figures={
        "point": vars(p), "name": p.name, "label": p.label, "latent_bits": request.params.bits(),
        "median_exact_emd": run.evaluation.overall.median, "mean_exact_emd": run.evaluation.overall.mean,
        "ebops": run.history.get("ebops"), "epochs_run": run.epochs_run,
        "csim_bit_exact": build.csim.accuracy.bit_exact_fraction, "rtl_bit_exact": r.simulation.bit_exact_fraction,
        "n_check": int(len(x)), "lut": counts.get("lut"), "ff": counts.get("ff"),
        "latency_cycles": r.simulation.latency_cycles, "ii": r.simulation.initiation_interval,
        "estimated_lut_da4ml": r.design.get("estimated_luts"),
        "synthesis": {} if r.synthesis is None else {"version": r.synthesis.version, "script": r.synthesis.script,
                                                      "family": r.synthesis.family, "seconds": r.synthesis.seconds},
        "seconds": {"train": t1 - t0, "firmware": t2 - t1}})


def run_scan(cfg: RunConfig, run_dir: Path, progress: bool = True) -> dict:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    from .registry import SCAN_POINT, build_unit, unit_current
    from .stages.result import emd_runner

    from . import sizes
    from .registry import is_current

    require([*[n for name in ("data", "label", "emd_cnn") if not is_current(cfg, run_dir, name)
               for n in sizes.stage_needs(cfg, run_dir, name)], *sizes.scan_needs(cfg, run_dir)])
    _prepare(cfg, run_dir, progress)
    root = run_dir / SCAN_DIR
    root.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(run_dir / "data")
    frozen = load_frozen_emd_cnn(cfg.encoder.emd_cnn_path or run_dir / "emd_cnn")
    runner = emd_runner(cfg, run_dir, progress)
    results = []
    todo = points(cfg)
    # finished trainings a point may reuse (equal requests): the encoder stage's when it is
    # current, and the current points' (an asic point's float start serves every link count)
    reuse_from = [run_dir / "encoder"] if is_current(cfg, run_dir, "encoder") else []
    for i, p in enumerate(todo, 1):
        pcfg = point_config(cfg, p)
        folder = root / p.name
        if unit_current(pcfg, run_dir, SCAN_POINT, folder):
            log.info("scan %d/%d %s: done earlier, kept", i, len(todo), p.name)
            results.append(PointResult.load(folder).figures)
            reuse_from.append(folder / "encoder")
            continue
        log.info("scan %d/%d %s: %s at %d links", i, len(todo), p.name, p.label, p.n_links)
        point = build_unit(pcfg, run_dir, SCAN_POINT, folder,
                           lambda work: _run_point(pcfg, run_dir, p, work, ds, frozen, runner, list(reuse_from)))
        reuse_from.append(folder / "encoder")
        summary = point.figures
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
