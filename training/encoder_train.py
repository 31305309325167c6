"""Quantization-aware training of the ECON-T autoencoder and its exact-EMD evaluation.

Inputs: each module divided by 2**floor(log2(sum)) (the firmware's shift), laid out as the
8x8 image and quantized by the encoder's own input quantizer (so training, evaluation and
the firmware testbench see the same numbers). Targets: the unit-sum module image (the
decoder ends in a sigmoid; the module sum travels beside the latents).

Every reconstruction is judged by the exact EMD between input and reconstruction (both
unit-sum, hex metric), whatever loss trained it (training.evaluation).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ModelFileError
from econ_emd.base.artifacts import atomic_path, atomic_write_json
from econ_emd.base.geometry import calq_to_8x8, image8x8_to_calq
from econ_emd.base.normalization import sumlog2_normalize
from .params import EncoderParams

log = logging.getLogger("econ_emd")

ENCODER_FILE = "encoder.h5"
DECODER_FILE = "decoder.h5"
CHECKPOINT_FILE = "checkpoint.weights.h5"


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
    """Train encoder + decoder on raw charges with `loss_fn(target, recon)`; resume from a
    checkpoint in out_dir if one exists. Returns (encoder, decoder, history dict)."""
    import tensorflow as tf

    from .emd_cnn_train import epoch_logger

    tf.keras.utils.set_random_seed(seed)
    enc, dec, ae = build_models(params)
    x, y = encoder_inputs(train), targets(train)
    vx, vy = encoder_inputs(val), targets(val)

    def mean_loss(t, p):
        return tf.reduce_mean(loss_fn(t, p))

    ae.compile(optimizer=tf.keras.optimizers.Adam(params.learning_rate), loss=mean_loss)
    callbacks = [tf.keras.callbacks.EarlyStopping(patience=params.patience, restore_best_weights=True),
                 epoch_logger(params.epochs, label)]
    initial_epoch = 0
    if out_dir is not None:
        out_dir = Path(out_dir)
        ckpt = out_dir / CHECKPOINT_FILE
        state = out_dir / "checkpoint.json"
        if ckpt.exists() and state.exists():
            import json

            ae.load_weights(ckpt)
            initial_epoch = int(json.loads(state.read_text())["epoch"])
            log.info("%s: resuming after epoch %d from %s", label, initial_epoch, ckpt)
        callbacks.append(_checkpointer(ckpt, state))
    t0 = time.perf_counter()
    hist = ae.fit(x, y, validation_data=(vx, vy), epochs=params.epochs, initial_epoch=initial_epoch,
                  batch_size=params.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["seconds"] = time.perf_counter() - t0
    history["initial_epoch"] = initial_epoch
    return enc, dec, history


def _checkpointer(weights_path: Path, state_path: Path):
    """Saves the autoencoder weights and the epoch after every epoch (atomically)."""
    import tensorflow as tf

    class _Cb(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with atomic_path(weights_path, ".weights.h5") as tmp:
                self.model.save_weights(tmp)
            atomic_write_json(state_path, {"epoch": epoch + 1})

    return _Cb()


def clear_checkpoint(out_dir: str | Path) -> None:
    for name in (CHECKPOINT_FILE, "checkpoint.json"):
        p = Path(out_dir) / name
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
