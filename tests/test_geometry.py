import numpy as np
import pytest

from econ_emd import geometry as g


def test_adjacent_tcs_are_two_apart_and_max_distance():
    d = g.distance_matrix()
    assert d.shape == (48, 48)
    np.testing.assert_allclose(np.diag(d), 0)
    np.testing.assert_allclose(d, d.T)
    # inside each rhombus the nearest TCs are 2.0 apart (to the table precision, ~1e-5)
    for r in range(3):
        block = d[16 * r:16 * r + 16, 16 * r:16 * r + 16]
        np.testing.assert_allclose(block[~np.eye(16, dtype=bool)].min(), 2.0, atol=1e-5)
    # across the seams between rhombi the nearest TCs are 1.80 apart
    assert d[~np.eye(48, dtype=bool)].min() == pytest.approx(1.8028, abs=1e-3)
    assert 13.7 < d.max() < 13.8
    # CALQ 0 and 1 are vertical neighbours, 0 and 4 diagonal neighbours
    np.testing.assert_allclose([d[0, 1], d[0, 4]], [2.0, 2.0], atol=1e-5)
    # every TC has between 2 and 6 neighbours, most interior TCs 6
    counts = np.array([len(n) for n in g.neighbours()])
    assert counts.min() >= 2 and counts.max() == 6


def test_8x8_round_trip_and_dead_pixels():
    x = np.random.default_rng(0).random((5, 48))
    img = g.calq_to_8x8(x)
    assert img.shape == (5, 8, 8)
    np.testing.assert_array_equal(img[:, 4:, 4:], 0)
    np.testing.assert_array_equal(g.image8x8_to_calq(img), x)
    np.testing.assert_array_equal(g.image8x8_to_calq(img[..., None]), x)
    assert g.MASK_8X8.sum() == 48


def test_8x8_layout_matches_design_table():
    img = g.calq_to_8x8(np.arange(48))
    assert img[0].tolist() == [28, 29, 30, 31, 0, 4, 8, 12]
    assert img[3].tolist() == [16, 17, 18, 19, 3, 7, 11, 15]
    assert img[4, :4].tolist() == [47, 43, 39, 35]
    assert img[7, :4].tolist() == [44, 40, 36, 32]


def test_remap_table_agrees_with_8x8_layout():
    table = g.remap_table()
    calq, slot = table[:, 2], table[:, 3]
    np.testing.assert_array_equal(g.pixel_of_ae_block(slot), g.PIXEL_OF_CALQ_8X8[calq])


def test_4x4x3_round_trip_and_layout():
    x = np.random.default_rng(1).random((3, 48))
    img = g.calq_to_4x4x3(x)
    assert img.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(g.image4x4x3_to_calq(img), x)
    lay = g.calq_to_4x4x3(np.arange(48))
    for c in range(3):
        for r in range(4):
            for col in range(4):
                assert lay[r, col, c] == 4 * r + col + 16 * c


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        g.calq_to_8x8(np.zeros(47))
    with pytest.raises(ValueError):
        g.image4x4x3_to_calq(np.zeros((4, 4, 2)))


def test_rhombi_are_compact():
    """Each 16-TC rhombus is a connected block: its TCs are closer to each other than to far TCs."""
    c = g.tc_centres()
    for r in range(3):
        block = c[16 * r:16 * r + 16]
        assert np.ptp(block, axis=0).max() < 12


HEX_STEPS = {(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)}


def _uv_adjacency() -> np.ndarray:
    """Adjacency from the remap table's (u, v) cell coordinates alone: on the hexagonal
    lattice neighbours differ by +-(1, 0), +-(0, 1) or +-(1, 1). Independent of the centres."""
    r = g.remap_table()
    uv = np.zeros((48, 2), int)
    uv[r[:, 2]] = r[:, :2]
    return np.array([[tuple(uv[j] - uv[i]) in HEX_STEPS for j in range(48)] for i in range(48)])


def _centre_adjacency(centres: np.ndarray) -> np.ndarray:
    d = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    return (d > 0) & (d <= 2.5)


def test_adjacency_matches_the_independent_uv_lattice():
    uv = _uv_adjacency()
    assert (uv == uv.T).all()
    # 6 corner TCs with 3 neighbours, 15 edge TCs with 4, 27 inner TCs with 6: 102 pairs
    assert np.bincount(uv.sum(1)).tolist() == [0, 0, 0, 6, 15, 0, 27]
    np.testing.assert_array_equal(_centre_adjacency(g.tc_centres()), uv)
    for i, nb in enumerate(g.neighbours()):
        assert set(nb.tolist()) == set(np.flatnonzero(uv[i]).tolist())
    d = g.distance_matrix()[uv]
    assert set(np.round(d, 3).tolist()) == {1.803, 2.0, 2.291}


def test_uv_check_catches_two_swapped_centres():
    """Negative control: swapping the centres of TC 5 and TC 10 must be seen."""
    c = g.tc_centres().copy()
    c[[5, 10]] = c[[10, 5]]
    assert not (_centre_adjacency(c) == _uv_adjacency()).all()
