"""Bodies of the firmware-side stages: firmware (hls4ml), csim, rtl (da4ml/Verilator/Yosys), report.

Same contract as `training_stages`: (config, output folder, progress) -> summary dict.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from training.artifacts import read_json

from .config import RunConfig

log = logging.getLogger("econ_emd")


def _firmware_inputs(cfg: RunConfig, run_dir: Path, encoder):
    """Held-out modules exactly as the encoder sees them, and the QKeras outputs."""
    from training.encoder_train import encoder_inputs

    data = run_dir / "data" / "modules.h5"
    if data.exists():
        from training.dataset import load_dataset

        modules = load_dataset(run_dir / "data")["test"]
        source = "test split of the run"
        if len(modules) < cfg.firmware.n_check:
            extra = _synthetic_modules(cfg, cfg.firmware.n_check - len(modules))
            modules = np.concatenate([modules, extra])
            source += f" + {len(extra):,} synthetic modules (seed {cfg.seed + 1})"
    else:
        modules = _synthetic_modules(cfg, cfg.firmware.n_check)
        source = f"synthetic modules (seed {cfg.seed + 1})"
    modules = modules[: cfg.firmware.n_check]
    x = encoder_inputs(modules, encoder)
    y = encoder.predict(x, batch_size=4096, verbose=0)
    return x, y, source


def _synthetic_modules(cfg: RunConfig, n: int) -> np.ndarray:
    from training.synthetic import generate

    return generate(n, cfg.seed + 1, cfg.data.synthetic)


def _load_run_encoder(cfg: RunConfig, run_dir: Path):
    from training.encoder_train import load_encoder

    path = cfg.firmware.encoder_path or (run_dir / "encoder")
    return load_encoder(path), str(path)


def _run_firmware(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from firmware import csim
    from firmware.convert import convert, encoder_formats

    run_dir = out.parent
    encoder, enc_path = _load_run_encoder(cfg, run_dir)
    fm = encoder_formats(encoder)
    x, y, source = _firmware_inputs(cfg, run_dir, encoder)
    np.save(out / "tb_inputs.npy", x)
    np.save(out / "tb_expected.npy", y)
    opts = cfg.firmware.options()
    t0 = time.perf_counter()
    hls_model = convert(encoder, out / "hls_project", opts)
    t1 = time.perf_counter()
    csim.write_tb_data(out / "hls_project", x, y)
    predict = csim.predict_check(hls_model, x, y, fm["latent"].lsb)
    log.info("firmware: HLS project written (%s, %s, %s, RF %d, %s @ %.3f ns) in %.1f s", opts.backend,
             opts.io_type, opts.strategy, opts.reuse_factor, opts.part, opts.clock_period, t1 - t0)
    log.info("firmware: hls4ml predict vs QKeras on %s modules: %.4f%% bit-exact, max %d LSB",
             f"{predict['n_modules']:,}", 100 * predict["bit_exact_fraction"], predict["max_abs_diff_lsb"])
    vendor = csim.vendor_build(hls_model, cfg.firmware.cosim)
    if not vendor["ran"]:
        log.info("firmware: %s", vendor["message"])
    return {"encoder": enc_path, "inputs": source, "n_modules": int(len(x)), "options": vars(opts),
            "formats": {k: v.hls() for k, v in fm.items()}, "latent_lsb": fm["latent"].lsb,
            "convert_seconds": t1 - t0, "predict_check": predict,
            "vendor": {k: v for k, v in vendor.items() if k != "result"}}


def _run_csim(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from firmware import csim
    from training.artifacts import atomic_write_text

    fw = out.parent / "firmware"
    fw_summary = read_json(fw / "summary.json")
    x, y = np.load(fw / "tb_inputs.npy"), np.load(fw / "tb_expected.npy")
    rep = csim.csim_check(fw / "hls_project", x, y, fw_summary["latent_lsb"])
    pred = fw_summary["predict_check"]
    tol = cfg.firmware.tolerance_lsb
    passed = rep["max_abs_diff_lsb"] <= tol and pred["max_abs_diff_lsb"] <= tol
    lines = ["# C simulation bit-accuracy", "",
             f"Inputs: {fw_summary['inputs']}, {rep['n_modules']:,} modules x 16 latents; "
             f"output LSB {fw_summary['latent_lsb']}; tolerance {tol} LSB.", "",
             "| check | bit-exact modules | mismatching modules | mismatching latents | max diff (LSB) |",
             "|---|---|---|---|---|"]
    for name, r in (("testbench (g++ csim)", rep), ("hls4ml compiled predict", pred)):
        lines.append(f"| {name} | {100 * r['bit_exact_fraction']:.4f}% | {r['mismatching_modules']} | "
                     f"{r['mismatching_latents']} | {r['max_abs_diff_lsb']} |")
    lines += ["", f"Verdict: {'PASS' if passed else 'FAIL'}"]
    for ex in rep["first_mismatches"]:
        lines.append(f"- module {ex['module']}: expected {ex['expected_lsb']}, got {ex['got_lsb']}")
    atomic_write_text(out / "csim.md", "\n".join(lines) + "\n")
    log.info("csim: testbench vs QKeras on %s modules: %.4f%% bit-exact, %d mismatching latents, max %d LSB -> %s",
             f"{rep['n_modules']:,}", 100 * rep["bit_exact_fraction"], rep["mismatching_latents"],
             rep["max_abs_diff_lsb"], "PASS" if passed else "FAIL")
    return {"testbench": rep, "predict": pred, "tolerance_lsb": tol, "check_passed": passed}


def _run_report(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from firmware import reports
    from firmware.convert import encoder_formats
    from training.artifacts import atomic_write_text

    run_dir = out.parent
    encoder, _ = _load_run_encoder(cfg, run_dir)
    figures = reports.parse_vendor_reports(run_dir / "firmware" / "hls_project")
    if cfg.rtl.enabled:
        figures.update(read_json(run_dir / "rtl" / "summary.json").get("figures", {}))
    report = {"figures": figures, "exact_counts": reports.exact_counts(encoder, encoder_formats(encoder)),
              "clock_period_ns": cfg.firmware.clock_period_ns}
    report["budget"] = reports.check_budget(figures, cfg.firmware.budget.model_dump())
    atomic_write_text(out / "report.md", reports.to_markdown(report))
    failed = [b["item"] for b in report["budget"] if b["verdict"] == "fail"]
    for b in report["budget"]:
        log.info("budget %s <= %s: %s (%s)", b["item"], b["limit"], b["verdict"],
                 "no figure" if b["value"] is None else f"{b['value']:.4g} from {b['source']}")
    return {**report, "check_passed": not failed}


def _run_rtl(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from firmware.reports import rtl_markdown
    from firmware.rtl import build_rtl
    from training.artifacts import atomic_write_text

    run_dir = out.parent
    encoder, enc_path = _load_run_encoder(cfg, run_dir)
    fw = run_dir / "firmware"
    x, y = np.load(fw / "tb_inputs.npy"), np.load(fw / "tb_expected.npy")
    summary = build_rtl(encoder, x, y, cfg.rtl, cfg.firmware.part, cfg.firmware.clock_period_ns, out,
                        cfg.firmware.tolerance_lsb)
    summary["encoder"] = enc_path
    atomic_write_text(out / "rtl.md", rtl_markdown(summary))
    return summary
