"""The stages of a run, each writing into its own folder of the run directory.

A stage records in `<run_dir>/<stage>/summary.json` the hash of the config sections it
depends on and of its upstream stages. `pipeline` skips a stage whose summary carries the
current hash; stage commands run unconditionally. Artifacts are written to temporary
names and renamed, so a stage interrupted midway is simply run again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from training.artifacts import read_json

from .config import RunConfig

log = logging.getLogger("econ_emd")


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]   # config sections the outputs depend on
    upstream: tuple[str, ...] | Callable[[RunConfig], tuple[str, ...]]  # stages it reads
    run: Callable[[RunConfig, Path, bool], dict]
    outputs: tuple[str, ...]    # files (relative to the stage folder) that must exist

    def upstream_of(self, cfg: RunConfig) -> tuple[str, ...]:
        return self.upstream(cfg) if callable(self.upstream) else self.upstream


class CheckFailed(RuntimeError):
    """A stage ran and wrote its outputs, but a check it performs failed (exit code 1)."""


def _run_data(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from training.dataset import build_dataset, save_dataset

    ds = build_dataset(cfg.data, cfg.seed)
    summary = save_dataset(ds, out)
    log.info("data: %s modules (train %d, val %d, test %d), %d zero-sum rows dropped, median occupancy %.0f",
             f"{ds.n_modules:,}", *summary["n_modules"].values(), summary["n_zero_sum_dropped"],
             summary["occupancy_median"])
    return summary


def emd_runner(cfg: RunConfig, run_dir: Path, progress: bool):
    from training.emd import EmdRunner

    e = cfg.emd
    n_jobs = len(os.sched_getaffinity(0)) if e.n_jobs == -1 else e.n_jobs
    cache = None
    if e.cache:
        cache = e.cache_dir or str(run_dir / "cache" / "emd")
    return EmdRunner(solver=e.solver, n_jobs=n_jobs, chunk_size=e.chunk_size,
                     dask_scheduler=e.dask_scheduler, cache_dir=cache, progress=progress)


def _run_label(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from training.dataset import load_dataset
    from training.emd import resolve_solver
    from training.labels import label_pairs, make_pairs, save_labels

    ds = load_dataset(out.parent / "data")
    pairs = make_pairs(ds, cfg.labels, cfg.seed)
    runner = emd_runner(cfg, out.parent, progress)
    speed = label_pairs(pairs, runner)
    extra = {"solver": resolve_solver(cfg.emd.solver), "n_jobs": runner.n_jobs,
             "dask_scheduler": cfg.emd.dask_scheduler, **speed}
    summary = save_labels(pairs, out, extra)
    log.info("label: %s pairs in %.1f s (%s pairs/s, solver %s)", f"{speed['n_pairs']:,}",
             speed["seconds"], f"{speed['pairs_per_second'] or 0:,.0f}", extra["solver"])
    return summary


def _run_emd_cnn(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from training import emd_cnn_train as ec
    from training.labels import load_labels

    pairs = load_labels(out.parent / "label")
    model, history = ec.train_emd_cnn(pairs, cfg.emd_cnn, cfg.seed)
    frozen = ec.freeze(model)
    results = ec.evaluate_emd_cnn(frozen, pairs, "test")
    metrics = {kind: r["stats"] for kind, r in results.items()}
    ec.save_emd_cnn(frozen, out, ec.sidecar_for(cfg.emd_cnn, history, metrics, cfg.seed))
    plots = ec.plot_evaluation(results, out)
    for kind, st in metrics.items():
        log.info("EMD-CNN on held-out %s pairs: relative error mean %+.4f, sigma %.4f (%s pairs)",
                 kind, st["rel_mean"], st["rel_sigma"], f"{st['n_pairs']:,}")
    return {"metrics": metrics, "plots": plots, "epochs_run": len(history["loss"]),
            "best_epoch": history["best_epoch"], "train_seconds": history["seconds"],
            "n_parameters": int(model.count_params())}


def _frozen_emd_cnn(cfg: RunConfig, run_dir: Path, losses) -> object | None:
    if "emd_cnn" not in losses:
        return None
    from training.emd_cnn_train import load_frozen_emd_cnn

    return load_frozen_emd_cnn(run_dir / "emd_cnn")


def _train_and_evaluate(cfg: RunConfig, run_dir: Path, out: Path, loss_name: str, quantized: bool,
                        frozen, runner, label: str) -> dict:
    """Train one autoencoder, save it into `out`, evaluate it by exact EMD on test modules."""
    from training import encoder_train as et
    from training.dataset import load_dataset
    from training.losses import get_loss

    e = cfg.encoder
    ds = load_dataset(run_dir / "data")
    train = ds["train"][: e.max_train_modules]
    test = ds["test"][: e.max_eval_modules]
    loss_fn = get_loss(loss_name, frozen, e.sinkhorn_epsilon, e.sinkhorn_iter)
    params = e.model_copy(update={"quantized": quantized})
    enc, dec, history = et.train_autoencoder(train, ds["val"], params, loss_fn, cfg.seed, out, label)
    et.save_encoder(enc, dec, out)
    _, recon = et.reconstruct(enc, dec, test)
    evaluation, _ = et.evaluate_reconstruction(test, recon, runner)
    et.clear_checkpoint(out)
    ov = evaluation["overall"]
    log.info("%s: exact EMD on %s test modules: mean %.3f, median %.3f (16-84%%: %.3f-%.3f)", label,
             f"{ov['n']:,}", ov["mean"], ov["median"], ov["p16"], ov["p84"])
    return {"loss": loss_name, "quantized": quantized, "latent_bits": e.bits(), "elinks": e.elinks,
            "epochs_run": len(history["loss"]) + history["initial_epoch"], "train_seconds": history["seconds"],
            "history": history, "evaluation": evaluation}


def _run_encoder(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from training import encoder_train as et

    frozen = _frozen_emd_cnn(cfg, out.parent, [cfg.encoder.loss])
    runner = emd_runner(cfg, out.parent, progress)
    summary = _train_and_evaluate(cfg, out.parent, out, cfg.encoder.loss, cfg.encoder.quantized, frozen, runner,
                                  f"encoder[{cfg.encoder.loss}]")
    et.plot_emd_vs_occupancy({cfg.encoder.loss: summary["evaluation"]}, out / "emd_vs_occupancy.png")
    summary["plots"] = ["emd_vs_occupancy.png"]
    return summary


def _run_compare(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from training import encoder_train as et
    from training.artifacts import atomic_write_text

    e = cfg.encoder
    frozen = _frozen_emd_cnn(cfg, out.parent, e.compare_losses)
    runner = emd_runner(cfg, out.parent, progress)
    runs = {}
    for name in e.compare_losses:
        if name == e.loss and e.quantized and is_current(cfg, out.parent, "encoder"):
            runs[name] = _reuse_encoder_stage(out.parent / "encoder", out / name)
            log.info("compare[%s]: same training as the encoder stage, reused", name)
            continue
        runs[name] = _train_and_evaluate(cfg, out.parent, out / name, name, True, frozen, runner,
                                         f"compare[{name}]")
    if e.compare_float:
        key = f"{e.loss} (float)"
        frozen_main = frozen if e.loss in e.compare_losses else _frozen_emd_cnn(cfg, out.parent, [e.loss])
        runs[key] = _train_and_evaluate(cfg, out.parent, out / f"float_{e.loss}", e.loss, False, frozen_main,
                                        runner, f"compare[{key}]")
    et.plot_emd_vs_occupancy({k: r["evaluation"] for k, r in runs.items()}, out / "emd_vs_occupancy.png")
    table = comparison_table(runs)
    atomic_write_text(out / "compare.md", table["markdown"])
    return {"runs": {k: {kk: vv for kk, vv in r.items() if kk != "history"} for k, r in runs.items()},
            "ratios": table["ratios"], "plots": ["emd_vs_occupancy.png"], "table": "compare.md"}


def _reuse_encoder_stage(src: Path, dst: Path) -> dict:
    """The encoder stage trained this very configuration: copy its models and results."""
    import shutil

    from training.encoder_train import DECODER_FILE, ENCODER_FILE

    dst.mkdir(parents=True, exist_ok=True)
    for f in (ENCODER_FILE, DECODER_FILE):
        shutil.copy2(src / f, dst / f)
    summary = read_json(src / "summary.json")
    return {k: v for k, v in summary.items() if k not in ("stage_hash", "plots")}


def comparison_table(runs: dict[str, dict]) -> dict:
    """Markdown table of exact-EMD figures per loss, and the ratios the goals name."""
    occ_labels = [f"occ {b['lo']}-{b['hi']}" for b in next(iter(runs.values()))["evaluation"]["by_occupancy"]]
    head = "| loss | quantized | mean EMD | median | 16% | 84% | " + " | ".join(f"median {o}" for o in occ_labels) + " |"
    lines = [head, "|" + "---|" * (6 + len(occ_labels))]
    for name, r in runs.items():
        ov = r["evaluation"]["overall"]
        occ = " | ".join(f"{b['median']:.3f}" if b["n"] else "-" for b in r["evaluation"]["by_occupancy"])
        lines.append(f"| {name} | {'yes' if r['quantized'] else 'no'} | {ov['mean']:.3f} | {ov['median']:.3f} | "
                     f"{ov['p16']:.3f} | {ov['p84']:.3f} | {occ} |")
    med = {k: r["evaluation"]["overall"]["median"] for k, r in runs.items()}
    mean = {k: r["evaluation"]["overall"]["mean"] for k, r in runs.items()}
    ratios = {}
    if "emd_cnn" in med:
        for other in ("telescope", "wmse", "mse", "sinkhorn"):
            if other in med:
                ratios[f"median emd_cnn / {other}"] = med["emd_cnn"] / med[other]
        if "emd_cnn (float)" in mean:
            ratios["mean quantized / float (emd_cnn)"] = mean["emd_cnn"] / mean["emd_cnn (float)"]
    lines += ["", *(f"- {k}: {v:.3f}" for k, v in ratios.items())]
    return {"markdown": "\n".join(lines) + "\n", "ratios": ratios}


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


STAGES: dict[str, Stage] = {
    "data": Stage("data", ("data",), (), _run_data, ("modules.h5",)),
    "label": Stage("label", ("labels",), ("data",), _run_label, ("labels.h5",)),
    "emd_cnn": Stage("emd_cnn", ("emd_cnn",), ("label",), _run_emd_cnn,
                     ("emd_cnn.h5", "emd_cnn.json", "emd_cnn_pred_vs_exact.png")),
    "encoder": Stage("encoder", ("encoder",),
                     lambda cfg: ("data", "emd_cnn") if cfg.encoder.loss == "emd_cnn" else ("data",),
                     _run_encoder, ("encoder.h5", "decoder.h5", "emd_vs_occupancy.png")),
    "compare": Stage("compare", ("encoder",),
                     lambda cfg: ("data", "emd_cnn") if "emd_cnn" in cfg.encoder.compare_losses
                     or cfg.encoder.loss == "emd_cnn" else ("data",),
                     _run_compare, ("compare.md", "emd_vs_occupancy.png")),
    "firmware": Stage("firmware", ("firmware",),
                      lambda cfg: () if cfg.firmware.encoder_path else ("encoder",),
                      _run_firmware, ("hls_project/myproject_test.cpp", "tb_inputs.npy", "tb_expected.npy")),
    "csim": Stage("csim", ("firmware",), ("firmware",), _run_csim, ("csim.md",)),
    "rtl": Stage("rtl", ("firmware", "rtl"), ("firmware",), _run_rtl,
                 ("verilog/src/econt_encoder.v", "rtl.md")),
    "report": Stage("report", ("firmware", "rtl"),
                    lambda cfg: ("firmware", "rtl") if cfg.rtl.enabled else ("firmware",),
                    _run_report, ("report.md",)),
}


def stage_hash(cfg: RunConfig, name: str) -> str:
    stage = STAGES[name]
    h = hashlib.sha256(cfg.section_hash(*stage.sections).encode())
    if "firmware" in stage.sections and cfg.firmware.encoder_path:
        try:
            h.update(hashlib.sha256(Path(cfg.firmware.encoder_path).read_bytes()).digest())
        except OSError:
            pass
    for up in stage.upstream_of(cfg):
        h.update(stage_hash(cfg, up).encode())
    return h.hexdigest()[:16]


def is_current(cfg: RunConfig, run_dir: Path, name: str) -> bool:
    """Outputs exist and were made from the current config and upstream stages."""
    folder = run_dir / name
    try:
        summary = read_json(folder / "summary.json")
    except (OSError, ValueError):
        return False
    if summary.get("stage_hash") != stage_hash(cfg, name) or summary.get("check_passed") is False:
        return False
    recorded = summary.get("output_digests", {})
    for f in STAGES[name].outputs:
        path = folder / f
        if not path.exists():
            return False
        if f in recorded and file_digest(path) != recorded[f]:
            log.warning("%s: %s differs from what the stage wrote (corrupted or replaced); rerunning", name, path)
            return False
    return True


def file_digest(path: Path) -> str:
    """sha256 of a file: a stage's outputs are checked against it before they are reused."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_stage(cfg: RunConfig, run_dir: Path, name: str, progress: bool = True) -> dict:
    from training.artifacts import atomic_write_json

    missing = [up for up in STAGES[name].upstream_of(cfg) if not is_current(cfg, run_dir, up)]
    if missing:
        from .cli import COMMANDS

        raise StageOrderError(f"stage '{name}' needs up-to-date outputs of: {', '.join(missing)} "
                              f"(run `econ-emd {COMMANDS[missing[0]]}` or `econ-emd pipeline`)")
    folder = run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    summary = STAGES[name].run(cfg, folder, progress)
    summary["stage_hash"] = stage_hash(cfg, name)
    summary["output_digests"] = {f: file_digest(folder / f) for f in STAGES[name].outputs if (folder / f).exists()}
    atomic_write_json(folder / "summary.json", summary)
    if summary.get("check_passed") is False:
        raise CheckFailed(f"stage '{name}': check failed (see {folder})")
    return summary


class StageOrderError(RuntimeError):
    """A stage was asked for before the stages it reads from."""
