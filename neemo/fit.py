"""NEEMo geometric fitting: K shapes fitted to an energy map by a min-max game.

Shapes (points, circles, rings; centres, radii, optionally energy fractions) are sampled
densely and differentiably. The potential ascends the KR dual for `inner_steps` steps, then
the shapes take one descent step on it and the energy fractions become the energy of the
deposits nearest to each shape (the plan of the free-fraction dual). Both the NEEMo
estimate and the exact EMD (POT) of the current configuration are recorded along the fit:
with too few inner steps the estimate lags the exact value.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .estimate import _frame, _potential, kr_estimate
from .events import exact_emd_points, kmeans_baseline
from .params import FitParams, PotentialParams


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


class FitGame:
    """The min-max game of one batch of events (points [N, 2], energies [N] each).

    Holds the normalized deposits, the shape variables, the potential and the two
    optimizers; `run` plays `warmup_steps` potential steps on the initial shapes, then
    `inner_steps` potential steps per shape step, and returns the fitted configuration
    with a fresh `kr_estimate` of it (the estimator's own settings)."""

    def __init__(self, events: list[tuple[np.ndarray, np.ndarray]], fit: FitParams, params: PotentialParams,
                 seed: int = 0):
        import tensorflow as tf

        self.fit, self.params, self.seed = fit, params, seed
        self.x_np, self.w_np = _pad_events(events)
        self.n_events = e = len(events)
        self.centre, self.scale = _frame(self.x_np[self.w_np > 0][None])
        rng = np.random.default_rng(seed)
        tf.keras.utils.set_random_seed(seed)
        self.xn = tf.constant(((self.x_np - self.centre) / self.scale).astype(np.float32))
        self.wt = tf.constant(self.w_np.astype(np.float32))
        c0, frac0 = _initial_shapes(self.x_np, self.w_np, fit.k, fit.init, rng)
        c0 = (c0 - self.centre) / self.scale
        self.dirs, self.offs, self.rel_w = (tf.constant(a.astype(np.float32))
                                            for a in _unit_templates(fit.shape, fit.samples_per_shape))
        self.v_centres = tf.Variable(c0.astype(np.float32))
        self.v_log_r = tf.Variable(np.full((e, fit.k), np.log(0.05), np.float32))
        self.v_log_w = tf.Variable(np.full((e, fit.k), np.log(0.02), np.float32))
        self.v_logits = tf.Variable(np.log(frac0).astype(np.float32))
        self.shape_vars = [self.v_centres]
        if fit.shape in ("circle", "ring"):
            self.shape_vars.append(self.v_log_r)
        if fit.shape == "ring":
            self.shape_vars.append(self.v_log_w)
        self.fractions_nearest = fit.learn_fractions and fit.k > 1
        self.pot = _potential(params, e, self.scale)
        self.opt_f = tf.keras.optimizers.Adam(fit.potential_learning_rate)
        # the shape step decays to a tenth over the fit, so the shapes settle instead of jittering
        # around the optimum with Adam's constant step
        shape_decay = 0.1 ** (1.0 / max(fit.shape_steps, 1))
        self.opt_s = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.ExponentialDecay(
            fit.shape_learning_rate, 1, shape_decay))
        self.potential_step = tf.function(self._potential_step)
        self.shape_step = tf.function(self._shape_step)

    def samples(self):
        """The shapes as weighted sample points: ([E, K*S, 2], [E, K*S]), normalized frame."""
        import tensorflow as tf

        fit, e = self.fit, self.n_events
        r = tf.exp(self.v_log_r)[..., None]                                  # [E, K, 1]
        rad = r + tf.exp(self.v_log_w)[..., None] * self.offs if fit.shape == "ring" else r * tf.ones_like(self.offs)
        pts = self.v_centres[:, :, None, :] + rad[..., None] * self.dirs     # [E, K, S, 2]
        if fit.shape == "point":
            pts = self.v_centres[:, :, None, :]
        wts = tf.nn.softmax(self.v_logits, axis=-1)[..., None] * self.rel_w   # [E, K, S]
        return tf.reshape(pts, (e, -1, 2)), tf.reshape(wts, (e, -1))

    def dual(self):
        import tensorflow as tf

        s_pts, s_w = self.samples()
        fx, fs = self.pot(self.xn), self.pot(s_pts)
        return tf.reduce_sum(self.wt * fx, -1) - tf.reduce_sum(s_w * fs, -1)

    def _distances(self, s_pts):
        import tensorflow as tf

        return self.scale * tf.sqrt(tf.reduce_sum(tf.square(self.xn[:, :, None, :] - s_pts[:, None, :, :]), -1)
                                    + 1e-12)

    def transformed(self):
        """The dual after a double c-transform of the potential (`c_transform_refine`), as a
        function of the shapes: its gradient moves each shape towards the deposits that the
        transform assigns to it (a Weiszfeld-like step), where the network's own gradient at
        a shape is the slope of a cone tip the network only approximates."""
        import tensorflow as tf

        s_pts, s_w = self.samples()
        fx = self.pot(self.xn)
        d = self._distances(s_pts)
        v = tf.reduce_max(fx[:, :, None] - d - 1e9 * tf.cast(self.wt <= 0, tf.float32)[:, :, None], axis=1)
        u = tf.reduce_min(v[:, None, :] + d, axis=2)
        return tf.reduce_sum(self.wt * u, -1) - tf.reduce_sum(s_w * v, -1)

    def nearest_energy(self):
        """Energy of the deposits nearest to each shape [E, K] (nearest of its samples)."""
        import tensorflow as tf

        d = self._distances(self.samples()[0])
        to = tf.one_hot(tf.argmin(d, axis=2), tf.shape(d)[2])                     # [E, N, S]
        per_sample = tf.reduce_sum(self.wt[..., None] * to, axis=1)               # [E, S]
        return tf.reduce_sum(tf.reshape(per_sample, (self.n_events, self.fit.k, -1)), -1)

    def _potential_step(self):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = self.dual()
            loss = -tf.reduce_sum(value)
        variables = self.pot.trainable_variables
        self.opt_f.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return value

    def _shape_step(self):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = self.transformed()
            loss = tf.reduce_sum(value)
        self.opt_s.apply_gradients(zip(tape.gradient(loss, self.shape_vars), self.shape_vars))
        if self.fractions_nearest:
            # The fractions are not descended on: for a fixed potential the game is linear
            # in them and gradient play circles the saddle (2-5% L1 off, which costs more
            # exact EMD than the centres gain over k-means). With free fractions the dual's
            # optimal potential takes one value on all shapes (it is sum p f(x) - max_k f(c_k)),
            # so its plan sends each deposit to the nearest shape: the fractions are the
            # energies nearest to each shape, set after every shape step.
            self.v_logits.assign(tf.math.log(tf.maximum(self.nearest_energy(), 1e-6)))
        return value

    def exact_now(self) -> np.ndarray:
        """Exact EMD (POT) of every event against its current shapes."""
        s_pts, s_w = (t.numpy().astype(np.float64) for t in self.samples())
        return np.array([exact_emd_points(self.x_np[i], self.w_np[i], s_pts[i] * self.scale + self.centre, s_w[i])
                         for i in range(self.n_events)])

    def run(self, progress: bool = False) -> FitResult:
        import tensorflow as tf

        fit, e = self.fit, self.n_events
        t0 = time.perf_counter()
        track = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=fit.shape_steps, desc="NEEMo fit", unit="step", leave=False)
        value = None
        for _ in range(fit.warmup_steps):
            value = self.potential_step()
        for s in range(fit.shape_steps + 1):
            for _ in range(fit.inner_steps):
                value = self.potential_step()
            if s % fit.track_every == 0 or s == fit.shape_steps:
                est = np.maximum(value.numpy(), self.transformed().numpy()).astype(np.float64)
                track.append({"step": s, "estimate": est, "exact": self.exact_now()})
            if s < fit.shape_steps:
                self.shape_step()
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        exact = self.exact_now()
        s_pts, s_w = (t.numpy().astype(np.float64) * 1.0 for t in self.samples())
        s_pts = s_pts * self.scale + self.centre
        # the fitted configuration's estimate: a fresh potential, the full estimator schedule
        final = kr_estimate(np.concatenate([self.x_np, s_pts], 1), np.concatenate([self.w_np, -s_w], 1),
                            self.params, self.seed)
        radii = np.exp(self.v_log_r.numpy()) * self.scale if fit.shape != "point" else np.zeros((e, fit.k))
        widths = np.exp(self.v_log_w.numpy()) * self.scale if fit.shape == "ring" else np.zeros((e, fit.k))
        return FitResult(self.v_centres.numpy() * self.scale + self.centre, radii, widths,
                         tf.nn.softmax(self.v_logits, -1).numpy().astype(np.float64), final.estimate, exact, track,
                         time.perf_counter() - t0, [(s_pts[i], s_w[i]) for i in range(e)],
                         final.potential, final.centre, final.scale)


def fit_shapes(events: list[tuple[np.ndarray, np.ndarray]], fit: FitParams = FitParams(),
               params: PotentialParams = PotentialParams(), seed: int = 0, progress: bool = False) -> FitResult:
    """Fit K shapes to each event (points [N, 2], energies [N]) by the NEEMo min-max game."""
    return FitGame(events, fit, params, seed).run(progress)
