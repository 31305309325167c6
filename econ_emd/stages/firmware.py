"""The firmware stages: hls4ml project (firmware), C simulation (csim), the vendor-free RTL
path (rtl) and the resource and latency figures with their budget (resources). Each runs
one step of the firmware flow (`econ_emd.firmware.flow`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from econ_emd.base.artifacts import atomic_write_text
from econ_emd.base.seeds import derive_seed
from econ_emd.base.tables import markdown_table
from econ_emd.config import RunConfig
from econ_emd.firmware.results import BitAccuracy, RtlSimulation

from .result import CheckedResult, StageContext, StageResult

log = logging.getLogger("econ_emd")

SRC_CSIM = "HLS C simulation (g++)"
SRC_PREDICT = "hls4ml compiled predict"
SRC_VERILATOR = "RTL simulation (Verilator)"


@dataclass(kw_only=True)
class FirmwareResult(StageResult):
    encoder: str
    inputs: str
    n_modules: int
    latent_lsb: float
    predict_check: BitAccuracy
    DECODE = {"predict_check": BitAccuracy.from_json}


@dataclass(kw_only=True)
class CsimResult(CheckedResult):
    testbench: BitAccuracy
    predict: BitAccuracy
    tolerance_lsb: int
    DECODE = {"testbench": BitAccuracy.from_json, "predict": BitAccuracy.from_json}


@dataclass(kw_only=True)
class RtlResult(CheckedResult):
    simulation: RtlSimulation
    figures: dict
    DECODE = {"simulation": RtlSimulation.from_json}


@dataclass(kw_only=True)
class ResourcesResult(CheckedResult):
    figures: dict
    budget: list[dict]
    exact_counts: dict | None


    def report_json(self, others) -> dict:
        return {"figures": self.figures, "budget": self.budget}

    def report_markdown(self, others) -> list[str]:
        from econ_emd.firmware.reports import budget_table, figures_table

        md = ["## Resources and latency (each figure with its source)", ""]
        if self.figures:
            md += figures_table(self.figures)
        else:
            md.append("No vendor, Yosys or RTL figures (run `econ-emd rtl`, or install Vivado/Vitis).")
        ex = self.exact_counts
        if ex:
            md += ["", f"Exact counts: conv2d {ex['conv2d']['multipliers']} multipliers / {ex['conv2d']['adders']} "
                   f"adders; dense {ex['dense']['multipliers']} multipliers / {ex['dense']['adders']} adders; "
                   f"weights {ex['weight_storage_bits']:,} bits."]
        return md + ["", "### Budget", "", *budget_table(self.budget), ""]


def bit_exactness_markdown(results: dict[str, StageResult]) -> tuple[list[str], dict[str, float]]:
    """The run report's table of every bit-accuracy check present, and its report.json entry."""
    checks: list[tuple[str, BitAccuracy]] = []
    csim, rtl = results.get("csim"), results.get("rtl")
    if isinstance(csim, CsimResult):
        checks += [(SRC_CSIM, csim.testbench), (SRC_PREDICT, csim.predict)]
    if isinstance(rtl, RtlResult):
        checks.append((SRC_VERILATOR, rtl.simulation))
    if not checks:
        return [], {}
    rows = [c.row(name if name != SRC_VERILATOR else "RTL simulation (Verilator, da4ml Verilog)") for name, c in checks]
    md = ["## Bit-exactness against QKeras", "", *markdown_table(["check", "modules", "bit-exact", "max diff (LSB)"], rows), ""]
    return md, {name: c.bit_exact_fraction for name, c in checks}


def _load_encoder(ctx: StageContext):
    """The encoder named by --encoder / firmware.encoder_path, else the run's encoder stage's,
    and its path."""
    from econ_emd.training.encoder_train import load_encoder

    path = ctx.cfg.firmware.encoder_path or ctx.folder("encoder")
    return load_encoder(path), str(path)


def _synthetic_modules(cfg: RunConfig, n: int) -> np.ndarray:
    from econ_emd.data.synthetic import generate

    return generate(n, derive_seed(cfg.seed, "firmware_extra_modules"), cfg.data.synthetic)


def _firmware_inputs(ctx: StageContext, trained):
    """The firmware form of the encoder on held-out modules (`firmware_form`), and where the
    modules came from."""
    from econ_emd.base.errors import CheckFailed
    from econ_emd.training.encoder_train import firmware_form

    cfg = ctx.cfg
    seed_note = f"seed {derive_seed(cfg.seed, 'firmware_extra_modules').entropy}"
    if (ctx.folder("data") / "modules.h5").exists():
        from econ_emd.data.dataset import load_dataset

        modules = load_dataset(ctx.folder("data"))["test"]
        source = "test split of the run"
        if len(modules) < cfg.firmware.n_check:
            extra = _synthetic_modules(cfg, cfg.firmware.n_check - len(modules))
            modules = np.concatenate([modules, extra])
            source += f" + {len(extra):,} synthetic modules ({seed_note})"
    else:
        modules = _synthetic_modules(cfg, cfg.firmware.n_check)
        source = f"synthetic modules ({seed_note})"
    try:
        form = firmware_form(trained, modules[: cfg.firmware.n_check])
    except ValueError as exc:
        raise CheckFailed(f"firmware: {exc}") from None
    return form, source


