"""Quantization-aware training of the ECON-T autoencoder and its exact-EMD evaluation.

Inputs: each module divided by 2**floor(log2(sum)) (the firmware's shift), laid out as the
8x8 image and quantized by the encoder's own input quantizer (so training, evaluation and
the firmware testbench see the same numbers). Targets: the unit-sum module image (the
decoder ends in a sigmoid; the module sum travels beside the latents).

The encoder in the ASIC's arithmetic (kind asic, models.asic_encoder) takes the converter's
image of the integer CALQ, floor(CALQ 2^7 / 2^floor(log2 sum)) / 2^7, exactly as the ASIC
computes it; its decoder is dense and reads the packet's module-sum code beside the
latents. It starts from its float twin folded into the registers' ranges (`fold_float_start`;
the twin is a training of its own, encoder_run.train_and_evaluate), trains with a float decoder, then the quantized decoder is trained on the encoder's
transmitted latents (`quantized_decoder`).

Every reconstruction is judged by the exact EMD between input and reconstruction (both
unit-sum, hex metric), whatever loss trained it (training.evaluation).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
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
from .rebuild import integer_calq
from .params import EncoderParams

log = logging.getLogger("econ_emd")

ENCODER_FILE = "encoder.h5"
DECODER_FILE = "decoder.h5"
CHECKPOINT_FILE = "checkpoint.npz"


def encoder_inputs(charges: np.ndarray, encoder=None) -> np.ndarray:
    """(n, 8, 8, 1) float32 sumlog2-normalized images; quantized by the encoder's input
    quantizer when an encoder is given (exactly what its first layer outputs). An encoder
    in the ASIC's arithmetic takes the converter's images of the integer CALQ instead."""
    if encoder is not None and _is_asic(encoder):
        from econ_emd.models.asic_encoder import encoder_image

        return encoder_image(integer_calq(charges))
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


def _is_asic(encoder) -> bool:
    from econ_emd.models.asic_encoder import is_asic_encoder

    return is_asic_encoder(encoder)


def autoencoder_inputs(charges: np.ndarray, params: EncoderParams):
    """What the training autoencoder of `params` takes: the encoder's images, and for the
    asic kind beside them the module-sum feature its decoder reads (the quantized encoder's
    images are the converter's; its float twin's the float sumlog2 images)."""
    if params.kind != "asic":
        return encoder_inputs(charges)
    from econ_emd.models.asic_encoder import encoder_image, sum_feature

    calq = integer_calq(charges)
    return (encoder_image(calq) if params.quantized else encoder_inputs(charges)), sum_feature(calq)


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
    if params.kind == "asic":
        from econ_emd.models.asic_encoder import build_asic_encoder, build_autoencoder_with_sum, build_dense_decoder

        # the decoder trained with the encoder is the float one (`quantized_decoder` follows)
        arch = params.asic_arch(quantized=False)
        enc = build_asic_encoder(arch) if params.quantized else build_encoder(params.arch(quantized=False))
        dec = build_dense_decoder(arch.decoder)
        return enc, dec, build_autoencoder_with_sum(enc, dec)
    enc = build_encoder(params.arch())
    dec = build_decoder()
    return enc, dec, build_autoencoder(enc, dec)


def epoch_orders(n: int, seed: int, first: int, last: int) -> np.ndarray:
    """(last - first, n): the order of the training modules in each epoch, each epoch's own
    permutation from `seed` and the epoch number, so epoch k is the same whether or not the
    run stopped before it."""
    return np.stack([np.random.default_rng(derive_seed(seed, "encoder_epoch", e)).permutation(n)
                     for e in range(first, last)]) if last > first else np.zeros((0, n), np.int64)


@dataclass
class Trained:
    """A trained autoencoder: its encoder, its decoder (the quantized one for the asic
    kind), the history, and for the asic kind the float decoder it started from (the
    reference the quantized decoder is judged against)."""

    encoder: object
    decoder: object
    history: dict
    float_decoder: object | None = None


def train_autoencoder(train: np.ndarray, val: np.ndarray, params: EncoderParams, loss_fn,
                      seed: int, out_dir: str | Path | None = None, label: str = "encoder",
                      start: FloatStart | None = None) -> Trained:
    """Train encoder + decoder on raw charges with `loss_fn(target, recon)`, early-stopped
    on the validation loss (the best epoch's weights are kept).

    Resuming equals not stopping: every epoch visits the modules in its own seeded order
    (`epoch_orders`), and with `out_dir` the whole training state is checkpointed after each
    epoch (weights, the optimizer's slots and step count, the early-stopping state, the
    history), so a run killed after epoch k and resumed from its checkpoint trains epochs
    k+1... exactly as an uninterrupted run does. One Keras `fit` runs all epochs over one
    stream of batches (a `fit` per epoch cost a second or more per epoch).

    An asic encoder with `asic_start` float starts from `start`, its float twin folded into
    the registers (`fold_float_start`)."""
    import tensorflow as tf

    from .emd_cnn_train import epoch_logger

    if (start is not None) != params.starts_from_float_twin():
        raise ValueError("a folded float start is given exactly to the asic encoder with asic_start float")
    tf.keras.utils.set_random_seed(seed)
    enc, dec, ae = build_models(params)
    if start is not None:
        enc.get_layer("conv2d").set_weights(start.folded.encoder_weights[:2])
        enc.get_layer("dense").set_weights(start.folded.encoder_weights[2:])
        dec.set_weights(start.folded.decoder_weights)
    x, y = autoencoder_inputs(train, params), targets(train)
    vx, vy = autoencoder_inputs(val, params), targets(val)

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
        n, bs = len(y), params.batch_size
        stream = _batches(x, y, epoch_orders(n, seed, initial_epoch, params.epochs), bs)

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
    if start is not None:
        history["float_start"] = start.history
    float_decoder = None
    if params.kind == "asic" and params.quantized:
        float_decoder = dec
        dec, history["decoder"] = quantized_decoder(enc, dec, (x, y), (vx, vy), params, loss_fn, seed, label)
        history["seconds"] = time.perf_counter() - t0
    if start is not None:
        history["seconds"] += start.history["seconds"]
    return Trained(enc, dec, history, float_decoder)


#: the folder (inside an asic training's) of its float twin: a finished training of its own
FLOAT_START_DIR = "float_start"


@dataclass
class FloatStart:
    """The asic encoder's starting point: its float twin's weights folded into the
    registers' ranges, and the twin's training history."""

    folded: object
    history: dict


def fold_float_start(float_encoder, float_decoder, train: np.ndarray, seed: int, history: dict,
                     label: str) -> FloatStart:
    """The trained float twin (the same request, quantized off: the published float encoder
    on float images, the same dense decoder) folded into the registers' ranges on the
    converter images of the training modules (`fold_into_registers`; the dead latents'
    revival drawn from `seed`)."""
    from econ_emd.models.asic_encoder import encoder_image, fold_into_registers

    folded = fold_into_registers(float_encoder, float_decoder, encoder_image(integer_calq(train)),
                                 seed=as_int(derive_seed(seed, "asic_revive")))
    log.info("%s: float start folded into the registers: filter scales %s, latent scales %s, %d dead latents "
             "revived", label, np.round(folded.filter_scales, 2).tolist(), np.round(folded.latent_scales, 2).tolist(),
             int(folded.revived.sum()))
    return FloatStart(folded, {k: history[k] for k in ("loss", "val_loss", "seconds", "initial_epoch")})


def _batches(x, y: np.ndarray, orders: np.ndarray, batch_size: int):
    """One stream of batches over every epoch's order; `x` an array or a tuple of them."""
    import tensorflow as tf

    xs, ys = tf.nest.map_structure(tf.constant, x), tf.constant(y)
    return (tf.data.Dataset.from_tensor_slices(orders)
            .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
            .map(lambda idx: (tf.nest.map_structure(lambda a: tf.gather(a, idx), xs), tf.gather(ys, idx)))
            .prefetch(2))


#: the quantized decoder's learning rate, as a fraction of the encoder's: it starts from
#: the float decoder's weights, which a full step would throw away
DECODER_LR_FRACTION = 0.1


def quantized_decoder(encoder, float_decoder, train: tuple, val: tuple, params: EncoderParams, loss_fn, seed: int,
                      label: str):
    """The asic encoder's quantized decoder: the float decoder trained with the encoder,
    its weights folded into the quantizers' ranges (`fold_decoder_into_ranges`), then
    `asic_decoder_epochs` epochs of quantization-aware training on the encoder's
    transmitted latents (the encoder fixed), the epoch with the lowest validation loss
    kept. Returns (decoder, history: the float decoder's, the quantized decoder's before
    and after, validation losses).

    Deterministic from `seed` and the encoder (its own epoch orders, no other randomness),
    so a run resumed after the encoder's last epoch makes the same decoder."""
    import tensorflow as tf

    from econ_emd.models.asic_encoder import build_dense_decoder, decoder_inputs, fold_decoder_into_ranges
    from econ_emd.models.layers import ArrangeTCs

    def as_images(decoder):
        model = tf.keras.Model(decoder.input, ArrangeTCs("8x8")(decoder.output))
        model.compile(optimizer=tf.keras.optimizers.Adam(params.learning_rate * DECODER_LR_FRACTION),
                      loss=lambda t, p: tf.reduce_mean(loss_fn(t, p)))
        return model

    (x, y), (vx, vy) = train, val
    d_in = decoder_inputs(encoder.predict(x[0], batch_size=4096, verbose=0), x[1])
    vd_in = decoder_inputs(encoder.predict(vx[0], batch_size=4096, verbose=0), vx[1])
    arch = params.asic_arch().decoder
    decoder = build_dense_decoder(arch)
    decoder.set_weights(fold_decoder_into_ranges(float_decoder, d_in, arch))
    model = as_images(decoder)

    def val_loss(m) -> float:
        return float(m.evaluate(vd_in, vy, batch_size=4096, verbose=0))

    history = {"float_val_loss": val_loss(as_images(float_decoder)), "quantized_val_loss_before": val_loss(model),
               "loss": [], "val_loss": []}
    best = {"loss": history["quantized_val_loss_before"], "weights": decoder.get_weights()}
    if params.asic_decoder_epochs:
        class _Best(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                history["loss"].append(float(logs["loss"]))
                history["val_loss"].append(float(logs["val_loss"]))
                if history["val_loss"][-1] < best["loss"]:
                    best["loss"], best["weights"] = history["val_loss"][-1], decoder.get_weights()

        n, bs = len(y), params.batch_size
        # the epoch numbers after the encoder's: orders of their own, from the same seed
        orders = epoch_orders(n, seed, params.epochs, params.epochs + params.asic_decoder_epochs)
        model.fit(_batches(d_in, y, orders, bs), validation_data=(vd_in, vy), epochs=params.asic_decoder_epochs,
                  steps_per_epoch=int(np.ceil(n / bs)), callbacks=[_Best()], verbose=0, validation_batch_size=4096)
    decoder.set_weights(best["weights"])
    history["quantized_val_loss"] = best["loss"]
    log.info("%s: quantized decoder, validation loss %.4g (float decoder %.4g, quantized before training %.4g)",
             label, best["loss"], history["float_val_loss"], history["quantized_val_loss_before"])
    return decoder, history


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
    """Remove a finished training's checkpoint (a float start's folder is a training of its
    own: its run clears its checkpoint when it finishes)."""
    (Path(out_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)


def reconstruct(encoder, decoder, charges: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(latents, reconstructions in CALQ order (n, 48)); a decoder that reads the module
    sum (the asic encoder's) gets the packet's sum code beside the latents."""
    from econ_emd.models.asic_encoder import takes_module_sum

    z = encoder.predict(encoder_inputs(charges, encoder if _is_asic(encoder) else None), batch_size=batch_size,
                        verbose=0)
    if takes_module_sum(decoder):
        pattern = decoder.predict(decoder_inputs_of(z, charges), batch_size=batch_size, verbose=0)
        return z, pattern.astype(np.float64)
    r = decoder.predict(z, batch_size=batch_size, verbose=0)
    return z, image8x8_to_calq(r).astype(np.float64)


def decoder_inputs_of(latents: np.ndarray, charges: np.ndarray) -> np.ndarray:
    """(n, 17) what the asic encoder's decoder reads: the latents and the module-sum code."""
    from econ_emd.models.asic_encoder import decoder_inputs, sum_feature

    return decoder_inputs(latents, sum_feature(integer_calq(charges)))


def save_encoder(encoder, decoder, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    atomic_save_model(encoder, out_dir / ENCODER_FILE)
    atomic_save_model(decoder, out_dir / DECODER_FILE)


def load_encoder(path: str | Path):
    """A QKeras encoder from its `.h5` (or a folder holding encoder.h5); clear error otherwise."""
    import tensorflow as tf

    from econ_emd.models.saved import custom_objects

    path = Path(path)
    if path.is_dir():
        path = path / ENCODER_FILE
    if not path.exists():
        raise ModelFileError(f"{path}: no encoder model file (train one with `econ-emd train-encoder`)")
    try:
        model = tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a loadable QKeras encoder ({str(exc).splitlines()[0]})") from None
    return model


def load_decoder(path: str | Path):
    import tensorflow as tf

    from econ_emd.models.saved import custom_objects

    return tf.keras.models.load_model(Path(path), custom_objects=custom_objects(), compile=False)


@dataclass
class FirmwareForm:
    """What the firmware flow converts for a trained encoder, and its check data: the model
    (the encoder itself, or for an encoder in the ASIC's arithmetic the ECON-T block's QKeras
    form holding its register weights), the product cuts that form needs, the modules
    exactly as the encoder sees them, and the outputs the firmware must equal (for the asic
    kind the block's 9-bit latents, `econt.autoencoder.encode`, whose top bits are checked
    equal to the trained encoder's transmitted latents here)."""

    model: object
    product_cuts: dict | None
    inputs: np.ndarray
    expected: np.ndarray


def firmware_model(trained) -> tuple[object, dict | None]:
    """(the model the firmware flow converts, its product cuts): the encoder itself, or the
    ECON-T block's QKeras form holding an asic encoder's register weights."""
    if not _is_asic(trained):
        return trained, None
    from econ_emd.models.asic_encoder import PRODUCT_CUTS, asic_weights, firmware_encoder

    return firmware_encoder(asic_weights(trained)), PRODUCT_CUTS


def firmware_form(trained, modules: np.ndarray) -> FirmwareForm:
    """The firmware form of `trained` on `modules` (raw charges); `ValueError` if the asic
    encoder's transmitted latents are not the block's top bits (they always are when the
    model is what it claims: tests/test_asic_encoder.py)."""
    x = encoder_inputs(modules, trained)
    if not _is_asic(trained):
        return FirmwareForm(trained, None, x, trained.predict(x, batch_size=4096, verbose=0))
    from econ_emd.econt import autoencoder as ae
    from econ_emd.geometry import ae_slots_from_calq
    from econ_emd.models.asic_encoder import LATENT_LSB, asic_weights, transmitted_bits, transmitted_integers

    model, cuts = firmware_model(trained)
    latents = ae.encode(ae_slots_from_calq(integer_calq(modules)), asic_weights(trained))
    bits = transmitted_bits(trained)
    sent = transmitted_integers(trained.predict(x, batch_size=4096, verbose=0), bits)
    differ = (sent != latents >> (ae.LATENT_BITS - bits)).any(axis=1)
    if differ.any():
        raise ValueError(f"the ECON-T block's latents differ from the trained encoder's transmitted latents on "
                         f"{int(differ.sum())} of {len(x)} modules")
    return FirmwareForm(model, cuts, x, (latents * LATENT_LSB).astype(np.float32))
