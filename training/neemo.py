"""NEEMo: EMD through the Kantorovich-Rubinstein dual with a Lipschitz network, and
geometric fitting of shapes to energy deposits by the resulting min-max game.

Estimation. For two weighted point sets (x, p) and (y, q) of equal total weight,
    EMD = max over 1-Lipschitz f of  sum_i p_i f(x_i) - sum_j q_j f(y_j).
The potential f (models.lipschitz) is Lipschitz by construction, so the dual value at every
step is a lower bound of the EMD; the estimate is the largest value seen. Many problems are
solved at once as an ensemble (one potential per problem, one batched computation). For
HGCAL modules both sets live on the same 48 TC centres, so one evaluation of f on the 48
centres with signed weights p - q gives the dual value.

Fitting. Shapes (points, circles, rings; centres, radii, optionally energy fractions) are
sampled densely and differentiably; the potential ascends the dual value for `inner_steps`
steps, then the shapes take one descent step on it and the energy fractions become the
energy of the deposits nearest to each shape (the plan of the free-fraction dual). Both the NEEMo estimate and the exact EMD
(POT) of the current configuration are recorded along the fit: with too few inner steps the
estimate lags the exact value (DESIGN.md, NEEMo part).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("econ_emd")


@dataclass(frozen=True)
class NeemoParams:
    """Optimization settings of the potential (the architecture is models.lipschitz.PotentialArch)."""

    width: int = 128
    n_linear: int = 5
    group_size: int = 8
    steps: int = 3000
    learning_rate: float = 1e-2
    final_learning_rate: float = 1e-4
    seed: int = 0


def _potential(params: NeemoParams, ensemble: int, input_scale: float):
    from models.lipschitz import PotentialArch, build_potential

    # inputs are divided by input_scale before the network: it must be input_scale-Lipschitz
    # in its own input for f to be 1-Lipschitz in the plane
    arch = PotentialArch(params.width, params.n_linear, params.group_size, lipschitz=input_scale)
    return build_potential(arch, ensemble)


def _schedule(params: NeemoParams, steps: int):
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


def kr_estimate(points: np.ndarray, weights: np.ndarray, params: NeemoParams = NeemoParams(),
                n_history: int = 50, progress: bool = False) -> KrEstimate:
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
    tf.keras.utils.set_random_seed(params.seed)
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
    batch = np.broadcast_to(x, (e, *x.shape))
    return result.potential(tf.constant(batch)).numpy()[member].astype(np.float64)


def module_pair_weights(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed weights p - q on the 48 TC centres for unit-sum modules a, b ([E, 48] each)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sa, sb = a.sum(1, keepdims=True), b.sum(1, keepdims=True)
    if (sa <= 0).any() or (sb <= 0).any():
        raise ValueError("a module with zero total charge has no EMD")
    return a / sa - b / sb


# --------------------------------------------------------------------------------------
# Geometric fitting
# --------------------------------------------------------------------------------------

SHAPES = ("point", "circle", "ring")


@dataclass(frozen=True)
class FitParams:
    """The min-max game: `warmup_steps` potential steps on the initial shapes, then
    `inner_steps` potential steps per shape step (enough that the estimate tracks the exact
    EMD). The final estimate of the fitted configuration is a fresh `kr_estimate` with the
    estimator's own settings (NeemoParams)."""

    k: int = 3
    shape: str = "point"
    learn_fractions: bool = True            # fractions = energy nearest each shape (else kept)
    shape_steps: int = 200
    inner_steps: int = 20
    warmup_steps: int = 500                 # potential steps on the initial configuration
    potential_learning_rate: float = 3e-3
    shape_learning_rate: float = 0.01       # in units of the event's extent (decays to a tenth)
    samples_per_shape: int = 64             # circle/ring sampling (angles; rings x 4 radii)
    track_every: int = 25                   # exact EMD (POT) of the configuration every N shape steps
    init: str = "kmeans"                    # kmeans: k-means centres (warm start); energy: K deposits by energy

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {self.shape!r}")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if self.init not in ("energy", "kmeans"):
            raise ValueError("init must be 'energy' or 'kmeans'")


