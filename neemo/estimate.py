"""NEEMo estimation: the EMD of weighted point sets through the Kantorovich-Rubinstein dual.

For two weighted point sets (x, p) and (y, q) of equal total weight,
    EMD = max over 1-Lipschitz f of  sum_i p_i f(x_i) - sum_j q_j f(y_j).
The potential f (models.lipschitz) is Lipschitz by construction, so the dual value at every
step is a lower bound of the EMD; the estimate is the largest value seen, refined by a
double c-transform on the discrete supports (still a lower bound). Many problems are solved
at once as an ensemble (one potential per problem, one batched computation). For HGCAL
modules both sets live on the same 48 TC centres, so one evaluation of f on the 48 centres
with signed weights p - q gives the dual value.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .params import PotentialParams


def _potential(params: PotentialParams, ensemble: int, input_scale: float):
    from econ_emd.models.lipschitz import PotentialArch, build_potential

    # inputs are divided by input_scale before the network: it must be input_scale-Lipschitz
    # in its own input for f to be 1-Lipschitz in the plane
    arch = PotentialArch(params.width, params.n_linear, params.group_size, lipschitz=input_scale)
    return build_potential(arch, ensemble)


def _schedule(params: PotentialParams, steps: int):
    import tensorflow as tf

    decay = (params.final_learning_rate / params.learning_rate) ** (1.0 / max(steps, 1))
    return tf.keras.optimizers.schedules.ExponentialDecay(params.learning_rate, 1, decay)


@dataclass
class KrEstimate:
    estimate: np.ndarray           # [E] the estimate: max(best network dual, its c-transform) <= EMD
    raw: np.ndarray                # [E] best network dual value seen (a lower bound of the EMD)
    final: np.ndarray              # [E] dual value at the last step
    history_steps: np.ndarray      # [H]
    history: np.ndarray            # [H, E] dual value along the optimization
    seconds: float
    potential: object = field(repr=False, default=None)
    centre: np.ndarray | None = None
    scale: float = 1.0


def _frame(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and scale that bring the points to O(1) coordinates."""
    flat = points.reshape(-1, points.shape[-1])
    centre = flat.mean(0)
    scale = float(np.abs(flat - centre).max()) or 1.0
    return centre, scale


def kr_estimate(points: np.ndarray, weights: np.ndarray, params: PotentialParams = PotentialParams(),
                seed: int = 0, n_history: int = 50, progress: bool = False) -> KrEstimate:
    """KR-dual EMD estimates of E problems at once.

    points: [N, 2] shared by all problems, or [E, N, 2]; weights: [E, N] signed weights
    (p on the first set's points, -q on the second's; each row sums to ~0)."""
    import tensorflow as tf

    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError("weights must be [E, N]")
    e, n = w.shape
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 2:
        pts = np.broadcast_to(pts, (e, *pts.shape))
    if pts.shape[:2] != (e, n):
        raise ValueError(f"points {pts.shape} do not match weights {w.shape}")
    if np.abs(w.sum(1)).max() > 1e-6 * max(np.abs(w).sum(1).max(), 1.0):
        raise ValueError("each problem's two sets must carry the same total weight")
    centre, scale = _frame(pts)
    tf.keras.utils.set_random_seed(seed)
    pot = _potential(params, e, scale)
    x = tf.constant(((pts - centre) / scale).astype(np.float32))
    wt = tf.constant(w.astype(np.float32))
    opt = tf.keras.optimizers.Adam(_schedule(params, params.steps))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(pot(x) * wt, axis=-1)
            loss = -tf.reduce_sum(value)
        opt.apply_gradients(zip(tape.gradient(loss, pot.trainable_variables), pot.trainable_variables))
        return value

    every = max(1, params.steps // n_history)
    best = np.full(e, -np.inf)
    hist_steps, hist = [], []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=params.steps, desc="NEEMo potential", unit="step", leave=False)
    for s in range(1, params.steps + 1):
        value = step().numpy().astype(np.float64)
        best = np.maximum(best, value)
        if s % every == 0 or s == params.steps:
            hist_steps.append(s)
            hist.append(value)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    f_final = pot(x).numpy().astype(np.float64)
    final = (f_final * w).sum(-1)
    best = np.maximum(best, final)
    refined = np.maximum(best, c_transform_refine(pts, w, f_final))
    return KrEstimate(refined, best, final, np.array(hist_steps), np.array(hist), time.perf_counter() - t0, pot,
                      centre, scale)


