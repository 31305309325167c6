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
from econ_emd.base.artifacts import atomic_path, atomic_save_model
from econ_emd.geometry import calq_to_8x8, image8x8_to_calq
from econ_emd.econt.normalization import sumlog2_normalize
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
    """The encoder's input quantizer as a callable: QKeras' input_qa, or a proxy model's
    first FixedPointQuantizer (a resource-aware HGQ encoder); None if it has none."""
    names = [layer.name for layer in encoder.layers]
    if "input_qa" in names:
        return encoder.get_layer("input_qa").quantizer
    first = encoder.layers[1] if len(encoder.layers) > 1 else None
    if first is not None and type(first).__name__ == "FixedPointQuantizer":
        return lambda x: first(x, training=False)
    return None


def targets(charges: np.ndarray) -> np.ndarray:
    """(n, 8, 8, 1) float32 unit-sum images (dead pixels zero)."""
    c = np.asarray(charges, dtype=np.float64)
    return calq_to_8x8(c / c.sum(1, keepdims=True)).astype(np.float32)[..., None]


def build_models(params: EncoderParams):
    from econ_emd.models.econt import build_autoencoder, build_decoder, build_encoder

    if params.kind == "hgq" and params.quantized:
        from econ_emd.models.hgq_encoder import build_hgq_encoder, latent_max

        arch = params.hgq_arch()
        enc, dec = build_hgq_encoder(arch), build_decoder()
        return enc, dec, build_autoencoder(enc, dec, latent_max(arch))
    enc = build_encoder(params.arch())
    dec = build_decoder()
    return enc, dec, build_autoencoder(enc, dec)


def epoch_orders(n: int, seed: int, first: int, last: int) -> np.ndarray:
    """(last - first, n): the order of the training modules in each epoch, each epoch's own
    permutation from `seed` and the epoch number, so epoch k is the same whether or not the
    run stopped before it."""
    return np.stack([np.random.default_rng(derive_seed(seed, "encoder_epoch", e)).permutation(n)
                     for e in range(first, last)]) if last > first else np.zeros((0, n), np.int64)


def train_autoencoder(train: np.ndarray, val: np.ndarray, params: EncoderParams, loss_fn,
                      seed: int, out_dir: str | Path | None = None, label: str = "encoder"):
    """Train encoder + decoder on raw charges with `loss_fn(target, recon)`, early-stopped
    on the validation loss (the best epoch's weights are kept). Returns (encoder, decoder,
    history dict).

    Resuming equals not stopping: every epoch visits the modules in its own seeded order
    (`epoch_orders`), and with `out_dir` the whole training state is checkpointed after each
    epoch (weights, the optimizer's slots and step count, the early-stopping state, the
    history), so a run killed after epoch k and resumed from its checkpoint trains epochs
    k+1... exactly as an uninterrupted run does. One Keras `fit` runs all epochs over one
    stream of batches (a `fit` per epoch cost a second or more per epoch)."""
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
    best = {"weights": None}
    ckpt = Path(out_dir) / CHECKPOINT_FILE if out_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state, best["weights"] = _restore(ckpt, ae, opt)
        log.info("%s: resuming after epoch %d from %s", label, state["epoch"], ckpt)
    initial_epoch = state["epoch"]
    t0 = time.perf_counter()
    if state["epoch"] < params.epochs and state["wait"] < params.patience:
        n, bs = len(x), params.batch_size
        orders = epoch_orders(n, seed, initial_epoch, params.epochs)
        xs, ys = tf.constant(x), tf.constant(y)
        stream = (tf.data.Dataset.from_tensor_slices(orders)
                  .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(bs))
                  .map(lambda idx: (tf.gather(xs, idx), tf.gather(ys, idx)))
                  .prefetch(2))

        class _State(tf.keras.callbacks.Callback):
            """Early stopping, best weights, the checkpoint and the test pause point."""

            def on_epoch_end(self, epoch, logs=None):
                state["loss"].append(float(logs["loss"]))
                state["val_loss"].append(float(logs["val_loss"]))
                if state["val_loss"][-1] < state["best"]:
                    state["best"], state["wait"], best["weights"] = state["val_loss"][-1], 0, ae.get_weights()
                else:
                    state["wait"] += 1
                state["epoch"] = epoch + 1
                if ckpt is not None:
                    _save(ckpt, ae, opt, state, best["weights"])
                pause_for_test(f"{label}:{state['epoch']}")
                if state["wait"] >= params.patience:
                    self.model.stop_training = True

        extra = []
        if params.kind == "hgq" and params.quantized:
            from econ_emd.models.hgq_encoder import training_callbacks

            extra = training_callbacks()
        ae.fit(stream, validation_data=(vx, vy), epochs=params.epochs, initial_epoch=initial_epoch,
               steps_per_epoch=int(np.ceil(n / bs)), callbacks=[*extra, _State(), epoch_logger(params.epochs, label)],
               verbose=0, validation_batch_size=4096)
    if best["weights"] is not None:
        ae.set_weights(best["weights"])
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
    atomic_save_model(encoder, out_dir / ENCODER_FILE)
    atomic_save_model(decoder, out_dir / DECODER_FILE)


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