def _unit_templates(shape: str, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-shape sample layout: unit directions [S, 2], radial offsets [S] in [-0.5, 0.5]
    (rings), and relative sample weights [S] (sum 1; rings weight by radius, uniform area)."""
    if shape == "point":
        return np.zeros((1, 2)), np.zeros(1), np.ones(1)
    if shape == "circle":
        th = 2 * np.pi * (np.arange(m) + 0.5) / m
        return np.stack([np.cos(th), np.sin(th)], 1), np.zeros(m), np.full(m, 1.0 / m)
    n_r = 4
    th = 2 * np.pi * (np.arange(m) + 0.5) / m
    u = (np.arange(n_r) + 0.5) / n_r - 0.5
    dirs = np.tile(np.stack([np.cos(th), np.sin(th)], 1), (n_r, 1))
    offs = np.repeat(u, m)
    return dirs, offs, np.full(n_r * m, 1.0 / (n_r * m))


def exact_emd_points(x: np.ndarray, p: np.ndarray, y: np.ndarray, q: np.ndarray) -> float:
    """Exact EMD (POT, float64) between weighted point sets with Euclidean ground distance."""
    import ot

    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    keep_p, keep_q = p > 0, q > 0
    xs, ys = np.asarray(x, dtype=np.float64)[keep_p], np.asarray(y, dtype=np.float64)[keep_q]
    ps, qs = p[keep_p] / p[keep_p].sum(), q[keep_q] / q[keep_q].sum()
    cost = np.sqrt(((xs[:, None, :] - ys[None, :, :]) ** 2).sum(-1))
    return float(ot.emd2(ps, qs, cost, numItermax=1_000_000))


def kmeans_baseline(x: np.ndarray, energies: np.ndarray, k: int, seed: int = 0) -> dict:
    """Energy-weighted k-means: centres, their cluster energy fractions and exact EMD."""
    from sklearn.cluster import KMeans

    keep = energies > 0
    xs, es = x[keep], energies[keep] / energies[keep].sum()
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(xs, sample_weight=es)
    frac = np.array([es[km.labels_ == c].sum() for c in range(k)])
    return {"centres": km.cluster_centers_, "fractions": frac,
            "exact_emd": exact_emd_points(xs, es, km.cluster_centers_, frac)}


@dataclass
class FitResult:
    centres: np.ndarray            # [E, K, 2]
    radii: np.ndarray              # [E, K] (0 for points)
    widths: np.ndarray             # [E, K] (rings; 0 otherwise)
    fractions: np.ndarray          # [E, K]
    estimate: np.ndarray           # [E] NEEMo estimate of the final configuration
    exact: np.ndarray              # [E] exact EMD of the final configuration (POT)
    track: list                    # [{step, estimate[E], exact[E]}] along the fit
    seconds: float
    samples: list = field(default_factory=list)   # per event: (points [S, 2], weights [S])
    potential: object = field(repr=False, default=None)
    centre: np.ndarray | None = None
    scale: float = 1.0



def _pad_events(events: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack events of different sizes: zero-energy padding points add nothing to the dual."""
    n = max(len(e[1]) for e in events)
    x = np.zeros((len(events), n, 2))
    w = np.zeros((len(events), n))
    for i, (pts, en) in enumerate(events):
        en = np.asarray(en, dtype=np.float64)
        if (en < 0).any() or en.sum() <= 0:
            raise ValueError(f"event {i}: energies must be >= 0 with a positive sum")
        x[i, : len(en)] = pts
        x[i, len(en):] = pts[0]
        w[i, : len(en)] = en / en.sum()
    return x, w


def _initial_shapes(x: np.ndarray, w: np.ndarray, k: int, init: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """Initial centres [E, K, 2] and energy fractions [E, K]: k-means' centres and cluster
    fractions (a warm start the fit must improve on), or K deposits drawn by energy with
    equal fractions."""
    centres, fractions = np.zeros((len(x), k, 2)), np.full((len(x), k), 1.0 / k)
    for i in range(len(x)):
        if init == "kmeans":
            km = kmeans_baseline(x[i], w[i], k, seed=int(rng.integers(1 << 30)))
            centres[i], fractions[i] = km["centres"], np.maximum(km["fractions"], 1e-3)
        else:
            nz = np.flatnonzero(w[i] > 0)
            pick = rng.choice(nz, size=k, replace=len(nz) < k, p=w[i][nz] / w[i][nz].sum())
            centres[i] = x[i][pick] + rng.normal(0, 1e-3, (k, 2))
    return centres, fractions / fractions.sum(1, keepdims=True)


def fit_shapes(events: list[tuple[np.ndarray, np.ndarray]], fit: FitParams = FitParams(),
               params: NeemoParams = NeemoParams(), progress: bool = False) -> FitResult:
    """Fit K shapes to each event (points [N, 2], energies [N]) by the NEEMo min-max game."""
    import tensorflow as tf

    x_np, w_np = _pad_events(events)
    e = len(events)
    centre, scale = _frame(x_np[w_np > 0][None])
    rng = np.random.default_rng(params.seed)
    tf.keras.utils.set_random_seed(params.seed)
    xn = tf.constant(((x_np - centre) / scale).astype(np.float32))
    wt = tf.constant(w_np.astype(np.float32))
    c0, frac0 = _initial_shapes(x_np, w_np, fit.k, fit.init, rng)
    c0 = (c0 - centre) / scale
    dirs, offs, rel_w = (tf.constant(a.astype(np.float32)) for a in _unit_templates(fit.shape, fit.samples_per_shape))
    v_centres = tf.Variable(c0.astype(np.float32))
    v_log_r = tf.Variable(np.full((e, fit.k), np.log(0.05), np.float32))
    v_log_w = tf.Variable(np.full((e, fit.k), np.log(0.02), np.float32))
    v_logits = tf.Variable(np.log(frac0).astype(np.float32))
    shape_vars = [v_centres]
    if fit.shape in ("circle", "ring"):
        shape_vars.append(v_log_r)
    if fit.shape == "ring":
        shape_vars.append(v_log_w)
    fractions_nearest = fit.learn_fractions and fit.k > 1
    pot = _potential(params, e, scale)
    opt_f = tf.keras.optimizers.Adam(fit.potential_learning_rate)
    # the shape step decays to a tenth over the fit, so the shapes settle instead of jittering
    # around the optimum with Adam's constant step
    shape_decay = 0.1 ** (1.0 / max(fit.shape_steps, 1))
    opt_s = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.ExponentialDecay(
        fit.shape_learning_rate, 1, shape_decay))

    def samples():
        r = tf.exp(v_log_r)[..., None]                                  # [E, K, 1]
        rad = r + tf.exp(v_log_w)[..., None] * offs if fit.shape == "ring" else r * tf.ones_like(offs)
        pts = v_centres[:, :, None, :] + rad[..., None] * dirs          # [E, K, S, 2]
        if fit.shape == "point":
            pts = v_centres[:, :, None, :]
        wts = tf.nn.softmax(v_logits, axis=-1)[..., None] * rel_w       # [E, K, S]
        return tf.reshape(pts, (e, -1, 2)), tf.reshape(wts, (e, -1))

    def dual():
        s_pts, s_w = samples()
        fx, fs = pot(xn), pot(s_pts)
        return tf.reduce_sum(wt * fx, -1) - tf.reduce_sum(s_w * fs, -1)

    def distances(s_pts):
        return scale * tf.sqrt(tf.reduce_sum(tf.square(xn[:, :, None, :] - s_pts[:, None, :, :]), -1) + 1e-12)

    def transformed():
        """The dual after a double c-transform of the potential (`c_transform_refine`), as a
        function of the shapes: its gradient moves each shape towards the deposits that the
        transform assigns to it (a Weiszfeld-like step), where the network's own gradient at
        a shape is the slope of a cone tip the network only approximates."""
        s_pts, s_w = samples()
        fx = pot(xn)
        d = distances(s_pts)
        v = tf.reduce_max(fx[:, :, None] - d - 1e9 * tf.cast(wt <= 0, tf.float32)[:, :, None], axis=1)
        u = tf.reduce_min(v[:, None, :] + d, axis=2)
        return tf.reduce_sum(wt * u, -1) - tf.reduce_sum(s_w * v, -1)

    def nearest_energy():
        """Energy of the deposits nearest to each shape [E, K] (nearest of its samples)."""
        d = distances(samples()[0])
        to = tf.one_hot(tf.argmin(d, axis=2), tf.shape(d)[2])                     # [E, N, S]
        per_sample = tf.reduce_sum(wt[..., None] * to, axis=1)                    # [E, S]
        return tf.reduce_sum(tf.reshape(per_sample, (e, fit.k, -1)), -1)

    @tf.function
    def potential_step():
        with tf.GradientTape() as tape:
            value = dual()
            loss = -tf.reduce_sum(value)
        opt_f.apply_gradients(zip(tape.gradient(loss, pot.trainable_variables), pot.trainable_variables))
        return value

    @tf.function
    def shape_step():
        with tf.GradientTape() as tape:
            value = transformed()
            loss = tf.reduce_sum(value)
        opt_s.apply_gradients(zip(tape.gradient(loss, shape_vars), shape_vars))
        if fractions_nearest:
            # The fractions are not descended on: for a fixed potential the game is linear
            # in them and gradient play circles the saddle (2-5% L1 off, which costs more
            # exact EMD than the centres gain over k-means). With free fractions the dual's
            # optimal potential takes one value on all shapes (it is sum p f(x) - max_k f(c_k)),
            # so its plan sends each deposit to the nearest shape: the fractions are the
            # energies nearest to each shape, set after every shape step.
            v_logits.assign(tf.math.log(tf.maximum(nearest_energy(), 1e-6)))
        return value

    def exact_now() -> np.ndarray:
        s_pts, s_w = (t.numpy().astype(np.float64) for t in samples())
        return np.array([exact_emd_points(x_np[i], w_np[i], s_pts[i] * scale + centre, s_w[i]) for i in range(e)])

    t0 = time.perf_counter()
    track = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=fit.shape_steps, desc="NEEMo fit", unit="step", leave=False)
    value = None
    for _ in range(fit.warmup_steps):
        value = potential_step()
    for s in range(fit.shape_steps + 1):
        for _ in range(fit.inner_steps):
            value = potential_step()
        if s % fit.track_every == 0 or s == fit.shape_steps:
            est = np.maximum(value.numpy(), transformed().numpy()).astype(np.float64)
            track.append({"step": s, "estimate": est, "exact": exact_now()})
        if s < fit.shape_steps:
            shape_step()
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    exact = exact_now()
    s_pts, s_w = (t.numpy().astype(np.float64) * 1.0 for t in samples())
    s_pts = s_pts * scale + centre
    # the fitted configuration's estimate: a fresh potential, the full estimator schedule
    final = kr_estimate(np.concatenate([x_np, s_pts], 1), np.concatenate([w_np, -s_w], 1), params)
    radii = np.exp(v_log_r.numpy()) * scale if fit.shape != "point" else np.zeros((e, fit.k))
    widths = np.exp(v_log_w.numpy()) * scale if fit.shape == "ring" else np.zeros((e, fit.k))
    return FitResult(v_centres.numpy() * scale + centre, radii, widths,
                     tf.nn.softmax(v_logits, -1).numpy().astype(np.float64), final.estimate, exact, track,
                     time.perf_counter() - t0, [(s_pts[i], s_w[i]) for i in range(e)],
                     final.potential, final.centre, final.scale)


