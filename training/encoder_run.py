"""One encoder training, judged by exact EMD: the unit of the encoder stage, the loss
comparison, the equal-bandwidth comparison's encoders, the scan and the benchmarks, so
none of them can drift apart (`train_and_evaluate`, asked by a typed `TrainRequest`).
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.data.dataset import Dataset

from . import encoder_train as et
from .evaluation import Evaluation, evaluate_reconstruction, judged_reconstruction
from .losses import NEEDS_EMD_CNN, get_loss
from .params import EncoderParams

log = logging.getLogger("econ_emd")

RUN_FILE = "run.json"
EMD_FILE = "emd.npy"
SETTINGS_FILE = "settings.json"


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
    n_links: int
    epochs_run: int
    train_seconds: float
    evaluation: Evaluation
    history: dict = field(default_factory=dict)
    emd_cnn_on_reconstructions: RelativeError | None = None
    seed: int | None = None
    learning_rate: float | None = None
    split: str = "test"
    #: the asic kind: the same modules judged with the float decoder the quantized one
    #: started from (the quantized decoder's cost)
    float_decoder_evaluation: Evaluation | None = None

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch whose weights were kept (lowest validation loss)."""
        val = self.history.get("val_loss") or []
        return int(np.argmin(val)) + 1 + int(self.history.get("initial_epoch", 0)) if val else None

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("loss", "quantized", "latent_bits", "n_links", "epochs_run",
                                           "train_seconds", "history", "seed", "learning_rate", "split")}
        d["evaluation"] = self.evaluation.to_json()
        if self.emd_cnn_on_reconstructions is not None:
            d["emd_cnn_on_reconstructions"] = vars(self.emd_cnn_on_reconstructions).copy()
        if self.float_decoder_evaluation is not None:
            d["float_decoder_evaluation"] = self.float_decoder_evaluation.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EncoderRun":
        own = d.get("emd_cnn_on_reconstructions")
        return cls(loss=d["loss"], quantized=d["quantized"], latent_bits=d["latent_bits"], n_links=d["n_links"],
                   epochs_run=d["epochs_run"], train_seconds=d["train_seconds"], history=d.get("history", {}),
                   evaluation=Evaluation.from_json(d["evaluation"]),
                   emd_cnn_on_reconstructions=RelativeError(**own) if own else None,
                   seed=d.get("seed"), learning_rate=d.get("learning_rate"), split=d.get("split", "test"),
                   float_decoder_evaluation=Evaluation.from_json(d["float_decoder_evaluation"])
                   if d.get("float_decoder_evaluation") else None)


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """One encoder training as asked for: everything its result depends on besides the
    data and the frozen EMD-CNN (the stage that trains it covers those by its hash).

    `settings()` is what a finished run records (`settings.json`); a finished run stands for
    a request, in its own folder or another stage's, exactly when the two are equal
    (`finished_run`): the one rule of reuse, loss and quantization included."""

    params: EncoderParams
    loss: str
    seed: int
    split: str = "test"

    def settings(self) -> dict:
        """An unquantized request's settings are its float twin's (the settings it does not
        read at their defaults), so every equal float training is one request."""
        params = self.params if self.params.quantized else self.params.float_twin()
        return {"encoder": params.model_dump(mode="json"), "loss": self.loss, "seed": int(self.seed),
                "split": self.split}

    def float_twin(self) -> "TrainRequest":
        """The training of the unquantized twin (the asic kind's float start; the loss
        comparison's float row): one request for every link count and quantization."""
        return TrainRequest(params=self.params.float_twin(), loss=self.loss, seed=self.seed, split=self.split)


def _recorded_settings(folder: Path) -> dict | None:
    from econ_emd.base.artifacts import read_json

    try:
        return read_json(folder / SETTINGS_FILE) if (folder / SETTINGS_FILE).exists() else None
    except (OSError, ValueError):
        return None


def finished_run(folder: str | Path, request: TrainRequest) -> EncoderRun | None:
    """The finished run in `folder` if it was made for `request` (same settings) and its
    result, exact EMD and models are all there; else None."""
    from econ_emd.base.artifacts import read_json

    folder = Path(folder)
    if _recorded_settings(folder) != request.settings():
        return None
    if not all((folder / f).exists() for f in (RUN_FILE, EMD_FILE, et.ENCODER_FILE)):
        return None
    try:
        return EncoderRun.from_json(read_json(folder / RUN_FILE))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def copy_run(src: str | Path, dst: str | Path) -> None:
    """Copy a finished run's models, result, exact EMD and settings into `dst` (a reused
    run stands in its new folder exactly as if it had been trained there)."""
    import shutil

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in (et.ENCODER_FILE, et.DECODER_FILE, EMD_FILE, RUN_FILE, SETTINGS_FILE):
        shutil.copy2(src / f, dst / f)


def train_and_evaluate(request: TrainRequest, *, data: Dataset, out: Path | None, frozen, runner,
                       label: str, reuse_from: Sequence[Path] = ()) -> EncoderRun:
    """Train one autoencoder as `request` says (resuming from a checkpoint in `out`), save
    it into `out`, evaluate it by exact EMD on the `request.split` modules (test; the
    learning-rate search judges on val).

    With `out`, a finished run leaves its result (`run.json`) and the exact EMD of every
    judged module (`emd.npy`, for the paired statistics) beside its models, and a rerun
    that finds them complete for the same request returns them without training again
    (`finished_run`); so does a finished run for the same request in one of the
    `reuse_from` folders (another stage's) or in their float starts, copied into `out`.
    `settings.json` records the request; a folder holding another request's work is
    cleared first, never resumed or reused.

    The asic kind with asic_start float first trains (or reuses) its float twin, a training
    of its own in `out`/float_start (so the loss comparison's float row and the other link
    counts' float starts, equal requests, reuse it), and starts from it folded into the
    registers."""
    return _train_and_evaluate(request, data=data, out=out, frozen=frozen, runner=runner, label=label,
                               reuse_from=reuse_from)[0]