def c_transform_refine(points: np.ndarray, weights: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Dual value of the potential after a double c-transform on the two discrete supports.

    With u = f on the first set's points and v_j = max_i (u_i - |x_i - y_j|), then
    u'_i = min_j (v_j + |x_i - y_j|): (u', v) is feasible (u'_i - v_j <= |x_i - y_j|), and
    for a 1-Lipschitz f, v <= f on the second set and u' >= f on the first, so the value
    sum p u' - sum q v is at least the network's and still at most the EMD (weak duality).
    It removes the slack a smooth network leaves at the cone tips of the optimal potential.
    points [E, N, 2], weights [E, N] signed, f [E, N] the potential at the points."""
    out = np.zeros(len(weights))
    for e, (x, w, fe) in enumerate(zip(points, weights, f)):
        pos, neg = w > 0, w < 0
        if not pos.any() or not neg.any():
            continue
        d = np.linalg.norm(x[pos][:, None, :] - x[neg][None, :, :], axis=-1)   # [P, Q]
        v = (fe[pos][:, None] - d).max(0)
        u = (v[None, :] + d).min(1)
        out[e] = (w[pos] * u).sum() + (w[neg] * v).sum()
    return out


def evaluate_potential(result: KrEstimate, points: np.ndarray, member: int = 0) -> np.ndarray:
    """f of one ensemble member at arbitrary points [M, 2] (in the plane's own units)."""
    import tensorflow as tf

    e = result.potential.input_shape[0] or 1
    x = ((np.asarray(points, dtype=np.float64) - result.centre) / result.scale).astype(np.float32)
    # every member of the ensemble sees the points (the batched layers take all at once): in
    # slices of points, so that E x slice x width activations stay near 64 MB whatever E is
    width = max(int(np.prod(w.shape[-1:])) for w in result.potential.weights) if result.potential.weights else 1
    step = max(1, (1 << 24) // (e * width))
    parts = [result.potential(tf.constant(np.broadcast_to(x[i:i + step], (e, *x[i:i + step].shape))))
             .numpy()[member] for i in range(0, len(x), step)]
    return np.concatenate(parts).astype(np.float64)


def module_pair_weights(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed weights p - q on the 48 TC centres for unit-sum modules a, b ([E, 48] each)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sa, sb = a.sum(1, keepdims=True), b.sum(1, keepdims=True)
    if (sa <= 0).any() or (sb <= 0).any():
        raise ValueError("a module with zero total charge has no EMD")
    return a / sa - b / sb


def estimate_statistics(estimate: np.ndarray, exact: np.ndarray) -> dict:
    """How NEEMo estimates compare with the exact EMD: relative errors and the lower-bound check.

    A pair of identical modules (exact EMD 0) has no relative error (NaN in `relative_error`)
    and is left out of the statistics; with only such pairs, they are None."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(exact > 0, (estimate - exact) / exact, np.nan)
    over = estimate - exact * 1.01
    defined = rel[exact > 0]
    return {"relative_error": rel,
            "median_abs_relative_error": float(np.median(np.abs(defined))) if defined.size else None,
            "p90_abs_relative_error": float(np.percentile(np.abs(defined), 90)) if defined.size else None,
            "max_relative_error": float(np.max(defined)) if defined.size else None,
            "never_above_exact_plus_1pct": bool((over <= 1e-9).all())}