def synthetic_event(n_clusters: int, seed: int, deposits_per_cluster: int = 60,
                    noise_fraction: float = 0.05) -> dict:
    """A multi-cluster energy map in the unit square (arbitrary units).

    Clusters: centres uniform in [-1, 1]^2 at least 0.5 apart; energies from a falling
    (1/E^2-like) spectrum; each deposit's offset has a shower-like lateral profile (a
    Gaussian core of width sigma in [0.04, 0.12] plus a 20% halo three times wider); plus
    uniform noise deposits carrying `noise_fraction` of the energy (pile-up-like)."""
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < n_clusters:
        c = rng.uniform(-1, 1, 2)
        if all(np.linalg.norm(c - o) >= 0.5 for o in centres):
            centres.append(c)
    centres_a = np.array(centres)
    energy = 1.0 / rng.uniform(0.2, 1.0, n_clusters)       # falling spectrum
    pts, en = [], []
    for c, e_c in zip(centres_a, energy):
        sigma = rng.uniform(0.04, 0.12)
        halo = rng.random(deposits_per_cluster) < 0.2
        off = rng.normal(0, 1, (deposits_per_cluster, 2)) * np.where(halo, 3 * sigma, sigma)[:, None]
        share = rng.gamma(2.0, 1.0, deposits_per_cluster)
        pts.append(c + off)
        en.append(e_c * share / share.sum())
    n_noise = max(1, deposits_per_cluster * n_clusters // 10)
    pts.append(rng.uniform(-1.3, 1.3, (n_noise, 2)))
    en.append(np.full(n_noise, noise_fraction * energy.sum() / n_noise))
    e_all = np.concatenate(en)
    return {"points": np.concatenate(pts), "energies": e_all / e_all.sum(), "centres": centres_a,
            "cluster_energy": energy / e_all.sum()}
