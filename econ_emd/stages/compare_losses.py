"""The loss comparison stage: every loss trained on the same split with the same seeds,
each with its own learning rate (tuned, or chosen by a search on the validation split),
compared module by module by exact EMD (training/compare_losses.py holds the statistics)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import atomic_write_text
from econ_emd.base.tables import markdown_table
from econ_emd.training.compare_losses import LossRow, PairedComparison, spread
from econ_emd.training.encoder_run import TrainRequest

from .result import StageContext, StageResult, encoder_request, training_seeds

log = logging.getLogger("econ_emd")


@dataclass(kw_only=True)
class CompareLossesResult(StageResult):
    rows: dict[str, LossRow]
    ratios: dict[str, float]
    paired: list[PairedComparison] = field(default_factory=list)
    search: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    table: str = "compare_losses.md"
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
                f"Per seed, by occupancy and the settings: `compare_losses/{self.table}`; plot: "
                f"`compare_losses/{self.plots[0] if self.plots else ''}`.", ""]



@dataclass(frozen=True)
class Row:
    """One row of the comparison: its name, the loss it trains, quantized or the float twin,
    and the frozen EMD-CNN file it trains against (None: the run's)."""

    name: str
    loss: str
    quantized: bool
    emd_cnn_file: str | None = None

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_").replace("(", "").replace(")", "")


def rows(cfg) -> list[Row]:
    """Every row of the comparison, in table order."""
    e, c = cfg.encoder, cfg.compare_losses
    out = [Row(name, name, True) for name in c.losses]
    if c.float_twin:
        out.append(Row(f"{e.loss} (float)", e.loss, False))
    out += [Row(f"emd_cnn[{Path(f).stem}]", "emd_cnn", True, f) for f in c.emd_cnn_files]
    return out


def losses_trained(cfg) -> list[str]:
    """The losses the comparison trains (its hash covers the settings they read)."""
    return list(dict.fromkeys(r.loss for r in rows(cfg)))


def seeds(cfg) -> list[int]:
    """The training seeds of every comparison row: seed 0 is the encoder stage's."""
    return training_seeds(cfg, cfg.compare_losses.seeds)


def _tuned_settings(cfg, loss: str) -> dict:
    c, e = cfg.compare_losses, cfg.encoder
    t = c.settings(loss, e)
    return {"learning_rate": t.learning_rate, "epochs": t.epochs,
            "source": "compare_losses.tuned" if loss in c.tuned else "encoder settings"}


def request(cfg, row: Row, settings: dict, seed: int, split: str = "test") -> TrainRequest:
    """The training request of one row at one seed with the given learning rate and epochs."""
    c = cfg.compare_losses
    params = cfg.encoder.model_copy(update={"learning_rate": settings["learning_rate"], "epochs": settings["epochs"],
                                            "quantized": True, "kind": c.kind or cfg.encoder.kind})
    req = TrainRequest(params=params, loss=row.loss, seed=seed, split=split)
    return req if row.quantized else req.float_twin()


def reuses_encoder_stage(cfg) -> bool:
    """A row at seed 0 is asked exactly what the encoder stage was asked, or (the asic kind)
    what its float start was (the one rule of reuse: equal requests); then the stage's
    result is copied, not trained again. Known from
    the config alone only without the search (a search picks the settings as it runs)."""
    if cfg.compare_losses.search:
        return False
    stage = encoder_request(cfg)
    wanted = [stage.settings(), *([stage.float_twin().settings()] if stage.params.starts_from_float_twin() else [])]
    return any(r.emd_cnn_file is None and request(cfg, r, _tuned_settings(cfg, r.loss), seeds(cfg)[0]).settings()
               in wanted for r in rows(cfg))


#: how many steps the search takes beyond an edge of `compare_losses.learning_rates` when
#: the best candidate lies on it (a best rate at the edge says the optimum may lie outside)
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
    from econ_emd.training.encoder_run import train_and_evaluate

    c = ctx.cfg.compare_losses
    seed = seeds(ctx.cfg)[0]
    out = {}
    for loss in losses:
        trials = []

        def trial(lr: float, extra: bool) -> None:
            req = request(ctx.cfg, Row(loss, loss, True), {"learning_rate": lr, "epochs": c.search_epochs}, seed,
                          split="val")
            run = train_and_evaluate(req, data=ds, out=ctx.out / "search" / loss / f"lr_{lr:g}",
                                     frozen=frozen_for(loss), runner=runner, label=f"search[{loss}, lr {lr:g}]")
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


def run_compare_losses(ctx: StageContext) -> CompareLossesResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.compare_losses import (comparison_markdown, comparison_ratios, paired_comparison,
                                                  plot_emd_vs_occupancy_seeds)
    from econ_emd.training.encoder_run import EMD_FILE, reused_run, train_and_evaluate

    cfg, e, c = ctx.cfg, ctx.cfg.encoder, ctx.cfg.compare_losses
    ds = load_dataset(ctx.folder("data"))
    runner = ctx.emd_runner()
    table = rows(cfg)
    frozen_cache: dict = {}

    def frozen_for(loss: str, path: str | None = None):
        key = (loss, path)
        if key not in frozen_cache:
            frozen_cache[key] = ctx.frozen_emd_cnn([loss], path)
        return frozen_cache[key]

    search = _search(ctx, ds, sorted({r.loss for r in table}), frozen_for, runner) if c.search else {}
    seed_list = seeds(cfg)
    reuse = reuses_encoder_stage(cfg)
    done: dict[str, LossRow] = {}
    emd: dict[str, np.ndarray] = {}
    for row in table:
        if row.loss in search:
            settings = {**search[row.loss]["chosen"], "source": "search (validation exact EMD)"}
        else:
            settings = _tuned_settings(cfg, row.loss)
        runs, arrays = [], []
        for k, seed in enumerate(seed_list):
            label = f"compare[{row.name}, seed {k}]"
            out = ctx.out / row.folder / f"seed_{k}"
            req = request(cfg, row, settings, seed)
            # an equal request's training stands for it: the encoder stage's (or its float
            # start), an earlier row's at this seed (the asic kind's float start is the float
            # row); never for a row against another EMD-CNN file (its request looks the same)
            earlier = [ctx.out / r.folder / f"seed_{k}" for r in table[:table.index(row)] if r.emd_cnn_file is None]
            reuse_from = [] if row.emd_cnn_file is not None else [*([ctx.folder("encoder")] if reuse else []), *earlier]
            run = reused_run(req, out, reuse_from, label)
            if run is None:
                run = train_and_evaluate(req, data=ds, out=out, frozen=frozen_for(row.loss, row.emd_cnn_file),
                                         runner=runner, label=label, reuse_from=reuse_from)
            runs.append(run)
            arrays.append(np.load(out / EMD_FILE))
        done[row.name] = LossRow(row.name, runs, settings)
        emd[row.name] = np.stack(arrays)
    rng = np.random.default_rng(cfg.seed)
    names = list(done)
    paired = [paired_comparison(emd[a], emd[b], (a, b), c.bootstrap, rng)
              for i, a in enumerate(names) for b in names[i + 1:]]
    float_row = f"{e.loss} (float)" if c.float_twin else None
    ratios = comparison_ratios(done, e.loss, float_row)
    plot_emd_vs_occupancy_seeds(done, ctx.out / "emd_vs_occupancy.png")
    atomic_write_text(ctx.out / "compare_losses.md", comparison_markdown(done, ratios, paired, search))
    return CompareLossesResult(rows=done, ratios=ratios, paired=paired, search=search, plots=["emd_vs_occupancy.png"],
                               details={"seeds": seed_list})
