"""The training stages: the EMD-CNN, the encoder, and the loss comparison."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

import numpy as np

from econ_emd.base.artifacts import atomic_write_text, read_json
from econ_emd.base.seeds import seed_int
from econ_emd.base.tables import markdown_table
from econ_emd.training.comparison import EncoderRun, LossRow, PairedComparison, RelativeError, spread

from .data import emd_runner
from .result import StageContext, StageResult

log = logging.getLogger("econ_emd")


@dataclass(kw_only=True)
class EmdCnnResult(StageResult):
    #: pair kind -> relative-error statistics on held-out pairs (rel_mean, rel_sigma, n_pairs, ...)
    metrics: dict[str, dict]
    plots: list[str] = field(default_factory=list)

    def report_json(self, others) -> dict:
        out = {k: {"rel_mean": v["rel_mean"], "rel_sigma": v["rel_sigma"]} for k, v in self.metrics.items()}
        own = own_reconstruction_accuracy(others)
        if own:
            out["encoder_reconstructions"] = {"rel_mean": own.rel_mean, "rel_sigma": own.rel_sigma}
        return {"emd_cnn": out}

    def report_markdown(self, others) -> list[str]:
        rows = [[k, f"{v['n_pairs']:,}", f"{v['rel_mean']:+.4f}", f"{v['rel_sigma']:.4f}"] for k, v in self.metrics.items()]
        own = own_reconstruction_accuracy(others)
        if own:
            rows.append(["the trained encoder's reconstructions (test modules)", f"{own.n_pairs:,}",
                         f"{own.rel_mean:+.4f}", f"{own.rel_sigma:.4f}"])
        return ["## EMD-CNN accuracy (held-out pairs, relative error (pred - exact) / exact)", "",
                *markdown_table(["pairs", "n", "mean", "sigma"], rows), ""]


def own_reconstruction_accuracy(results: dict[str, StageResult]) -> RelativeError | None:
    enc = results.get("encoder")
    return enc.run.emd_cnn_on_reconstructions if isinstance(enc, EncoderResult) else None


@dataclass(kw_only=True)
class EncoderResult(StageResult):
    run: EncoderRun
    plots: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**self.details, **self.run.to_json(), "plots": self.plots}

    @classmethod
    def from_json(cls, d: dict) -> "EncoderResult":
        return cls(run=EncoderRun.from_json(d), plots=d.get("plots", []))

    def report_json(self, others) -> dict:
        if "compare" in others:
            return {}
        return {"encoder": {"median_exact_emd": self.run.evaluation.overall.median, "loss": self.run.loss}}

    def report_markdown(self, others) -> list[str]:
        if "compare" in others:          # the comparison's table holds this encoder too
            return []
        return ["## Encoder", "", f"Loss {self.run.loss}: median exact EMD {self.run.evaluation.overall.median:.4f}.", ""]


@dataclass(kw_only=True)
class CompareResult(StageResult):
    rows: dict[str, LossRow]
    ratios: dict[str, float]
    paired: list[PairedComparison] = field(default_factory=list)
    search: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    table: str = "compare.md"
    DECODE = {"rows": lambda d: {k: LossRow.from_json(k, v) for k, v in d.items()},
              "paired": lambda d: [PairedComparison(**p) for p in d]}

    def to_json(self) -> dict:
        return {**self.details, "rows": {k: r.to_json() for k, r in self.rows.items()}, "ratios": self.ratios,
                "paired": [vars(p) for p in self.paired], "search": self.search, "plots": self.plots,
                "table": self.table}

    def median_over_seeds(self) -> dict[str, float]:
        return {k: float(np.median(r.medians)) for k, r in self.rows.items()}

    def report_json(self, others) -> dict:
        return {"loss_comparison": {"median_exact_emd": self.median_over_seeds(),
                                    "median_per_seed": {k: r.medians for k, r in self.rows.items()},
                                    "ratios": self.ratios,
                                    "paired": {f"{p.a} vs {p.b}": {"a_closer": p.a_better, "median_ratio": p.median_ratio,
                                                                   "interval": [p.ci_low, p.ci_high]}
                                               for p in self.paired}}}

    def report_markdown(self, others) -> list[str]:
        med = self.median_over_seeds()
        n = max(len(r.runs) for r in self.rows.values())
        rows = [[k, f"{med[k]:.4f}", f"{spread(r.medians)['min']:.4f}-{spread(r.medians)['max']:.4f}",
                 f"{np.mean(r.means):.4f}", f"{r.settings['learning_rate']:g} ({r.settings['source']})"]
                for k, r in self.rows.items()]
        paired = [[p.a, p.b, f"{100 * p.a_better:.1f}%", f"{p.median_ratio:.3f} ({p.ci_low:.3f}-{p.ci_high:.3f})"]
                  for p in self.paired]
        return [f"## Encoder loss comparison (exact EMD of the reconstructions, test modules, {n} seeds)", "",
                *markdown_table(["loss", "median over seeds", "seeds' range", "mean", "learning rate"], rows), "",
                *markdown_table(["A", "B", "A closer (module by module)", "median A / B (95%)"], paired), "",
                *(f"- {k}: {v:.3f}" for k, v in self.ratios.items()), "",
                f"Per seed, by occupancy and the settings: `compare/{self.table}`; plot: "
                f"`compare/{self.plots[0] if self.plots else ''}`.", ""]



def _frozen_emd_cnn(ctx: StageContext, losses, path: str | None = None) -> object | None:
    """The frozen EMD-CNN an emd_cnn loss trains against: `path` (a file named in the config),
    else encoder.emd_cnn_path, else the run's own emd_cnn stage."""
    from econ_emd.training.losses import NEEDS_EMD_CNN

    if not NEEDS_EMD_CNN & set(losses):
        return None
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    return load_frozen_emd_cnn(path or ctx.cfg.encoder.emd_cnn_path or ctx.folder("emd_cnn"))


