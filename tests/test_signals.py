"""The low-energy signal study: injection and what a rebuild recovers, on controls whose
answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from econ_emd.training import signals as sg


@pytest.fixture(scope="module")
def injection():
    rng = np.random.default_rng(3)
    base = np.round(rng.gamma(2.0, 40.0, (400, 48)))
    return sg.inject(base, seed=5, energies_mip=(10.0, 50.0))


def test_injection_adds_a_quantized_shower_inside_its_region(injection):
    inj = injection
    assert set(np.unique(inj.energy_mip)) == {10.0, 50.0}
    added = inj.with_signal - inj.base
    inside = (added * inj.region).sum(1)
    assert (inj.true_region_energy == inside).all()
    # most of an EM shower's energy lies within two rings of its centre
    assert 0.7 < np.median(inside / (inj.energy_mip * 35.0)) < 1.05
    big = inj.energy_mip == 50.0
    assert np.median(inside[big]) > 3 * np.median(inside[~big])


def test_a_perfect_rebuild_recovers_everything_and_nothing_recovers_nothing(injection):
    perfect = sg.response("copy", 5, lambda q: q.astype(float), injection)
    assert perfect.efficiency == [1.0, 1.0]
    assert perfect.bias == [0.0, 0.0] and perfect.resolution == [0.0, 0.0]
    assert all(p < 1.5 for p in perfect.position_cm)         # the deposit's centroid, near the centre
    none = sg.response("zero", 5, lambda q: np.zeros(q.shape), injection)
    assert none.efficiency == [0.0, 0.0] and all(np.isnan(none.bias))


def test_sending_only_the_sum_spreads_the_signal_over_the_module(injection):
    """Sum only: the region gets its share of the added energy (about its TCs / 48)."""
    flat = sg.response("sum only", 2, lambda q: np.repeat(q.sum(1, keepdims=True) / 48, 48, axis=1), injection)
    share = injection.region.sum(1).mean() / 48
    assert all(-1 + 0.5 * share < b < -1 + 2 * share for b in flat.bias)
