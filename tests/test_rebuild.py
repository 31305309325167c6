"""Every rebuild rule and reference code against a hand computation on hand-built modules."""
from __future__ import annotations

import numpy as np
import pytest

from econ_emd.econt.codes import E4M3, E5M3, E5M4, decode, encode
from econ_emd.geometry import stc_order
from econ_emd.training import rebuild as rb


def _module(**tcs) -> np.ndarray:
    q = np.zeros((1, 48), dtype=np.int64)
    for k, v in tcs.items():
        q[0, int(k[1:])] = v
    return q


def _shapes(profile_calq: np.ndarray, size4=None) -> rb.RebuildShapes:
    """Shapes with a given per-TC profile (CALQ order) and, optionally, one STC4 table."""
    base = rb.fit_shapes(np.ones((2, 48), dtype=np.int64))
    groups = dict(base.group_shapes)
    if size4 is not None:
        groups[4] = size4
    return rb.RebuildShapes(cell_profile=np.asarray(profile_calq, dtype=float)[stc_order()], group_shapes=groups)


def test_best_choice_learned_spreads_the_remainder_by_the_training_profile():
    q = _module(t5=1000, t9=300, t30=50, t40=7, t41=6, t42=10)
    profile = np.ones(48)
    profile[41], profile[42] = 3.0, 1.0          # training modules put 3x the charge on TC 41
    e = rb.best_choice_energies(q, 2, 0, "learned", _shapes(profile / profile.sum()))
    kept = [5, 9, 30, 42]                         # 4 TCs at 2 links: 1000, 300, 50, 10
    assert e[0, kept].tolist() == decode(encode(np.array([1000, 300, 50, 10]), E4M3), E4M3).tolist()
    rest = decode(encode(np.array([7 + 6]), E5M3), E5M3)[0]     # the packet's sum of the others
    weights = np.delete(profile, kept)
    np.testing.assert_allclose(np.delete(e[0], kept), rest * weights / weights.sum())
    assert e[0].sum() == pytest.approx(e[0, kept].sum() + rest)
    cmssw = rb.best_choice_energies(q, 2, 0, "cmssw")
    assert cmssw[0, kept].tolist() == e[0, kept].tolist() and np.delete(cmssw[0], kept).sum() == 0


def test_super_trigger_cells_learned_share_the_sum_by_group_and_address():
    order = stc_order()
    a, b = order[4], order[5]          # two TCs of the second STC4 group; b the larger
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, a], q[0, b] = 100, 300
    table = np.full((12, 5, 4), 0.25)
    table[1, 1] = [0.1, 0.6, 0.2, 0.1]             # group 1 with its largest TC at index 1
    shapes = _shapes(np.full(48, 1 / 48), table)
    for links, code in ((4, E4M3), (5, E5M4)):      # STC4A (4E3M) and STC4B (5E4M)
        energy = decode(encode(np.array([400]), code), code)[0]
        e = rb.super_trigger_cell_energies(q, links, 0, "learned", shapes)
        np.testing.assert_allclose(e[0, order[4:8]], energy * np.array([0.1, 0.6, 0.2, 0.1]))
        assert np.delete(e[0], order[4:8]).sum() == 0
        cms = rb.super_trigger_cell_energies(q, links, 0, "cmssw")     # CMSSW: all on the address TC
        assert np.flatnonzero(cms[0]).tolist() == [b] and cms[0, b] == energy
    # CTC4 (3 links) sends no address: the group's pooled shape (index 4), or even for cmssw
    table[1, 4] = [0.4, 0.3, 0.2, 0.1]
    energy = decode(encode(np.array([400]), E4M3), E4M3)[0]
    e = rb.super_trigger_cell_energies(q, 3, 0, "learned", _shapes(np.full(48, 1 / 48), table))
    np.testing.assert_allclose(e[0, order[4:8]], energy * np.array([0.4, 0.3, 0.2, 0.1]))
    np.testing.assert_allclose(rb.super_trigger_cell_energies(q, 3, 0, "cmssw")[0, order[4:8]], energy / 4)


