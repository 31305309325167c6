"""Module pairs to label with the exact EMD.

Two kinds, matching what a learned EMD will meet as a loss:
* `random`: two different modules of the same split, drawn uniformly;
* `perturbed`: a module and a reconstruction-like copy of it: per-TC charge smearing,
  TC drop-out, charge shifted to neighbouring TCs and a small spill of charge over empty
  TCs (autoencoder outputs are rarely exactly zero anywhere). Each pair draws its own
  perturbation strengths uniformly up to the configured maxima, so labels span small and
  large distances.
Pairs never mix splits, so a model trained on train pairs is judged on unseen modules.
"""
from __future__ import annotations

import numpy as np

from econ_emd.geometry import N_TC, neighbours
from .params import PerturbParams

KINDS = ("random", "perturbed")


def random_pairs(n_modules: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i != j, uniform over a split of n_modules modules."""
    if n_modules < 2:
        raise ValueError("random pairs need at least two modules")
    i = rng.integers(0, n_modules, n_pairs)
    j = (i + rng.integers(1, n_modules, n_pairs)) % n_modules  # never equal to i
    return i, j


def _neighbour_table() -> np.ndarray:
    """(48, 6) neighbour indices, padded by repeating (edge TCs have fewer neighbours)."""
    table = np.empty((N_TC, 6), dtype=np.int64)
    for i, nb in enumerate(neighbours()):
        table[i] = np.resize(nb, 6)
    return table


def perturb(modules: np.ndarray, params: PerturbParams, rng: np.random.Generator) -> np.ndarray:
    """Reconstruction-like copies of (n, 48) modules; every copy keeps a positive sum."""
    x = np.asarray(modules, dtype=np.float64)
    n = x.shape[0]
    u = lambda hi: rng.uniform(0.0, hi, (n, 1))  # noqa: E731 - per-pair strength
    live = x > 0
    # 1. smearing of each charge
    y = x * np.clip(1.0 + rng.normal(0.0, 1.0, x.shape) * u(params.smear_sigma_max), 0.0, None)
    # 2. TC drop-out
    y = np.where(rng.random(x.shape) < u(params.dropout_max), 0.0, y)
    # 3. a share of each TC's charge moves to one random neighbour
    moved = y * rng.random(x.shape) * u(params.shift_max)
    target = _neighbour_table()[np.arange(N_TC)[None, :], rng.integers(0, 6, x.shape)]
    y = y - moved
    np.add.at(y, (np.repeat(np.arange(n), N_TC), target.ravel()), moved.ravel())
    # 4. spill over empty TCs
    empty = ~live & (y == 0)
    spill = rng.random(x.shape) * empty
    spill_sum = spill.sum(1, keepdims=True)
    share = u(params.spill_max) * y.sum(1, keepdims=True)
    y = y + np.divide(spill * share, spill_sum, out=np.zeros_like(spill), where=spill_sum > 0)
    # a copy that lost everything falls back to its (smeared) original
    dead = y.sum(1) <= 0
    y[dead] = x[dead]
    return y
