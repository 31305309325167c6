"""Reconstruction losses of the autoencoder; each takes (target, reconstruction) images.

Targets and reconstructions are (batch, 8, 8, 1) images; the targets are unit-sum modules
(the decoder ends in a sigmoid, and the module sum travels separately).

* `mse`: mean squared error over the 48 TCs.
* `wmse`: mean((t - p)^2 * max(t, p)) over the 48 TCs.
* `telescope`: 4 L_TC + 2 L_2x2 + L_4x4, each a weighted MSE as above over: the 48 TCs;
  36 overlapping 2x2 TC groups (27 inside the rhombi, 9 across the seams between them),
  weighted so every TC counts as equally as the group layout allows; the 3 rhombus sums.
* `emd_cnn`: the frozen EMD-CNN (which normalizes both images to unit sum itself).
* `sinkhorn`: entropic optimal transport on the hex metric (log-domain Sinkhorn), a second
  differentiable EMD baseline.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from econ_emd.geometry import N_TC, PIXEL_OF_CALQ_8X8, distance_matrix



def to_calq(img: tf.Tensor) -> tf.Tensor:
    """(batch, 8, 8, 1) -> (batch, 48) in CALQ order."""
    import tensorflow as tf

    flat = tf.reshape(img, (-1, 64))
    return tf.gather(flat, tf.constant(PIXEL_OF_CALQ_8X8, dtype=tf.int32), axis=-1)


def _wmse(t: tf.Tensor, p: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
    import tensorflow as tf

    w = tf.square(t - p) * tf.maximum(t, p)
    if weights is not None:
        w = w * weights
    return tf.reduce_mean(w, axis=-1)


def mse(target: tf.Tensor, recon: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.reduce_mean(tf.square(to_calq(target) - to_calq(recon)), axis=-1)


def wmse(target: tf.Tensor, recon: tf.Tensor) -> tf.Tensor:
    return _wmse(to_calq(target), to_calq(recon))


@lru_cache(maxsize=1)
def telescope_groups() -> tuple[np.ndarray, np.ndarray]:
    """(36, 4) CALQ indices of the 2x2 groups and their (36,) weights.

    Inside rhombus k, TC (r, c) of its 4x4 grid is CALQ 4r + c + 16k; its 9 overlapping 2x2
    squares are groups. Across each of the 3 seams, 3 groups join 2 adjacent seam TCs of one
    rhombus with the 2 facing TCs of the other: every 4-TC set with exactly two TCs in each
    of two rhombi that is as compact as a 2x2 square (all distances <= 3.6, at least 5 of
    the 6 pairs adjacent). These are the 36 groups of the published telescope loss (Ecoder
    `telescope.py`, `SCmask_48_36`; a test checks the set).

    Weights, as published: a group's weight is 1/4 of the sum over its TCs of 1/(the number
    of groups that TC enters), so that every TC brings the same shape information whatever
    its coverage (corner 2x2: (1 + 1/2 + 1/2 + 1/4) / 4). The published table departs from
    its own rule for the three TCs that enter 3 groups (3, 19, 35, at the centre where the
    rhombi meet): each counts 1/3 + 1/4 instead of 1/3. The weights here are the published
    table's, that departure included.
    """
    groups = []
    for k in range(3):
        for r, c in itertools.product(range(3), range(3)):
            base = 4 * r + c + 16 * k
            groups.append((base, base + 1, base + 4, base + 5))
    d = distance_matrix()
    near = [np.flatnonzero((d[i] < 3.6) & (np.arange(N_TC) > i)) for i in range(N_TC)]
    seam = set()
    for i in range(N_TC):
        for q in itertools.combinations(near[i], 3):
            quad = (i, *q)
            rh = np.bincount(np.array(quad) // 16, minlength=3)
            if sorted(rh) != [0, 2, 2]:
                continue
            pd = [d[a, b] for a, b in itertools.combinations(quad, 2)]
            if max(pd) <= 3.6 and sum(x <= 2.35 for x in pd) >= 5:
                seam.add(quad)
    groups += sorted(tuple(int(v) for v in q) for q in seam)
    idx = np.array(groups, dtype=np.int64)
    if idx.shape != (36, 4):
        raise RuntimeError(f"expected 36 2x2 groups, found {len(idx)}")
    coverage = np.bincount(idx.ravel(), minlength=N_TC).astype(np.float64)
    share = 1.0 / coverage + np.where(coverage == 3, 0.25, 0.0)    # the published table's centre TCs
    return idx, 0.25 * share[idx].sum(axis=1)


@lru_cache(maxsize=1)
def _telescope_constants() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy (cached) group matrices; tensors are made per trace (a cached tensor would
    belong to the first graph that created it)."""
    idx, w = telescope_groups()
    m36 = np.zeros((N_TC, 36), dtype=np.float32)
    for g, quad in enumerate(idx):
        m36[quad, g] = 1.0
    m3 = np.zeros((N_TC, 3), dtype=np.float32)
    m3[np.arange(N_TC), np.arange(N_TC) // 16] = 1.0
    return m36, w.astype(np.float32), m3


def telescope(target: tf.Tensor, recon: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    t, p = to_calq(target), to_calq(recon)
    m36, w36, m3 = (tf.constant(c) for c in _telescope_constants())
    l_tc = _wmse(t, p)
    l_2x2 = _wmse(t @ m36, p @ m36, w36)
    l_4x4 = _wmse(t @ m3, p @ m3)
    return 4.0 * l_tc + 2.0 * l_2x2 + l_4x4


def emd_cnn_loss(frozen_model):
    """Loss closure around a frozen EMD-CNN taking (batch, 48) CALQ modules."""

    def loss(target: tf.Tensor, recon: tf.Tensor) -> tf.Tensor:
        return frozen_model([to_calq(target), to_calq(recon)], training=False)

    return loss


def sinkhorn_loss(epsilon: float, n_iter: int):
    """Batched log-domain Sinkhorn transport cost on the hex metric (unit-sum inputs).

    Returns <P, M> for the entropic plan P (not the regularized objective), which tends to
    the exact EMD as epsilon -> 0. Zero-mass TCs get log-weight -inf-like (-1e9)."""
    import tensorflow as tf

    cost = tf.constant(distance_matrix(), dtype=tf.float32)
    neg = -1e9

    def loss(target: tf.Tensor, recon: tf.Tensor) -> tf.Tensor:
        a, b = to_calq(target), to_calq(recon)
        a = a / tf.maximum(tf.reduce_sum(a, -1, keepdims=True), 1e-12)
        b = b / tf.maximum(tf.reduce_sum(b, -1, keepdims=True), 1e-12)
        log_a = tf.where(a > 0, tf.math.log(tf.maximum(a, 1e-30)), neg)
        log_b = tf.where(b > 0, tf.math.log(tf.maximum(b, 1e-30)), neg)
        k = -cost / epsilon                                # (48, 48)
        f = tf.zeros_like(a)
        g = tf.zeros_like(b)
        for _ in range(n_iter):
            f = log_a - tf.reduce_logsumexp(k[None] + g[:, None, :], axis=-1)
            g = log_b - tf.reduce_logsumexp(k[None] + f[:, :, None], axis=-2)
        log_p = k[None] + f[:, :, None] + g[:, None, :]
        return tf.reduce_sum(tf.exp(log_p) * cost[None], axis=(-2, -1))

    return loss


#: every loss by name: (frozen EMD-CNN or None, sinkhorn epsilon, sinkhorn iterations) -> loss
#: function. The config schema, the CLI's choices and the comparison read their names here.
@dataclass(frozen=True)
class LossSpec:
    """One training loss: how to build it, the encoder settings only it reads (the keys of
    the config's `encoder` section: a stage's hash covers them only where the loss is
    trained), and whether it reads a frozen EMD-CNN."""

    build: Callable[[object, object], Callable]      # (frozen EMD-CNN or None, encoder params) -> loss
    reads: tuple[str, ...] = ()
    needs_emd_cnn: bool = False


def _require_emd_cnn(frozen):
    if frozen is None:
        raise ValueError("the emd_cnn loss needs a trained EMD-CNN (run `econ-emd train-emd-cnn`)")
    return frozen


LOSSES: dict[str, LossSpec] = {
    "emd_cnn": LossSpec(lambda frozen, p: emd_cnn_loss(_require_emd_cnn(frozen)), needs_emd_cnn=True),
    "mse": LossSpec(lambda frozen, p: mse),
    "wmse": LossSpec(lambda frozen, p: wmse),
    "telescope": LossSpec(lambda frozen, p: telescope),
    "sinkhorn": LossSpec(lambda frozen, p: sinkhorn_loss(p.sinkhorn_epsilon, p.sinkhorn_iter),
                         reads=("sinkhorn_epsilon", "sinkhorn_iter")),
}
#: the losses that read a frozen EMD-CNN
NEEDS_EMD_CNN = frozenset(name for name, spec in LOSSES.items() if spec.needs_emd_cnn)
#: every encoder setting that some loss, and only that loss, reads
LOSS_SETTINGS = tuple(dict.fromkeys(k for spec in LOSSES.values() for k in spec.reads))


def loss_settings(losses) -> tuple[str, ...]:
    """The encoder settings the given losses read (a subset of `LOSS_SETTINGS`)."""
    return tuple(dict.fromkeys(k for name in losses if name in LOSSES for k in LOSSES[name].reads))


def get_loss(name: str, frozen_emd_cnn=None, params=None):
    """The loss function called `name`, built with the encoder settings it reads (`params`,
    an `EncoderParams`) and, for the EMD-CNN loss, the frozen network."""
    try:
        spec = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}' (choose {', '.join(LOSSES)})") from None
    if spec.reads and params is None:
        raise ValueError(f"the {name} loss needs its settings ({', '.join(spec.reads)})")
    return spec.build(frozen_emd_cnn, params)