def run_firmware(ctx: StageContext) -> FirmwareResult:
    from econ_emd.firmware.flow import HLS_DIR, hls_project

    cfg, out = ctx.cfg, ctx.out
    trained, enc_path = _load_encoder(ctx)
    form, source = _firmware_inputs(ctx, trained)
    x, y = form.inputs, form.expected
    np.save(out / "tb_inputs.npy", x)
    np.save(out / "tb_expected.npy", y)
    hls = hls_project(form.model, out / HLS_DIR, cfg.firmware, product_cuts=form.product_cuts, inputs=x,
                      expected=y, vendor=True)
    from econ_emd.firmware import csim

    csim.write_tb_data(out / HLS_DIR, x, y)
    opts = cfg.firmware
    return FirmwareResult(encoder=enc_path, inputs=source, n_modules=int(len(x)), latent_lsb=hls.output_lsb,
                          predict_check=hls.predict, details={
                              "options": {"backend": opts.backend, "io_type": opts.io_type, "strategy": opts.strategy,
                                          "reuse_factor": opts.reuse_factor, "part": opts.part,
                                          "clock_period": opts.clock_period_ns},
                              "formats": hls.formats, "convert_seconds": hls.convert_seconds, "vendor": hls.vendor})


def run_csim(ctx: StageContext) -> CsimResult:
    from econ_emd.firmware import csim

    fw_dir = ctx.folder("firmware")
    fw = FirmwareResult.load(fw_dir)
    if fw is None:          # checked current before the stage began: only a change since then
        from econ_emd.base.errors import StageOrderError

        raise StageOrderError(f"{fw_dir}: the firmware stage's summary changed while csim ran; rerun")
    x, y = np.load(fw_dir / "tb_inputs.npy"), np.load(fw_dir / "tb_expected.npy")
    rep = csim.c_simulation(fw_dir / "hls_project", x, y, fw.latent_lsb).accuracy
    pred = fw.predict_check
    tol = ctx.cfg.firmware.tolerance_lsb
    passed = rep.max_abs_diff_lsb <= tol and pred.max_abs_diff_lsb <= tol
    rows = [[name, f"{100 * r.bit_exact_fraction:.4f}%", r.mismatching_modules, r.mismatching_latents,
             r.max_abs_diff_lsb] for name, r in (("testbench (g++ csim)", rep), ("hls4ml compiled predict", pred))]
    lines = ["# C simulation bit-accuracy", "",
             f"Inputs: {fw.inputs}, {rep.n_modules:,} modules x 16 latents; output LSB {fw.latent_lsb}; "
             f"tolerance {tol} LSB.", "",
             *markdown_table(["check", "bit-exact modules", "mismatching modules", "mismatching latents",
                              "max diff (LSB)"], rows),
             "", f"Verdict: {'PASS' if passed else 'FAIL'}"]
    for ex in rep.first_mismatches:
        lines.append(f"- module {ex['module']}: expected {ex['expected_lsb']}, got {ex['got_lsb']}")
    atomic_write_text(ctx.out / "csim.md", "\n".join(lines) + "\n")
    log.info("csim: testbench vs QKeras on %s modules: %.4f%% bit-exact, %d mismatching latents, max %d LSB -> %s",
             f"{rep.n_modules:,}", 100 * rep.bit_exact_fraction, rep.mismatching_latents,
             rep.max_abs_diff_lsb, "PASS" if passed else "FAIL")
    return CsimResult(testbench=rep, predict=pred, tolerance_lsb=tol, passed=passed)


def run_rtl(ctx: StageContext) -> RtlResult:
    from econ_emd.firmware.reports import rtl_markdown
    from econ_emd.firmware.rtl import build_rtl

    cfg = ctx.cfg
    trained, enc_path = _load_encoder(ctx)
    from econ_emd.training.encoder_train import firmware_model

    model, cuts = firmware_model(trained)
    fw_dir = ctx.folder("firmware")
    x, y = np.load(fw_dir / "tb_inputs.npy"), np.load(fw_dir / "tb_expected.npy")
    build = build_rtl(model, x, y, ctx.out, firmware=cfg.firmware, rtl=cfg.rtl,
                      tolerance_lsb=cfg.firmware.tolerance_lsb, product_cuts=cuts)
    summary = {**build.to_json(), "encoder": enc_path}
    atomic_write_text(ctx.out / "rtl.md", rtl_markdown(summary))
    return RtlResult.from_json(summary)


def run_resources(ctx: StageContext) -> ResourcesResult:
    from econ_emd.firmware import reports
    from econ_emd.firmware.convert import model_formats

    cfg = ctx.cfg
    from econ_emd.training.encoder_train import firmware_model

    model, cuts = firmware_model(_load_encoder(ctx)[0])
    figures = reports.parse_vendor_reports(ctx.folder("firmware") / "hls_project")
    if cfg.rtl.enabled:
        rtl = RtlResult.load(ctx.folder("rtl"))
        if rtl is not None:
            figures.update(rtl.figures)
    report = {"figures": figures, "exact_counts": reports.exact_counts(model, model_formats(model, cuts)),
              "clock_period_ns": cfg.firmware.clock_period_ns}
    report["budget"] = reports.check_budget(figures, cfg.firmware.budget.model_dump())
    atomic_write_text(ctx.out / "resources.md", reports.to_markdown(report))
    failed = [b["item"] for b in report["budget"] if b["verdict"] == "fail"]
    for b in report["budget"]:
        log.info("budget %s <= %s: %s (%s)", b["item"], b["limit"], b["verdict"],
                 "no figure" if b["value"] is None else f"{b['value']:.4g} from {b['source']}")
    return ResourcesResult(figures=figures, budget=report["budget"], exact_counts=report["exact_counts"],
                        passed=not failed, details={"clock_period_ns": cfg.firmware.clock_period_ns})
