"""Bodies of the training-side stages: data, label, emd_cnn, encoder, compare.

Each takes the validated config, its output folder and whether to show progress, and
returns the summary that `stages.run_stage` stores (with the stage hash) in summary.json.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from training.artifacts import read_json

from .config import RunConfig

log = logging.getLogger("econ_emd")


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
    from training.emd import prepare_solver, resolve_solver
    from training.labels import label_pairs, make_pairs, save_labels

    ds = load_dataset(out.parent / "data")
    pairs = make_pairs(ds, cfg.labels, cfg.seed)
    runner = emd_runner(cfg, out.parent, progress)
    compile_seconds = prepare_solver(cfg.emd.solver)   # kept out of the throughput figure
    if compile_seconds > 1:
        log.info("label: compiled the exact-EMD solver in %.1f s (once per checkout, then cached)",
                 compile_seconds)
    speed = label_pairs(pairs, runner)
    extra = {"solver": resolve_solver(cfg.emd.solver), "n_jobs": runner.n_jobs,
             "dask_scheduler": cfg.emd.dask_scheduler, "solver_compile_seconds": round(compile_seconds, 2),
             **speed}
    summary = save_labels(pairs, out, extra)
    log.info("label: %s pairs in %.1f s (%s pairs/s, solver %s)", f"{speed['n_pairs']:,}",
             speed["seconds"], f"{speed['pairs_per_second'] or 0:,.0f}", extra["solver"])
    return summary


def _run_emd_cnn(cfg: RunConfig, out: Path, progress: bool) -> dict:
    from models.emd_cnn import fold_batchnorm
    from training import emd_cnn_train as ec
    from training.labels import load_labels

    pairs = load_labels(out.parent / "label")
    model, history = ec.train_emd_cnn(pairs, cfg.emd_cnn, cfg.seed)
    frozen = ec.freeze(fold_batchnorm(model, cfg.emd_cnn.arch()))
    results = ec.evaluate_emd_cnn(frozen, pairs, "test")
    metrics = {kind: r["stats"] for kind, r in results.items()}
    ec.save_emd_cnn(frozen, out, {**ec.sidecar_for(cfg.emd_cnn, history, metrics, cfg.seed),
                                  "batchnorm_folded": True})
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
    evaluation, exact = et.evaluate_reconstruction(test, recon, runner)
    et.clear_checkpoint(out)
    ov = evaluation["overall"]
    log.info("%s: exact EMD on %s test modules: mean %.3f, median %.3f (16-84%%: %.3f-%.3f)", label,
             f"{ov['n']:,}", ov["mean"], ov["median"], ov["p16"], ov["p84"])
    summary = {"loss": loss_name, "quantized": quantized, "latent_bits": e.bits(), "elinks": e.elinks,
               "epochs_run": len(history["loss"]) + history["initial_epoch"], "train_seconds": history["seconds"],
               "history": history, "evaluation": evaluation}
    if loss_name == "emd_cnn":
        summary["emd_cnn_on_reconstructions"] = _loss_network_accuracy(frozen, test, recon, exact, label)
    return summary


def _loss_network_accuracy(frozen, test, recon, exact, label: str) -> dict:
    """The EMD-CNN against the exact EMD on the pairs it was a loss for: the trained encoder's
    own (module, reconstruction) pairs, which no held-out label set contains."""
    from training import encoder_train as et
    from training.emd_cnn_train import predict_emd, relative_error_stats

    stats = relative_error_stats(predict_emd(frozen, test, et.judged_reconstruction(recon)[0]), exact)
    log.info("%s: EMD-CNN on its own reconstructions: relative error mean %+.4f, sigma %.4f (%s pairs)", label,
             stats["rel_mean"], stats["rel_sigma"], f"{stats['n_pairs']:,}")
    return {k: stats[k] for k in ("n_pairs", "n_excluded_tiny", "rel_mean", "rel_sigma", "rel_median")}


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

    from .stages import is_current      # the registry imports this module

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
