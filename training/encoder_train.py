"""Quantization-aware training of the ECON-T autoencoder and its exact-EMD evaluation.

Inputs: each module divided by 2**floor(log2(sum)) (the firmware's shift), laid out as the
8x8 image and quantized by the encoder's own input quantizer (so training, evaluation and
the firmware testbench see the same numbers). Targets: the unit-sum module image (the
decoder ends in a sigmoid; the module sum travels beside the latents).

Every reconstruction is judged by the exact EMD between input and reconstruction (both
unit-sum, hex metric), whatever loss trained it (training.evaluation).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ModelFileError
from econ_emd.base.artifacts import atomic_path
from econ_emd.base.geometry import calq_to_8x8, image8x8_to_calq
from econ_emd.base.normalization import sumlog2_normalize
from econ_emd.base.seeds import as_int, derive_seed
from econ_emd.base.testhooks import pause_for_test
from .params import EncoderParams

log = logging.getLogger("econ_emd")

ENCODER_FILE = "encoder.h5"
DECODER_FILE = "decoder.h5"
CHECKPOINT_FILE = "checkpoint.npz"


def encoder_inputs(charges: np.ndarray, encoder=None) -> np.ndarray:
    """(n, 8, 8, 1) float32 sumlog2-normalized images; quantized by the encoder's input
    quantizer when an encoder is given (exactly what its first layer outputs)."""
    x = calq_to_8x8(sumlog2_normalize(charges)).astype(np.float32)[..., None]
    if encoder is not None:
        q = input_quantizer(encoder)
        if q is not None:
            x = np.asarray(q(x), dtype=np.float32)
    return x


def input_quantizer(encoder):
    layer = encoder.get_layer("input_qa") if "input_qa" in [l.name for l in encoder.layers] else None
    return None if layer is None else layer.quantizer


def targets(charges: np.ndarray) -> np.ndarray:
    """(n, 8, 8, 1) float32 unit-sum images (dead pixels zero)."""
    c = np.asarray(charges, dtype=np.float64)
    return calq_to_8x8(c / c.sum(1, keepdims=True)).astype(np.float32)[..., None]


def build_models(params: EncoderParams):
    from econ_emd.models.econt import build_autoencoder, build_decoder, build_encoder

    enc = build_encoder(params.arch())
    dec = build_decoder()
    return enc, dec, build_autoencoder(enc, dec)


def train_autoencoder(train: np.ndarray, val: np.ndarray, params: EncoderParams, loss_fn,
                      seed: int, out_dir: str | Path | None = None, label: str = "encoder"):
    """Train encoder + decoder on raw charges with `loss_fn(target, recon)`, early-stopped
    on the validation loss (the best epoch's weights are kept). Returns (encoder, decoder,
    history dict).

    Resuming equals not stopping: every epoch runs on its own seed (from `seed` and the
    epoch), and with `out_dir` the whole training state is checkpointed after each epoch
    (weights, the optimizer's slots and step count, the early-stopping state, the history),
    so a run killed after epoch k and resumed from its checkpoint trains epochs k+1... exactly
    as an uninterrupted run does."""
    import tensorflow as tf

    from .emd_cnn_train import epoch_logger

    tf.keras.utils.set_random_seed(seed)
    enc, dec, ae = build_models(params)
    x, y = encoder_inputs(train), targets(train)
    vx, vy = encoder_inputs(val), targets(val)

    def mean_loss(t, p):
        return tf.reduce_mean(loss_fn(t, p))

    opt = tf.keras.optimizers.Adam(params.learning_rate)
    ae.compile(optimizer=opt, loss=mean_loss)
    opt.build(ae.trainable_variables)
    state = {"epoch": 0, "best": float("inf"), "wait": 0, "loss": [], "val_loss": []}
    best_weights = None
    ckpt = Path(out_dir) / CHECKPOINT_FILE if out_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state, best_weights = _restore(ckpt, ae, opt)
        log.info("%s: resuming after epoch %d from %s", label, state["epoch"], ckpt)
    initial_epoch = state["epoch"]
    logger = epoch_logger(params.epochs, label)
    t0 = time.perf_counter()
    while state["epoch"] < params.epochs and state["wait"] < params.patience:
        epoch = state["epoch"]
        tf.keras.utils.set_random_seed(as_int(derive_seed(seed, "encoder_epoch", epoch)))
        h = ae.fit(x, y, validation_data=(vx, vy), epochs=epoch + 1, initial_epoch=epoch,
                   batch_size=params.batch_size, callbacks=[logger], verbose=0, shuffle=True).history
        state["loss"].append(float(h["loss"][-1]))
        state["val_loss"].append(float(h["val_loss"][-1]))
        if state["val_loss"][-1] < state["best"]:
            state["best"], state["wait"], best_weights = state["val_loss"][-1], 0, ae.get_weights()
        else:
            state["wait"] += 1
        state["epoch"] = epoch + 1
        if ckpt is not None:
            _save(ckpt, ae, opt, state, best_weights)
        pause_for_test(f"{label}:{state['epoch']}")
    if best_weights is not None:
        ae.set_weights(best_weights)
    history = {"loss": state["loss"][initial_epoch:], "val_loss": state["val_loss"][initial_epoch:],
               "seconds": time.perf_counter() - t0, "initial_epoch": initial_epoch}
    return enc, dec, history


def _save(path: Path, ae, opt, state: dict, best_weights) -> None:
    """One file, written atomically: model weights, optimizer variables, best weights, state."""
    arrays = {f"w{i}": w for i, w in enumerate(ae.get_weights())}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(opt.variables)})
    if best_weights is not None:
        arrays.update({f"b{i}": w for i, w in enumerate(best_weights)})
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, state=np.array(json.dumps(state)), **arrays)


def _restore(path: Path, ae, opt) -> tuple[dict, list | None]:
    with np.load(path, allow_pickle=False) as z:
        state = json.loads(str(z["state"]))
        n_w, n_o = len(ae.get_weights()), len(opt.variables)
        if f"w{n_w - 1}" not in z or f"w{n_w}" in z or f"o{n_o - 1}" not in z:
            raise ModelFileError(f"{path}: a checkpoint of another model; delete it to start over")
        ae.set_weights([z[f"w{i}"] for i in range(n_w)])
        for i, v in enumerate(opt.variables):
            v.assign(z[f"o{i}"])
        best = [z[f"b{i}"] for i in range(n_w)] if "b0" in z else None
    return state, best


def clear_checkpoint(out_dir: str | Path) -> None:
    p = Path(out_dir) / CHECKPOINT_FILE
    if p.exists():
        p.unlink()


def reconstruct(encoder, decoder, charges: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(latents, reconstructions in CALQ order (n, 48))."""
    z = encoder.predict(encoder_inputs(charges), batch_size=batch_size, verbose=0)
    r = decoder.predict(z, batch_size=batch_size, verbose=0)
    return z, image8x8_to_calq(r).astype(np.float64)


def save_encoder(encoder, decoder, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    with atomic_path(out_dir / ENCODER_FILE, ".h5") as tmp:
        encoder.save(tmp, save_format="h5")
    with atomic_path(out_dir / DECODER_FILE, ".h5") as tmp:
        decoder.save(tmp, save_format="h5")


def load_encoder(path: str | Path):
    """A QKeras encoder from its `.h5` (or a folder holding encoder.h5); clear error otherwise."""
    import tensorflow as tf

    from econ_emd.models.econt import qkeras_custom_objects

    path = Path(path)
    if path.is_dir():
        path = path / ENCODER_FILE
    if not path.exists():
        raise ModelFileError(f"{path}: no encoder model file (train one with `econ-emd train-encoder`)")
    try:
        model = tf.keras.models.load_model(path, custom_objects=qkeras_custom_objects(), compile=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a loadable QKeras encoder ({str(exc).splitlines()[0]})") from None
    return model


def load_decoder(path: str | Path):
    import tensorflow as tf

    from econ_emd.models.econt import qkeras_custom_objects

    return tf.keras.models.load_model(Path(path), custom_objects=qkeras_custom_objects(), compile=False)
