import numpy as np

from econ_emd.data.params import SyntheticParams
from econ_emd.data.synthetic import generate, occupancy


def test_deterministic_per_seed():
    a = generate(500, seed=3)
    np.testing.assert_array_equal(a, generate(500, seed=3))
    assert not np.array_equal(a, generate(500, seed=4))


def test_integer_non_negative_charges():
    x = generate(2000, seed=5)
    assert x.shape == (2000, 48)
    assert (x >= 0).all()
    np.testing.assert_array_equal(x, np.round(x))
    p = SyntheticParams()
    nz = x[x > 0]
    assert nz.min() >= p.zero_suppression_adc


def test_occupancy_spread_mostly_sparse():
    x = generate(20000, seed=6)
    occ = occupancy(x)
    assert occ.min() >= 1
    assert occ.max() >= 40           # a dense tail exists
    assert np.median(occ) <= 8       # most modules are sparse
    assert (occ <= 5).mean() > 0.4
    assert len(np.unique(occ)) >= 40  # the range 1..48 is populated


def test_parameters_change_the_data():
    dense = generate(2000, seed=1, params=SyntheticParams(pileup_mu_min=1.0, pileup_mu_max=3.0))
    sparse = generate(2000, seed=1, params=SyntheticParams(pileup_mu_max=0.01))
    assert occupancy(dense).mean() > 2 * occupancy(sparse).mean()
