"""The training stages: the EMD-CNN, the encoder, and the loss comparison."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

from econ_emd.base.artifacts import atomic_write_text, read_json
from econ_emd.base.seeds import seed_int
from econ_emd.base.tables import markdown_table
from econ_emd.training.comparison import EncoderRun, RelativeError

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
    runs: dict[str, EncoderRun]
    ratios: dict[str, float]
    plots: list[str] = field(default_factory=list)
    table: str = "compare.md"
    DECODE = {"runs": lambda d: {k: EncoderRun.from_json(v) for k, v in d.items()}}

    def to_json(self) -> dict:
        runs = {k: {kk: vv for kk, vv in r.to_json().items() if kk != "history"} for k, r in self.runs.items()}
        return {**self.details, "runs": runs, "ratios": self.ratios, "plots": self.plots, "table": self.table}

    def report_json(self, others) -> dict:
        return {"loss_comparison": {"median_exact_emd": {k: r.evaluation.overall.median for k, r in self.runs.items()},
                                    "ratios": self.ratios}}

    def report_markdown(self, others) -> list[str]:
        rows = [[k, f"{r.evaluation.overall.median:.4f}", f"{r.evaluation.overall.mean:.4f}"] for k, r in self.runs.items()]
        return ["## Encoder loss comparison (exact EMD of the reconstructions, test modules)", "",
                *markdown_table(["loss", "median", "mean"], rows), "",
                *(f"- {k}: {v:.3f}" for k, v in self.ratios.items()), ""]


def _frozen_emd_cnn(ctx: StageContext, losses) -> object | None:
    from econ_emd.training.losses import NEEDS_EMD_CNN

    if not NEEDS_EMD_CNN & set(losses):
        return None
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    return load_frozen_emd_cnn(ctx.folder("emd_cnn"))


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
    """The comparison's quantized main-loss row is the encoder stage's very training."""
    return cfg.encoder.loss in cfg.encoder.compare_losses and cfg.encoder.quantized


def run_compare(ctx: StageContext) -> CompareResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training.comparison import comparison_markdown, comparison_ratios, train_and_evaluate
    from econ_emd.training.evaluation import plot_emd_vs_occupancy

    e = ctx.cfg.encoder
    seed = seed_int(ctx.cfg.seed, "encoder_training")
    ds = load_dataset(ctx.folder("data"))
    frozen = _frozen_emd_cnn(ctx, [*e.compare_losses, e.loss])
    runner = emd_runner(ctx.cfg, ctx)
    runs: dict[str, EncoderRun] = {}
    for name in e.compare_losses:
        if name == e.loss and compare_reuses_encoder(ctx.cfg):
            runs[name] = _reuse_encoder_stage(ctx, name)
            log.info("compare[%s]: same training as the encoder stage, reused", name)
            continue
        runs[name] = train_and_evaluate(ds, e, ctx.out / name, name, True, frozen, runner, seed, f"compare[{name}]")
    if e.compare_float:
        key = f"{e.loss} (float)"
        runs[key] = train_and_evaluate(ds, e, ctx.out / f"float_{e.loss}", e.loss, False, frozen, runner, seed,
                                       f"compare[{key}]")
    plot_emd_vs_occupancy({k: r.evaluation for k, r in runs.items()}, ctx.out / "emd_vs_occupancy.png")
    ratios = comparison_ratios(runs, e.loss)
    atomic_write_text(ctx.out / "compare.md", comparison_markdown(runs, ratios))
    return CompareResult(runs=runs, ratios=ratios, plots=["emd_vs_occupancy.png"])


def _reuse_encoder_stage(ctx: StageContext, name: str) -> EncoderRun:
    """The encoder stage trained this very configuration: copy its models and results."""
    from econ_emd.training.encoder_train import DECODER_FILE, ENCODER_FILE

    src, dst = ctx.folder("encoder"), ctx.out / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in (ENCODER_FILE, DECODER_FILE):
        shutil.copy2(src / f, dst / f)
    return EncoderRun.from_json(read_json(src / "summary.json"))
