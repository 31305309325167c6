"""Training, freezing, saving, loading and evaluating the EMD-CNN.

Training data are the labelled pairs of the `label` stage (random module pairs and
(module, reconstruction-like) pairs), whose splits are disjoint by module. The hexagon's
120-degree rotation maps TC i to TC (i + 16) mod 48 (an isometry of the TC layout, checked
in the tests), so every training pair is also used rotated twice: the EMD is unchanged.

Saved artifacts: `emd_cnn.h5` (Keras 2 HDF5, the whole model) and `emd_cnn.json` (the
sidecar: architecture, geometry hash, training config, metrics). `load_frozen_emd_cnn`
returns a model with no trainable weights, usable inside another model's loss, from either
our files or an external EMD-CNN in the published format (two 4x4x3 inputs).
"""
from __future__ import annotations

import json
import logging
import time
import weakref
from dataclasses import asdict
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ModelFileError
from econ_emd.base.artifacts import atomic_save_model, atomic_write_json, save_figure
from econ_emd.geometry import geometry_hash
from econ_emd.data.labels import PairSet
from .params import EmdCnnParams

log = logging.getLogger("econ_emd")

MODEL_FILE = "emd_cnn.h5"
SIDECAR_FILE = "emd_cnn.json"
#: labels below this are treated as this value in the log loss (identical pairs give 0)
LOG_FLOOR = 1e-3


def rotations(x: np.ndarray, k: int) -> np.ndarray:
    """Module(s) rotated by k x 120 degrees: CALQ i -> (i + 16k) mod 48."""
    return np.roll(x, 16 * k, axis=-1)


def unit_sum32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / x.sum(-1, keepdims=True)).astype(np.float32)


def training_arrays(pairs: dict[tuple[str, str], PairSet], split: str, kinds: tuple[str, ...],
                    augment: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.concatenate([pairs[k, split].a for k in kinds])
    b = np.concatenate([pairs[k, split].b for k in kinds])
    y = np.concatenate([pairs[k, split].emd for k in kinds])
    if augment:
        a = np.concatenate([rotations(a, k) for k in range(3)])
        b = np.concatenate([rotations(b, k) for k in range(3)])
        y = np.tile(y, 3)
    return unit_sum32(a), unit_sum32(b), y.astype(np.float32)


def make_loss(output: str):
    import tensorflow as tf

    if output == "linear":
        return tf.keras.losses.MeanSquaredError()

    def log_mse(y_true, y_pred):
        t = tf.math.log(tf.maximum(y_true, LOG_FLOOR))
        p = tf.math.log(tf.maximum(y_pred, LOG_FLOOR))
        return tf.reduce_mean(tf.square(p - t))

    return log_mse


def epoch_logger(total: int, what: str):
    """A Keras callback logging one line per epoch (the CLI's progress)."""
    import tensorflow as tf

    class EpochLog(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))
            log.info("%s epoch %d/%d: loss %.4g, val_loss %.4g, lr %.2g (%.0f s)", what, epoch + 1, total,
                     logs.get("loss", float("nan")), logs.get("val_loss", float("nan")), lr,
                     time.perf_counter() - self._t)

    return EpochLog()


