"""The equal-bandwidth comparison's decoding rules on hand-built modules."""
from __future__ import annotations

import numpy as np
import pytest

from econ_emd.geometry import COORD_SCALE, stc_order, tc_centres
from econ_emd.econt.codes import E4M3, E5M4, decode, encode
from econ_emd.training import compare_econt as bw
from econ_emd.training.params import CompareEcontParams


def _module(**tcs) -> np.ndarray:
    q = np.zeros((1, 48), dtype=np.int64)
    for k, v in tcs.items():
        q[0, int(k[1:])] = v
    return q


def test_stc_order_groups_are_compact_2x2_blocks_of_each_rhombus():
    order = stc_order()
    assert sorted(order.tolist()) == list(range(48))
    c = tc_centres()
    for g in order.reshape(12, 4):
        d = max(np.linalg.norm(c[a] - c[b]) for a in g for b in g)
        assert d == pytest.approx(2 * np.sqrt(3), abs=1e-4)      # a 2x2 rhombic block
    for r, g in enumerate(order.reshape(3, 16)):
        assert set(g.tolist()) == set(range(16 * r, 16 * r + 16))  # STC16 = one rhombus


def test_received_reads_zero_codes_as_empty():
    assert bw.received(np.array([0, 8]), E4M3, 3).tolist() == [0, decode([8], E4M3, 3)[0]]


def test_best_choice_keeps_the_largest_tcs_at_their_code_values():
    q = _module(t5=1000, t9=300, t30=50, t40=7, t41=6)
    e = bw.best_choice_energies(q, 2, 0)           # 4 TCs at 2 links
    kept = [5, 9, 30, 40]
    expected = decode(encode(np.array([1000, 300, 50, 7]), E4M3), E4M3)
    assert e[0, kept].tolist() == expected.tolist()
    # the packet's sum of the TCs not sent (TC 41: 6, exact in 5E3M) spread over the other 44
    rest = np.delete(e[0], kept)
    assert np.allclose(rest, 6 / 44)


def test_super_trigger_cells_put_the_group_energy_on_its_largest_tc():
    order = stc_order()
    a, b = order[4], order[5]          # two TCs of the second STC4 group
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, a], q[0, b] = 100, 300
    for links in (4, 5):               # STC4, 4E3M and 5E4M
        e = bw.super_trigger_cell_energies(q, links, 0)
        assert np.flatnonzero(e[0]).tolist() == [b]
        code = E4M3 if links == 4 else E5M4
        assert e[0, b] == decode(encode(np.array([400]), code), code)[0]
    e = bw.super_trigger_cell_energies(q, 3, 0)     # CTC4: no address, spread evenly
    assert sorted(np.flatnonzero(e[0]).tolist()) == sorted(order[4:8].tolist())
    assert np.allclose(e[0, order[4:8]], decode(encode(np.array([400]), E4M3), E4M3)[0] / 4)
    e = bw.super_trigger_cell_energies(q, 2, 0)     # STC16: the whole rhombus on its maximum
    assert np.flatnonzero(e[0]).tolist() == [b]


def test_threshold_sum_keeps_tcs_above_threshold_and_spreads_truncated_sums():
    q = _module(t3=100, t4=46, t7=47)
    e, truncated = bw.threshold_sum_energies(q, 2, 47, 0)
    assert truncated == 0
    assert e[0, [3, 7]].tolist() == decode(encode(np.array([100, 47]), E4M3), E4M3).tolist()
    assert np.allclose(np.delete(e[0], [3, 7]), 46 / 46)     # the sum below threshold, spread
    # a stream of full modules overflows 2 links' buffer (T1 = 48 words): later crossings
    # are truncated and carry only their sum, spread over the 48 TCs
    busy = np.tile(np.arange(100, 148, dtype=np.int64), (40, 1))
    e, truncated = bw.threshold_sum_energies(busy, 2, 47, 0)
    assert 0.5 < truncated < 1
    flat = np.ptp(e, axis=1) == 0
    assert flat.sum() == round(truncated * 40)
    assert np.allclose(e[flat].sum(1), e[flat][0].sum())


def test_autoencoder_energies_carry_the_transmitted_sum():
    q = _module(t0=1000, t1=3000)
    recon = np.zeros((1, 48))
    recon[0, :2] = [0.1, 0.3]
    e = bw.autoencoder_energies(q, recon)
    total = decode(encode(np.array([4000]), E5M4), E5M4)[0]
    assert e[0].sum() == pytest.approx(total) and e[0, 1] == pytest.approx(3 * e[0, 0])


def test_centroid_shift_in_cm():
    a, b = _module(t0=10), _module(t1=10)
    c = tc_centres() * COORD_SCALE
    assert bw.centroid_shift(a, a)[0] == 0
    assert bw.centroid_shift(a, b)[0] == pytest.approx(np.linalg.norm(c[0] - c[1]))


def test_judge_on_a_perfect_copy():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 200, size=(20, 48))
    j = bw.judge("copy", 5, q, q.astype(float))
    assert j.emd["overall"]["median"] == pytest.approx(0, abs=1e-9)
    assert j.energy_ratio["median"] == pytest.approx(1)


def test_link_counts_are_validated():
    with pytest.raises(ValueError, match="link_counts: 7"):
        CompareEcontParams(link_counts=[2, 7])
    with pytest.raises(ValueError, match="repeated"):
        CompareEcontParams(link_counts=[3, 3])


def test_cms_autoencoder_rebuilds_the_published_network():
    """The shipped CMS weights, through the ASIC's arithmetic and the published decoder, give
    a module of the transmitted sum, and on shower-like modules a pattern closer than a flat
    one (measured: median 2.30 against 3.64 on 400 synthetic modules)."""
    from econ_emd.data.params import SyntheticParams
    from econ_emd.data.synthetic import generate
    from econ_emd.econt.vectors import cms_autoencoder_weights

    q = bw.integer_calq(generate(600, 3, SyntheticParams()))
    q = q[q.sum(1) > 0][:400]
    e = bw.cms_autoencoder_energies(q, *cms_autoencoder_weights())
    total = decode(encode(q.sum(1), E5M4), E5M4)
    assert e.shape == q.shape and (e >= 0).all()
    np.testing.assert_allclose(e.sum(1), total, rtol=1e-5)
    cms = bw.judge("cms", 5, q, e).median_emd
    flat = bw.judge("flat", 5, q, np.ones(q.shape)).median_emd
    assert cms < 0.75 * flat


def test_a_bad_weights_file_is_a_one_line_error(tmp_path):
    from econ_emd.base.errors import ModelFileError

    bad = tmp_path / "w.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(ModelFileError, match="not a Keras weights file"):
        bw.cms_autoencoder_energies(np.ones((2, 48), dtype=np.int64), str(bad), str(bad))