def run_emd_cnn(ctx: StageContext) -> EmdCnnResult:
    from econ_emd.data.labels import load_labels
    from econ_emd.models.emd_cnn import fold_batchnorm
    from econ_emd.training import emd_cnn_train as ec

    cfg = ctx.cfg
    seed = seed_int(cfg.seed, "emd_cnn_training")
    pairs = load_labels(ctx.folder("label"))
    model, history = ec.train_emd_cnn(pairs, cfg.emd_cnn, seed)
    frozen = ec.freeze(fold_batchnorm(model, cfg.emd_cnn.arch()))
    results = ec.evaluate_emd_cnn(frozen, pairs, "test")
    metrics = {kind: r["stats"] for kind, r in results.items()}
    ec.save_emd_cnn(frozen, ctx.out, {**ec.sidecar_for(cfg.emd_cnn, history, metrics, seed), "batchnorm_folded": True})
    plots = ec.plot_evaluation(results, ctx.out)
    for kind, st in metrics.items():
        log.info("EMD-CNN on held-out %s pairs: relative error mean %+.4f, sigma %.4f (%s pairs)",
                 kind, st["rel_mean"], st["rel_sigma"], f"{st['n_pairs']:,}")
    return EmdCnnResult(metrics=metrics, plots=plots, details={
        "epochs_run": len(history["loss"]), "best_epoch": history["best_epoch"],
        "train_seconds": history["seconds"], "n_parameters": int(model.count_params())})


def run_encoder(ctx: StageContext) -> EncoderResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.comparison import train_and_evaluate
    from econ_emd.training.evaluation import plot_emd_vs_occupancy

    e = ctx.cfg.encoder
    run = train_and_evaluate(load_dataset(ctx.folder("data")), e, ctx.out, e.loss, e.quantized,
                             _frozen_emd_cnn(ctx, [e.loss]), emd_runner(ctx.cfg, ctx),
                             seed_int(ctx.cfg.seed, "encoder_training"), f"encoder[{e.loss}]")
    plot_emd_vs_occupancy({e.loss: run.evaluation}, ctx.out / "emd_vs_occupancy.png")
    return EncoderResult(run=run, plots=["emd_vs_occupancy.png"])


