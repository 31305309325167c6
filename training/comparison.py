"""Train an encoder with a named loss and judge it by exact EMD; compare several such runs.

This is the unit of the encoder stage, of the loss comparison and of the seed benchmark:
one function, so the three cannot drift apart.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.base.tables import markdown_table
from econ_emd.data.dataset import Dataset

from . import encoder_train as et
from .evaluation import Evaluation, evaluate_reconstruction, judged_reconstruction
from .losses import get_loss
from .params import EncoderParams

log = logging.getLogger("econ_emd")

#: the baselines the EMD-CNN loss is compared with, in the order the ratios are reported
BASELINES = ("telescope", "wmse", "mse", "sinkhorn")


@dataclass
class RelativeError:
    """A differentiable EMD's relative error (pred - exact) / exact on a set of pairs."""

    n_pairs: int
    n_excluded_tiny: int
    rel_mean: float
    rel_sigma: float
    rel_median: float


@dataclass(kw_only=True)
class EncoderRun:
    """One trained encoder: how it was trained and its exact-EMD evaluation on test modules."""

    loss: str
    quantized: bool
    latent_bits: int
    elinks: int
    epochs_run: int
    train_seconds: float
    evaluation: Evaluation
    history: dict = field(default_factory=dict)
    emd_cnn_on_reconstructions: RelativeError | None = None

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("loss", "quantized", "latent_bits", "elinks", "epochs_run",
                                           "train_seconds", "history")}
        d["evaluation"] = self.evaluation.to_json()
        if self.emd_cnn_on_reconstructions is not None:
            d["emd_cnn_on_reconstructions"] = vars(self.emd_cnn_on_reconstructions).copy()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EncoderRun":
        own = d.get("emd_cnn_on_reconstructions")
        return cls(loss=d["loss"], quantized=d["quantized"], latent_bits=d["latent_bits"], elinks=d["elinks"],
                   epochs_run=d["epochs_run"], train_seconds=d["train_seconds"], history=d.get("history", {}),
                   evaluation=Evaluation.from_json(d["evaluation"]),
                   emd_cnn_on_reconstructions=RelativeError(**own) if own else None)


def train_and_evaluate(ds: Dataset, params: EncoderParams, out: Path | None, loss_name: str, quantized: bool,
                       frozen, runner, seed: int, label: str) -> EncoderRun:
    """Train one autoencoder (resuming from a checkpoint in `out`), save it into `out`,
    evaluate it by exact EMD on the test modules."""
    train = ds["train"][: params.max_train_modules]
    test = ds["test"][: params.max_eval_modules]
    loss_fn = get_loss(loss_name, frozen, params.sinkhorn_epsilon, params.sinkhorn_iter)
    params = params.model_copy(update={"quantized": quantized})
    enc, dec, history = et.train_autoencoder(train, ds["val"], params, loss_fn, seed, out, label)
    if out is not None:
        et.save_encoder(enc, dec, out)
    _, recon = et.reconstruct(enc, dec, test)
    evaluation, exact = evaluate_reconstruction(test, recon, runner)
    if out is not None:
        et.clear_checkpoint(out)
    ov = evaluation.overall
    log.info("%s: exact EMD on %s test modules: mean %.3f, median %.3f (16-84%%: %.3f-%.3f)", label,
             f"{ov.n:,}", ov.mean, ov.median, ov.p16, ov.p84)
    run = EncoderRun(loss=loss_name, quantized=quantized, latent_bits=params.bits(), elinks=params.elinks,
                     epochs_run=len(history["loss"]) + history["initial_epoch"], train_seconds=history["seconds"],
                     history=history, evaluation=evaluation)
    if loss_name == "emd_cnn":
        run.emd_cnn_on_reconstructions = loss_network_accuracy(frozen, test, recon, exact, label)
    return run


def loss_network_accuracy(frozen, test: np.ndarray, recon: np.ndarray, exact: np.ndarray, label: str) -> RelativeError:
    """The EMD-CNN against the exact EMD on the pairs it was a loss for: the trained encoder's
    own (module, reconstruction) pairs, which no held-out label set contains."""
    from .emd_cnn_train import predict_emd, relative_error_stats

    stats = relative_error_stats(predict_emd(frozen, test, judged_reconstruction(recon)[0]), exact)
    log.info("%s: EMD-CNN on its own reconstructions: relative error mean %+.4f, sigma %.4f (%s pairs)", label,
             stats["rel_mean"], stats["rel_sigma"], f"{stats['n_pairs']:,}")
    return RelativeError(**{k: stats[k] for k in ("n_pairs", "n_excluded_tiny", "rel_mean", "rel_sigma", "rel_median")})


def comparison_ratios(runs: dict[str, EncoderRun], main_loss: str = "emd_cnn") -> dict[str, float]:
    """The ratios the goals name: median main / baseline, and mean quantized / float."""
    med = {k: r.evaluation.overall.median for k, r in runs.items()}
    mean = {k: r.evaluation.overall.mean for k, r in runs.items()}
    ratios = {}
    if main_loss in med:
        for other in BASELINES:
            if other in med:
                ratios[f"median {main_loss} / {other}"] = med[main_loss] / med[other]
        if f"{main_loss} (float)" in mean:
            ratios[f"mean quantized / float ({main_loss})"] = mean[main_loss] / mean[f"{main_loss} (float)"]
    return ratios


def comparison_markdown(runs: dict[str, EncoderRun], ratios: dict[str, float]) -> str:
    """Markdown table of exact-EMD figures per loss, and the ratios."""
    first = next(iter(runs.values())).evaluation.by_occupancy
    occ_labels = [f"median occ {b.lo}-{b.hi}" for b in first]
    rows = []
    for name, r in runs.items():
        ov = r.evaluation.overall
        occ = [f"{b.median:.3f}" if b.n else "-" for b in r.evaluation.by_occupancy]
        rows.append([name, "yes" if r.quantized else "no", f"{ov.mean:.3f}", f"{ov.median:.3f}",
                     f"{ov.p16:.3f}", f"{ov.p84:.3f}", *occ])
    lines = markdown_table(["loss", "quantized", "mean EMD", "median", "16%", "84%", *occ_labels], rows)
    lines += ["", *(f"- {k}: {v:.3f}" for k, v in ratios.items())]
    return "\n".join(lines) + "\n"
