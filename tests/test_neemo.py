"""NEEMo: Lipschitz layers, the KR-dual estimator and geometric fitting (small sizes)."""
import numpy as np
import pytest
import tensorflow as tf

from econ_emd.models.lipschitz import GroupSort, LipschitzDense, PotentialArch, build_potential, check_lipschitz
from econ_emd.neemo.estimate import kr_estimate
from econ_emd.neemo.events import exact_emd_points, kmeans_baseline, synthetic_event
from econ_emd.neemo.fit import fit_shapes
from econ_emd.neemo.params import FitParams, PotentialParams

FAST = PotentialParams(width=32, n_linear=3, group_size=4, steps=400, learning_rate=1e-2, final_learning_rate=1e-3)


def test_groupsort_is_a_permutation_within_groups():
    x = np.random.default_rng(0).normal(size=(2, 5, 12)).astype(np.float32)
    y = GroupSort(4)(x).numpy()
    for g in range(3):
        blk, out = x[..., 4 * g: 4 * g + 4], y[..., 4 * g: 4 * g + 4]
        np.testing.assert_array_equal(np.sort(blk, -1), out)
    with pytest.raises(ValueError, match="multiple"):
        GroupSort(5)(x)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_lipschitz_dense_normalizes_rows_and_passes_gradients(norm):
    layer = LipschitzDense(6, norm, lipschitz=0.5, ensemble=3)
    layer.build((3, None, 4))
    layer.kernel.assign(layer.kernel * 50.0)
    k = layer.normalized_kernel().numpy()             # [E, in, out]: norm over `in`
    norms = np.sqrt((k ** 2).sum(1)) if norm == "l2" else np.abs(k).sum(1)
    assert norms.max() <= 0.5 * (1 + 1e-5) and norms.min() == pytest.approx(0.5, rel=1e-4)
    x = tf.constant(np.ones((3, 2, 4), np.float32))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    g = tape.gradient(y, layer.kernel).numpy()
    assert np.isfinite(g).all() and np.abs(g).max() > 0


def test_lipschitz_bound_holds_after_training():
    """Train potentials hard (large learning rate), then the empirical gradient check."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(-3, 3, (30, 2))
    w = rng.normal(size=(4, 30))
    w -= w.mean(1, keepdims=True)
    res = kr_estimate(pts, w, FAST)
    # the network sees (x - centre) / scale and is built scale-Lipschitz: f is 1-Lipschitz in the plane
    chk = check_lipschitz(res.potential, res.scale, n_points=4000, extent=3.0)
    assert chk["holds"] and chk["max_gradient_norm"] > 0.5 * res.scale   # tight, not vacuous
    fresh = build_potential(PotentialArch(width=16, n_linear=3, group_size=4, lipschitz=2.0), ensemble=2)
    assert check_lipschitz(fresh, 2.0, n_points=2000)["holds"]


def test_two_single_points_give_their_distance():
    pts = np.array([[0.0, 0.0], [3.0, 4.0]])
    res = kr_estimate(pts, np.array([[1.0, -1.0]]), FAST)
    assert res.estimate[0] == pytest.approx(5.0, rel=0.02)
    assert res.estimate[0] <= 5.0 * (1 + 1e-5)            # a lower bound


def test_identical_sets_give_zero_and_estimates_stay_below_exact():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (12, 2))
    p = rng.random(12)
    p /= p.sum()
    q = rng.random(12)
    q /= q.sum()
    # the two sets on the same points: weights p - p (identical) and p - q
    res = kr_estimate(x, np.stack([p - p, p - q]), FAST)
    exact = exact_emd_points(x, p, x, q)
    assert abs(res.estimate[0]) < 1e-6
    assert res.estimate[1] <= exact * 1.01 and res.estimate[1] >= 0.8 * exact


def test_estimator_rejects_unbalanced_sets():
    with pytest.raises(ValueError, match="same total weight"):
        kr_estimate(np.zeros((2, 2)), np.array([[1.0, -0.5]]), FAST)


def test_two_point_fit_recovers_two_separated_clusters():
    ev = synthetic_event(2, seed=4, noise_fraction=0.0)
    fit = FitParams(k=2, shape="point", init="energy", warmup_steps=200, shape_steps=150, inner_steps=20,
                    shape_learning_rate=0.01, potential_learning_rate=3e-3)
    res = fit_shapes([(ev["points"], ev["energies"])], fit, FAST)
    found = res.centres[0]
    d = np.linalg.norm(found[:, None, :] - ev["centres"][None, :, :], axis=-1)
    assert d.min(0).max() < 0.15                          # each true centre has a fitted point near it
    km = kmeans_baseline(ev["points"], ev["energies"], 2)
    assert res.exact[0] <= 1.2 * km["exact_emd"]
    assert [t["step"] for t in res.track][0] == 0 and len(res.track[0]["exact"]) == 1
    # learned fractions: the energy nearest to each fitted point (the free-fraction plan)
    nearest = np.argmin(np.linalg.norm(ev["points"][:, None, :] - found[None], axis=-1), axis=1)
    np.testing.assert_allclose(res.fractions[0], [ev["energies"][nearest == j].sum() for j in range(2)], atol=1e-4)


def test_fit_params_validation():
    with pytest.raises(ValueError, match="shape"):
        FitParams(shape="ellipse")