def compare_reuses_encoder(cfg) -> bool:
    """Seed 0 of the comparison's quantized main-loss row is the encoder stage's very
    training: same loss, seed and settings (no search, the tuned settings are the encoder's)."""
    e, c = cfg.encoder, cfg.compare
    if e.loss not in c.losses or not e.quantized or c.search:
        return False
    s = c.settings(e.loss, e)
    return s.learning_rate == e.learning_rate and s.epochs == e.epochs


def compare_seeds(cfg) -> list[int]:
    """The training seeds of every comparison row: seed 0 is the encoder stage's."""
    from econ_emd.base.seeds import as_int, derive_seed

    return [seed_int(cfg.seed, "encoder_training"),
            *(as_int(derive_seed(cfg.seed, "encoder_seed", k)) for k in range(1, cfg.compare.seeds))]


def _rows(cfg) -> list[tuple[str, str, bool, str | None]]:
    """(row name, loss, quantized, EMD-CNN file or None) of every comparison row."""
    from pathlib import Path

    e, c = cfg.encoder, cfg.compare
    rows = [(name, name, True, None) for name in c.losses]
    if c.float_twin:
        rows.append((f"{e.loss} (float)", e.loss, False, None))
    for f in c.emd_cnn_files:
        rows.append((f"emd_cnn[{Path(f).stem}]", "emd_cnn", True, f))
    return rows


#: how many steps the search takes beyond an edge of `compare.learning_rates` when the
#: best candidate lies on it (a best rate at the edge says the optimum may lie outside)
SEARCH_EDGE_STEPS = 2


def next_candidate(tried: list[float], best: float) -> float | None:
    """The learning rate to try next: one step past the edge the best one lies on (the
    grid's own ratio at that edge), or None when the best is inside the tried range or
    nothing is known of the spacing."""
    rates = sorted(set(tried))
    if len(rates) < 2:
        return None
    if best == rates[-1]:
        return float(f"{rates[-1] * rates[-1] / rates[-2]:.6g}")
    if best == rates[0]:
        return float(f"{rates[0] * rates[0] / rates[1]:.6g}")
    return None


def _search(ctx: StageContext, ds, losses, frozen_for, runner) -> dict:
    """Each loss's learning rate chosen by the validation split's exact EMD (never the test
    split): every candidate trained once (seed 0, early stopping within the epoch cap);
    when the best lies on an edge of the candidates, up to SEARCH_EDGE_STEPS more beyond it."""
    from econ_emd.training.comparison import train_and_evaluate

    c, e = ctx.cfg.compare, ctx.cfg.encoder
    seed = compare_seeds(ctx.cfg)[0]
    out = {}
    for loss in losses:
        trials = []

        def trial(lr: float, extra: bool) -> None:
            params = e.model_copy(update={"learning_rate": lr, "epochs": c.search_epochs})
            run = train_and_evaluate(ds, params, ctx.out / "search" / loss / f"lr_{lr:g}", loss, True,
                                     frozen_for(loss), runner, seed, f"search[{loss}, lr {lr:g}]", split="val")
            trials.append({"learning_rate": lr, "val_median": run.evaluation.overall.median,
                           "val_mean": run.evaluation.overall.mean, "epochs_run": run.epochs_run,
                           "best_epoch": run.best_epoch, "beyond_the_grid": extra})

        for lr in c.learning_rates:
            trial(lr, False)
        for _ in range(SEARCH_EDGE_STEPS):
            best = min(trials, key=lambda t: t["val_median"])["learning_rate"]
            nxt = next_candidate([t["learning_rate"] for t in trials], best)
            if nxt is None or not 0 < nxt <= 1:
                break
            log.info("search[%s]: the best rate %g lies on the edge of the candidates; trying %g", loss, best, nxt)
            trial(nxt, True)
        best = min(trials, key=lambda t: t["val_median"])
        log.info("search[%s]: learning rate %g (validation median exact EMD %.3f)", loss, best["learning_rate"],
                 best["val_median"])
        out[loss] = {"chosen": {"learning_rate": best["learning_rate"], "epochs": c.search_epochs},
                     "trials": trials}
    return out


