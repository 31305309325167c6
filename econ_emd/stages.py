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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def _train_and_evaluate(cfg: RunConfig, out: Path, loss_name: str, quantized: bool, frozen,
                        runner, label: str) -> dict:
    """Train one autoencoder, save it into `out`, evaluate it by exact EMD on test modules."""
    from training import encoder_train as et
    from training.dataset import load_dataset
    from training.losses import get_loss

    e = cfg.encoder
    ds = load_dataset(out.parent.parent / "data" if out.parent.name == "compare" else out.parent / "data")
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
    summary = _train_and_evaluate(cfg, out, cfg.encoder.loss, cfg.encoder.quantized, frozen, runner,
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
        runs[name] = _train_and_evaluate(cfg, out / name, name, True, frozen, runner, f"compare[{name}]")
    if e.compare_float:
        key = f"{e.loss} (float)"
        frozen_main = frozen if e.loss in e.compare_losses else _frozen_emd_cnn(cfg, out.parent, [e.loss])
        runs[key] = _train_and_evaluate(cfg, out / f"float_{e.loss}", e.loss, False, frozen_main, runner,
                                        f"compare[{key}]")
    et.plot_emd_vs_occupancy({k: r["evaluation"] for k, r in runs.items()}, out / "emd_vs_occupancy.png")
    table = comparison_table(runs)
    atomic_write_text(out / "compare.md", table["markdown"])
    return {"runs": {k: {kk: vv for kk, vv in r.items() if kk != "history"} for k, r in runs.items()},
            "ratios": table["ratios"], "plots": ["emd_vs_occupancy.png"], "table": "compare.md"}


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
}


def stage_hash(cfg: RunConfig, name: str) -> str:
    stage = STAGES[name]
    h = hashlib.sha256(cfg.section_hash(*stage.sections).encode())
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
    if summary.get("stage_hash") != stage_hash(cfg, name):
        return False
    return all((folder / f).exists() for f in STAGES[name].outputs)


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
    atomic_write_json(folder / "summary.json", summary)
    return summary


class StageOrderError(RuntimeError):
    """A stage was asked for before the stages it reads from."""
