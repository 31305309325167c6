"""Lipschitz-constrained networks for NEEMo: the Kantorovich-Rubinstein potential f.

EMD(P, Q) = max over 1-Lipschitz f of sum_i p_i f(x_i) - sum_j q_j f(y_j), so a network that
is Lipschitz by construction gives a lower bound at every step of its training, and the
bound becomes the EMD when f reaches the optimal potential.

Lipschitz by direct weight normalization (the reference NEEMo recipe): in every layer each
output unit's weight vector w_j is divided by max(1, ||w_j|| / lambda_layer), in the forward
pass, so gradients flow through the normalization and the stored kernel is unconstrained.
* first layer: ||w_j||_2 (the "2 -> inf" operator norm): each unit is lambda-Lipschitz from
  Euclidean distance in the plane to the max-norm of the hidden vector;
* later layers: ||w_j||_1 (the "inf -> inf" norm);
* GroupSort (sorting within groups) is 1-Lipschitz in the max-norm and gradient-norm
  preserving, so the whole network is prod(lambda_layer)-Lipschitz in Euclidean distance.

Every layer carries an optional leading *ensemble* axis E: E independent potentials are
trained in one batched computation (inputs [E, N, d] -> outputs [E, N, units]), which is how
NEEMo estimates many module pairs at once. Keras kernels are [in, out]; here [E, in, out],
and the norm of output unit j is taken over the `in` axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class LipschitzDense(tf.keras.layers.Layer):
    """Dense layer of an ensemble of E networks with per-unit direct weight normalization."""

    def __init__(self, units: int, norm: str = "l1", lipschitz: float = 1.0, ensemble: int = 1,
                 use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', not {norm!r}")
        if lipschitz <= 0:
            raise ValueError("lipschitz must be > 0")
        self.units, self.norm, self.lipschitz = int(units), norm, float(lipschitz)
        self.ensemble, self.use_bias = int(ensemble), bool(use_bias)

    def build(self, input_shape):
        n_in = int(input_shape[-1])
        # orthogonal-like scale: unit-norm columns keep activations O(1) at init
        init = tf.keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(n_in))
        self.kernel = self.add_weight(name="kernel", shape=(self.ensemble, n_in, self.units), initializer=init)
        self.bias = (self.add_weight(name="bias", shape=(self.ensemble, 1, self.units), initializer="zeros")
                     if self.use_bias else None)

    def normalized_kernel(self) -> tf.Tensor:
        k = self.kernel
        if self.norm == "l2":
            norms = tf.sqrt(tf.reduce_sum(tf.square(k), axis=1, keepdims=True) + 1e-12)
        else:
            norms = tf.reduce_sum(tf.abs(k), axis=1, keepdims=True)
        return k / tf.maximum(1.0, norms / self.lipschitz)

    def call(self, x):
        y = tf.matmul(x, self.normalized_kernel())     # [E, N, in] @ [E, in, out]
        return y + self.bias if self.use_bias else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "norm": self.norm, "lipschitz": self.lipschitz,
                "ensemble": self.ensemble, "use_bias": self.use_bias}


@tf.keras.utils.register_keras_serializable(package="econ_emd")
class GroupSort(tf.keras.layers.Layer):
    """Sorts the last axis within consecutive groups of `group_size` (ascending)."""

    def __init__(self, group_size: int = 8, **kwargs):
        super().__init__(**kwargs)
        if group_size < 1:
            raise ValueError("group_size must be >= 1")
        self.group_size = int(group_size)

    def call(self, x):
        n = x.shape[-1]
        if n % self.group_size:
            raise ValueError(f"GroupSort: {n} units are not a multiple of the group size {self.group_size}")
        shape = tf.shape(x)
        grouped = tf.reshape(x, tf.concat([shape[:-1], [n // self.group_size, self.group_size]], 0))
        return tf.reshape(tf.sort(grouped, axis=-1), shape)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


@dataclass(frozen=True)
class PotentialArch:
    """The reference NEEMo potential: width 128, 5 linear layers, GroupSort groups of 8."""

    width: int = 128
    n_linear: int = 5
    group_size: int = 8
    lipschitz: float = 1.0
    input_dim: int = 2


def build_potential(arch: PotentialArch = PotentialArch(), ensemble: int = 1) -> tf.keras.Model:
    """E potentials f_e: R^input_dim -> R, each arch.lipschitz-Lipschitz (Euclidean).

    Input [E, N, input_dim], output [E, N]. Each layer gets lambda^(1 / n_linear)."""
    if arch.n_linear < 2:
        raise ValueError("the potential needs at least 2 linear layers")
    lam = arch.lipschitz ** (1.0 / arch.n_linear)
    x_in = tf.keras.Input((None, arch.input_dim), batch_size=ensemble, name="points")
    x = LipschitzDense(arch.width, "l2", lam, ensemble, name="lip_dense_0")(x_in)
    x = GroupSort(arch.group_size, name="groupsort_0")(x)
    for i in range(1, arch.n_linear - 1):
        x = LipschitzDense(arch.width, "l1", lam, ensemble, name=f"lip_dense_{i}")(x)
        x = GroupSort(arch.group_size, name=f"groupsort_{i}")(x)
    x = LipschitzDense(1, "l1", lam, ensemble, name=f"lip_dense_{arch.n_linear - 1}")(x)
    out = tf.keras.layers.Reshape((-1,), name="potential")(x)
    return tf.keras.Model(x_in, out, name="kr_potential")


def max_gradient_norm(potential: tf.keras.Model, points: np.ndarray) -> np.ndarray:
    """Largest Euclidean gradient norm of each ensemble member over the given points.

    points: [N, d] (shared by all members) or [E, N, d]. Returns [E]. Since the network is
    piecewise linear, its Lipschitz constant is the sup of this over the plane."""
    e = potential.input_shape[0] or 1
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim == 2:
        pts = np.broadcast_to(pts, (e, *pts.shape))
    x = tf.constant(pts)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = potential(x)
    g = tape.gradient(y, x)          # each output depends on its own point only
    return tf.reduce_max(tf.norm(g, axis=-1), axis=-1).numpy()


def check_lipschitz(potential: tf.keras.Model, bound: float, n_points: int = 20_000, extent: float = 20.0,
                    seed: int = 0, rtol: float = 1e-5) -> dict:
    """Empirical Lipschitz check: max gradient norm over random points of [-extent, extent]^d."""
    d = potential.input_shape[-1]
    pts = np.random.default_rng(seed).uniform(-extent, extent, (n_points, d))
    worst = max_gradient_norm(potential, pts)
    return {"max_gradient_norm": float(worst.max()), "bound": bound, "n_points": n_points,
            "holds": bool(worst.max() <= bound * (1 + rtol))}
