"""The training stages: the EMD-CNN and the encoder."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from econ_emd.base.seeds import seed_int
from econ_emd.base.tables import markdown_table
from econ_emd.training.encoder_run import EncoderRun, RelativeError

from .result import StageContext, StageResult, encoder_request

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
        if "compare_losses" in others:
            return {}
        return {"encoder": {"median_exact_emd": self.run.evaluation.overall.median, "loss": self.run.loss}}

    def report_markdown(self, others) -> list[str]:
        if "compare_losses" in others:   # the comparison's table holds this encoder too
            return []
        return ["## Encoder", "", f"Loss {self.run.loss}: median exact EMD {self.run.evaluation.overall.median:.4f}.", ""]


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
    from econ_emd.training.encoder_run import train_and_evaluate
    from econ_emd.training.evaluation import plot_emd_vs_occupancy

    request = encoder_request(ctx.cfg)
    run = train_and_evaluate(request, data=load_dataset(ctx.folder("data")), out=ctx.out,
                             frozen=ctx.frozen_emd_cnn([request.loss]), runner=ctx.emd_runner(),
                             label=f"encoder[{request.loss}]")
    plot_emd_vs_occupancy({request.loss: run.evaluation}, ctx.out / "emd_vs_occupancy.png")
    return EncoderResult(run=run, plots=["emd_vs_occupancy.png"])