def run_compare(ctx: StageContext) -> CompareResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.comparison import (EMD_FILE, comparison_markdown, comparison_ratios, paired_comparison,
                                              plot_emd_vs_occupancy_seeds, train_and_evaluate)

    cfg, e, c = ctx.cfg, ctx.cfg.encoder, ctx.cfg.compare
    ds = load_dataset(ctx.folder("data"))
    runner = emd_runner(cfg, ctx)
    rows_def = _rows(cfg)
    frozen_cache: dict = {}

    def frozen_for(loss: str, path: str | None = None):
        key = (loss, path)
        if key not in frozen_cache:
            frozen_cache[key] = _frozen_emd_cnn(ctx, [loss], path)
        return frozen_cache[key]

    search = _search(ctx, ds, sorted({loss for _, loss, _, _ in rows_def}), frozen_for, runner) if c.search else {}
    seeds = compare_seeds(cfg)
    rows: dict[str, LossRow] = {}
    emd: dict[str, np.ndarray] = {}
    for name, loss, quantized, path in rows_def:
        if loss in search:
            chosen = search[loss]["chosen"]
            settings = {**chosen, "source": "search (validation exact EMD)"}
        else:
            t = c.settings(loss, e)
            settings = {"learning_rate": t.learning_rate, "epochs": t.epochs,
                        "source": "compare.tuned" if loss in c.tuned else "encoder settings"}
        params = e.model_copy(update={"learning_rate": settings["learning_rate"], "epochs": settings["epochs"]})
        runs, arrays = [], []
        folder = name.replace(" ", "_").replace("(", "").replace(")", "")
        for k, seed in enumerate(seeds):
            label = f"compare[{name}, seed {k}]"
            out = ctx.out / folder / f"seed_{k}"
            if k == 0 and quantized and loss == e.loss and path is None and compare_reuses_encoder(cfg):
                run = _reuse_encoder_stage(ctx, out)
                log.info("%s: same training as the encoder stage, reused", label)
            else:
                run = train_and_evaluate(ds, params, out, loss, quantized, frozen_for(loss, path), runner, seed, label)
            runs.append(run)
            arrays.append(np.load(out / EMD_FILE))
        rows[name] = LossRow(name, runs, settings)
        emd[name] = np.stack(arrays)
    rng = np.random.default_rng(cfg.seed)
    names = list(rows)
    paired = [paired_comparison(emd[a], emd[b], (a, b), c.bootstrap, rng)
              for i, a in enumerate(names) for b in names[i + 1:]]
    float_row = f"{e.loss} (float)" if c.float_twin else None
    ratios = comparison_ratios(rows, e.loss, float_row)
    plot_emd_vs_occupancy_seeds(rows, ctx.out / "emd_vs_occupancy.png")
    atomic_write_text(ctx.out / "compare.md", comparison_markdown(rows, ratios, paired, search))
    return CompareResult(rows=rows, ratios=ratios, paired=paired, search=search, plots=["emd_vs_occupancy.png"],
                         details={"seeds": seeds})


def _reuse_encoder_stage(ctx: StageContext, dst) -> EncoderRun:
    """The encoder stage trained this very configuration: copy its models, result and the
    exact EMD of its test modules."""
    from econ_emd.training.comparison import EMD_FILE, RUN_FILE, SETTINGS_FILE
    from econ_emd.training.encoder_train import DECODER_FILE, ENCODER_FILE

    src = ctx.folder("encoder")
    dst.mkdir(parents=True, exist_ok=True)
    for f in (ENCODER_FILE, DECODER_FILE, EMD_FILE, RUN_FILE, SETTINGS_FILE):
        shutil.copy2(src / f, dst / f)
    return EncoderRun.from_json(read_json(src / RUN_FILE))