def test_fitted_group_shapes_are_the_training_mean_by_address():
    order = stc_order()
    g = order[4:8]
    train = np.zeros((3, 48), dtype=np.int64)
    train[0, g] = [10, 30, 0, 0]       # address 1: shares (0.25, 0.75, 0, 0)
    train[1, g] = [0, 50, 50, 0]       # address 2 (ties to the higher index): (0, .5, .5, 0)
    train[2, g] = [0, 60, 20, 20]      # address 1: (0, .6, .2, .2)
    s = rb.fit_shapes(train)
    np.testing.assert_allclose(s.group_shapes[4][1, 1], [0.125, 0.675, 0.1, 0.1])
    np.testing.assert_allclose(s.group_shapes[4][1, 2], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(s.group_shapes[4][1, 0], s.group_shapes[4][1, 4])   # unseen: pooled
    np.testing.assert_allclose(s.group_shapes[4][1, 4], [(0.25 + 0 + 0) / 3, (0.75 + 0.5 + 0.6) / 3,
                                                         (0 + 0.5 + 0.2) / 3, (0 + 0 + 0.2) / 3])
    assert s.cell_profile.sum() == pytest.approx(1)


def test_threshold_sum_learned_and_cmssw():
    q = _module(t3=100, t4=46, t7=47)
    flat = _shapes(np.full(48, 1 / 48))
    e, truncated = rb.threshold_sum_energies(q, 2, 47, 0, "learned", flat)
    assert truncated == 0
    assert e[0, [3, 7]].tolist() == decode(encode(np.array([100, 47]), E4M3), E4M3).tolist()
    np.testing.assert_allclose(np.delete(e[0], [3, 7]), 46 / 46)
    c, _ = rb.threshold_sum_energies(q, 2, 47, 0, "cmssw")
    assert np.delete(c[0], [3, 7]).sum() == 0
    busy = np.tile(np.arange(100, 148, dtype=np.int64), (40, 1))     # overflows 2 links' buffer
    e, truncated = rb.threshold_sum_energies(busy, 2, 47, 0, "learned", flat)
    assert 0.5 < truncated < 1
    spread = np.ptp(e, axis=1) == 0                                  # truncated: the sum, spread evenly
    assert spread.sum() == round(truncated * 40)
    c, _ = rb.threshold_sum_energies(busy, 2, 47, 0, "cmssw")
    assert (c.sum(1) == 0).sum() == spread.sum()                     # cmssw: a truncated crossing is empty


def test_reference_codes():
    q = _module(t0=1000, t1=3000)
    total = decode(encode(np.array([4000]), E5M4), E5M4)[0]
    np.testing.assert_allclose(rb.sum_only_energies(q)[0], total / 48)
    profile = np.arange(1, 49, dtype=float)
    avg = rb.average_module_energies(q, _shapes(profile / profile.sum()))
    np.testing.assert_allclose(avg[0], total * profile / profile.sum())
    with pytest.raises(ValueError, match="unknown rebuild rule"):
        rb.best_choice_energies(q, 2, 0, "kind")
    with pytest.raises(ValueError, match="needs the training modules' shapes"):
        rb.best_choice_energies(q, 2, 0, "learned")


def test_the_linear_code_is_exact_with_every_component_and_fine_bits_and_loses_with_few():
    rng = np.random.default_rng(0)
    train = rng.gamma(0.7, 40, (400, 48)).astype(np.int64) + 1
    test = rng.gamma(0.7, 40, (50, 48)).astype(np.int64) + 1
    full = rb.LinearCode.fit(train, n_components=48)
    x = test / test.sum(1, keepdims=True)
    exact = full.mean + ((x - full.mean) @ full.components.T) @ full.components
    np.testing.assert_allclose(exact, x, atol=1e-9)                 # the components span the modules
    e = full.energies(test, 5)                                       # 9-bit coefficients
    assert np.abs(e / e.sum(1, keepdims=True) - x).mean() < 0.0015   # 7% of a TC's mean share, 1/48
    np.testing.assert_allclose(e.sum(1), rb.transmitted_sum(test))
    code = rb.LinearCode.fit(train)                                  # 16 components
    err = {n: np.abs(code.energies(test, n) / rb.transmitted_sum(test)[:, None] - x).mean() for n in (2, 5)}
    assert err[2] > err[5]                                           # 3-bit coefficients lose more than 9-bit