def train_emd_cnn(pairs: dict[tuple[str, str], PairSet], params: EmdCnnParams, seed: int):
    """Train on the train split, early-stop on the val split; return (model, history dict)."""
    import tensorflow as tf

    from econ_emd.models.emd_cnn import build_emd_cnn_trainer

    tf.keras.utils.set_random_seed(seed)
    kinds = tuple(sorted({k for k, _ in pairs}))
    a, b, y = training_arrays(pairs, "train", kinds, params.augment_rotations)
    va, vb, vy = training_arrays(pairs, "val", kinds, False)
    model, trainer = build_emd_cnn_trainer(params.arch())
    if params.one_way_training:
        swap = np.random.default_rng(seed).random(len(y)) < 0.5
        a, b = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    fitted = trainer if params.one_way_training else model
    callbacks = [tf.keras.callbacks.EarlyStopping(patience=params.patience, restore_best_weights=True),
                 epoch_logger(params.epochs, "EMD-CNN")]
    if params.lr_schedule == "cosine":
        steps = params.epochs * int(np.ceil(len(y) / params.batch_size))
        lr = tf.keras.optimizers.schedules.CosineDecay(params.learning_rate, steps, alpha=0.01)
    else:
        lr = params.learning_rate
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, params.patience // 2),
                                                              min_lr=1e-5))
    fitted.compile(optimizer=tf.keras.optimizers.Adam(lr), loss=make_loss(params.output))
    log.info("EMD-CNN: %s training pairs (%s), %s validation pairs, %s parameters",
             f"{len(y):,}", "with rotations" if params.augment_rotations else "no augmentation",
             f"{len(vy):,}", f"{model.count_params():,}")
    t0 = time.perf_counter()
    hist = fitted.fit([a, b], y, validation_data=([va, vb], vy), epochs=params.epochs,
                     batch_size=params.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["seconds"] = time.perf_counter() - t0
    history["final_learning_rate"] = float(tf.keras.backend.get_value(fitted.optimizer.learning_rate))
    history["best_epoch"] = int(np.argmin(history["val_loss"])) + 1
    return model, history


def freeze(model):
    """The same model with every weight frozen (BatchNorm then runs in inference mode)."""
    model.trainable = False
    for layer in model.layers:
        layer.trainable = False
    return model


def save_emd_cnn(model, out_dir: str | Path, sidecar: dict) -> None:
    out_dir = Path(out_dir)
    atomic_save_model(model, out_dir / MODEL_FILE)
    atomic_write_json(out_dir / SIDECAR_FILE, {**sidecar, "geometry_hash": geometry_hash()})


def load_frozen_emd_cnn(path: str | Path):
    """A frozen EMD-CNN taking two (batch, 48) CALQ modules, from our `.h5` (or its folder)
    or from an external published-format model (two (4, 4, 3) or (8, 8, 1) inputs)."""
    import tensorflow as tf

    from econ_emd.models.emd_cnn import CUSTOM_OBJECTS, wrap_external

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise ModelFileError(f"{path}: no EMD-CNN model file (train one with `econ-emd train-emd-cnn`)")
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        meta = json.loads(sidecar.read_text())
        if meta.get("geometry_hash") not in (None, geometry_hash()):
            raise ModelFileError(f"{path} was trained for another TC geometry")
    try:
        model = tf.keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a loadable Keras EMD-CNN ({str(exc).splitlines()[0]})") from None
    shapes = [tuple(i.shape[1:]) for i in model.inputs]
    if shapes != [(48,), (48,)]:
        try:
            model = wrap_external(model)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    outputs = [tuple(o.shape[1:]) for o in model.outputs]
    if outputs not in ([()], [(1,)]):
        raise ModelFileError(f"{path}: an EMD-CNN has one scalar output per pair; this model outputs {outputs}")
    return freeze(model)


_INFERENCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inference_fn(model):
    """The model's forward pass as one traced graph per model (any batch size). Keras'
    `predict` runs the same graph through its data pipeline and callbacks, which costs a
    large share of a small network's inference (bench/emd_cnn_speed.py)."""
    import tensorflow as tf

    fn = _INFERENCE.get(model)
    if fn is None:
        spec = tf.TensorSpec([None, model.inputs[0].shape[-1]], tf.float32)
        ref = weakref.ref(model)   # the graph must not keep its model (the cache key) alive
        fn = _INFERENCE[model] = tf.function(lambda x, y: ref()([x, y], training=False),
                                             input_signature=[spec, spec])
    return fn


def predict_emd(model, a: np.ndarray, b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Batched inference in float32 (inputs are normalized here, as in training)."""
    a32, b32 = unit_sum32(a), unit_sum32(b)
    fn = _inference_fn(model)
    out = [fn(a32[s:s + batch_size], b32[s:s + batch_size]).numpy().reshape(-1)
           for s in range(0, len(a32), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def relative_error_stats(pred: np.ndarray, exact: np.ndarray, n_bins: int = 5) -> dict:
    """Mean and sigma of (pred - exact)/exact overall and in quantile bins of exact EMD.
    Pairs with exact EMD below LOG_FLOOR (identical modules) are counted, not divided."""
    ok = exact >= LOG_FLOOR
    rel = (pred[ok] - exact[ok]) / exact[ok]
    out = {"n_pairs": int(exact.size), "n_excluded_tiny": int((~ok).sum()),
           "rel_mean": float(rel.mean()), "rel_sigma": float(rel.std()),
           "rel_median": float(np.median(rel)), "abs_mean": float(np.abs(pred - exact).mean()),
           "bins": []}
    edges = np.quantile(exact[ok], np.linspace(0, 1, n_bins + 1))
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (exact[ok] >= lo) & (exact[ok] <= hi)
        out["bins"].append({"emd_lo": float(lo), "emd_hi": float(hi), "n": int(m.sum()),
                            "rel_mean": float(rel[m].mean()), "rel_sigma": float(rel[m].std())})
    return out


def evaluate_emd_cnn(model, pairs: dict[tuple[str, str], PairSet], split: str = "test") -> dict:
    """Accuracy per pair kind on a held-out split, plus predictions for the plots."""
    out = {}
    for (kind, s), ps in sorted(pairs.items()):
        if s != split or not ps.a.shape[0]:
            continue
        pred = predict_emd(model, ps.a, ps.b)
        out[kind] = {"stats": relative_error_stats(pred, ps.emd), "pred": pred, "exact": ps.emd}
    return out


def plot_evaluation(results: dict, out_dir: str | Path) -> list[str]:
    """predicted-vs-exact 2D histograms and relative-error distributions, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    out_dir = Path(out_dir)
    kinds = list(results)
    files = []
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        r = results[kind]
        hi = float(np.quantile(r["exact"], 0.999)) * 1.05
        h = ax.hist2d(r["exact"], r["pred"], bins=80, range=[[0, hi], [0, hi]], norm=LogNorm(), cmap="viridis")
        fig.colorbar(h[3], ax=ax, label="pairs")
        ax.plot([0, hi], [0, hi], "r--", lw=1)
        st = r["stats"]
        ax.set(xlabel="exact EMD", ylabel="EMD-CNN", title=f"{kind} pairs (test): mean {st['rel_mean']:+.3f}, "
                                                          f"sigma {st['rel_sigma']:.3f}")
        ax.title.set_fontsize(9)
    save_figure(fig, out_dir / "emd_cnn_pred_vs_exact.png")
    files.append("emd_cnn_pred_vs_exact.png")

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for kind in kinds:
        r = results[kind]
        ok = r["exact"] >= LOG_FLOOR
        rel = (r["pred"][ok] - r["exact"][ok]) / r["exact"][ok]
        st = r["stats"]
        ax.hist(np.clip(rel, -0.5, 0.5), bins=120, range=(-0.5, 0.5), histtype="step", lw=1.5,
                label=f"{kind}: mean {st['rel_mean']:+.3f}, sigma {st['rel_sigma']:.3f}")
    ax.set(xlabel="(EMD-CNN - exact) / exact (clipped to +-0.5)", ylabel="pairs", yscale="log",
           title="EMD-CNN relative error on held-out pairs")
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "emd_cnn_rel_error.png")
    files.append("emd_cnn_rel_error.png")
    return files


def sidecar_for(params: EmdCnnParams, history: dict, metrics: dict, seed: int) -> dict:
    return {"format": "econ-emd EMD-CNN v1", "arch": asdict(params.arch()), "seed": seed,
            "training": params.model_dump(), "history": history, "metrics": metrics}