def reused_run(request: TrainRequest, out: Path, reuse_from: Sequence[Path], label: str) -> EncoderRun | None:
    """The finished run for `request` in `out`, or copied into `out` from a `reuse_from`
    folder or its float start; else None (nothing changed)."""
    out = Path(out)
    done = finished_run(out, request)
    if done is not None:
        log.info("%s: finished earlier, reused", label)
        return done
    for folder in (f for r in reuse_from for f in (Path(r), Path(r) / et.FLOAT_START_DIR)):
        done = finished_run(folder, request)
        if done is not None:
            copy_run(folder, out)
            et.clear_checkpoint(out)
            log.info("%s: the same training as %s, reused", label, folder)
            return done
    return None


def _train_and_evaluate(request: TrainRequest, *, data: Dataset, out: Path | None, frozen, runner, label: str,
                        reuse_from: Sequence[Path]) -> tuple[EncoderRun, tuple | None]:
    """`train_and_evaluate`, and the trained (encoder, decoder) (None when a finished run
    was reused: its models are in `out`)."""
    from econ_emd.base.artifacts import atomic_save_npy, atomic_write_json

    params, loss_name, seed, split = request.params, request.loss, request.seed, request.split
    if out is not None:
        out = Path(out)
        if _recorded_settings(out) != request.settings():
            if any((out / f).exists() for f in (RUN_FILE, EMD_FILE, et.CHECKPOINT_FILE)):
                log.info("%s: the folder holds a run with other settings; starting over", label)
            for f in (RUN_FILE, EMD_FILE):
                (out / f).unlink(missing_ok=True)
            if out.is_dir():
                et.clear_checkpoint(out)
                if not params.starts_from_float_twin():
                    shutil.rmtree(out / et.FLOAT_START_DIR, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / SETTINGS_FILE, request.settings())
        done = reused_run(request, out, reuse_from, label)
        if done is not None:
            return done, None
    train = data["train"][: params.max_train_modules]
    judged = data[split][: params.max_eval_modules]
    start = None
    if params.starts_from_float_twin():
        twin_out = out / et.FLOAT_START_DIR if out is not None else None
        twin, models = _train_and_evaluate(request.float_twin(), data=data, out=twin_out, frozen=frozen,
                                           runner=runner, label=f"{label} (float start)", reuse_from=reuse_from)
        if models is None:
            models = et.load_encoder(twin_out), et.load_decoder(twin_out / et.DECODER_FILE)
        start = et.fold_float_start(*models, train, seed, twin.history, label)
    loss_fn = get_loss(loss_name, frozen, params)
    trained = et.train_autoencoder(train, data["val"], params, loss_fn, seed, out, label, start)
    enc, dec, history = trained.encoder, trained.decoder, trained.history
    if params.kind == "hgq" and params.quantized:
        from econ_emd.models.hgq_encoder import freeze

        enc, history["ebops"] = freeze(enc, et.encoder_inputs(train), params.hgq_arch())
        log.info("%s: resource-aware encoder frozen: %.0f EBOPs", label, history["ebops"])
    if out is not None:
        et.save_encoder(enc, dec, out)
    _, recon = et.reconstruct(enc, dec, judged)
    evaluation, exact = evaluate_reconstruction(judged, recon, runner)
    ov = evaluation.overall
    log.info("%s: exact EMD on %s %s modules: mean %.3f, median %.3f (16-84%%: %.3f-%.3f)", label,
             f"{ov.n:,}", split, ov.mean, ov.median, ov.p16, ov.p84)
    run = EncoderRun(loss=loss_name, quantized=params.quantized, latent_bits=params.bits(), n_links=params.links,
                     epochs_run=len(history["loss"]) + history["initial_epoch"], train_seconds=history["seconds"],
                     history=history, evaluation=evaluation, seed=seed, learning_rate=params.learning_rate,
                     split=split)
    if trained.float_decoder is not None:
        _, float_recon = et.reconstruct(enc, trained.float_decoder, judged)
        run.float_decoder_evaluation, _ = evaluate_reconstruction(judged, float_recon, runner)
        log.info("%s: with the float decoder instead: mean %.3f, median %.3f", label,
                 run.float_decoder_evaluation.overall.mean, run.float_decoder_evaluation.overall.median)
    if NEEDS_EMD_CNN & {loss_name} and split == "test":
        run.emd_cnn_on_reconstructions = loss_network_accuracy(frozen, judged, recon, exact, label)
    if out is not None:
        atomic_save_npy(out / EMD_FILE, exact)
        atomic_write_json(out / RUN_FILE, run.to_json())
        et.clear_checkpoint(out)
    return run, (enc, dec)


def loss_network_accuracy(frozen, test: np.ndarray, recon: np.ndarray, exact: np.ndarray, label: str) -> RelativeError:
    """The EMD-CNN against the exact EMD on the pairs it was a loss for: the trained encoder's
    own (module, reconstruction) pairs, which no held-out label set contains."""
    from .emd_cnn_train import predict_emd, relative_error_stats

    stats = relative_error_stats(predict_emd(frozen, test, judged_reconstruction(recon)[0]), exact)
    log.info("%s: EMD-CNN on its own reconstructions: relative error mean %+.4f, sigma %.4f (%s pairs)", label,
             stats["rel_mean"], stats["rel_sigma"], f"{stats['n_pairs']:,}")
    return RelativeError(**{k: stats[k] for k in ("n_pairs", "n_excluded_tiny", "rel_mean", "rel_sigma", "rel_median")})


