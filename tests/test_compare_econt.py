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
    from econ_emd.training.rebuild import received

    assert received(np.array([0, 8]), E4M3, 3).tolist() == [0, decode([8], E4M3, 3)[0]]


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
    assert j.median_interval == pytest.approx([0, 0], abs=1e-9)


def test_the_median_interval_covers_the_median_and_shrinks_with_more_modules():
    rng = np.random.default_rng(1)
    few, many = rng.exponential(1.0, 50), rng.exponential(1.0, 5000)
    lo, hi = bw.median_interval(few, np.random.default_rng(2))
    assert lo <= np.median(few) <= hi
    lo2, hi2 = bw.median_interval(many, np.random.default_rng(2))
    assert hi2 - lo2 < (hi - lo) / 4


def _row(name, n, median, kind="algorithm"):
    return bw.Judged(name, n, emd={"overall": {"median": median}}, kind=kind)


def test_the_weighted_summary_and_the_verdicts_by_hand():
    rows = [_row("bc", 2, 1.0), _row("bc", 5, 0.2), _row("ae", 2, 0.8), _row("ae", 5, 0.5),
            _row("sum only", 2, 2.0, "reference"), _row("sum only", 5, 2.0, "reference"), _row("stc", 2, 3.0)]
    w = {2: 0.9, 5: 0.1}
    summary = bw.weighted_summary(rows, w)
    assert summary == pytest.approx({"bc": 0.92, "ae": 0.77, "sum only": 2.0})   # stc: not at every link count
    v = bw.verdicts(rows, "ae")
    assert v["2"]["best"] == "ae" and all(x["beats"] for x in v["2"]["encoder_vs"].values())
    assert v["5"]["best"] == "bc" and not v["5"]["encoder_vs"]["bc"]["beats"]
    assert v["5"]["encoder_vs"]["bc"]["ratio"] == pytest.approx(2.5)


def test_link_weights_follow_the_detectors_allocation():
    from econ_emd.stages.compare_econt import link_weights

    w = link_weights([2, 3, 4, 5])
    assert w[2] == pytest.approx(7878 / (7878 + 564 + 240 + 186)) and sum(w.values()) == pytest.approx(1)


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

    from econ_emd.training.rebuild import integer_calq

    q = integer_calq(generate(600, 3, SyntheticParams()))
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


def test_a_pooled_row_keeps_each_seeds_median():
    """Two trainings' rebuilds pooled in one row: a perfect one (EMD 0) and one with every
    module's energy moved to one cell; each keeps its own median beside the pooled one."""
    rng = np.random.default_rng(3)
    calq = rng.integers(1, 200, size=(50, 48))
    moved = np.zeros_like(calq)
    moved[:, 0] = calq.sum(1)
    row = bw.judge("autoencoder", 2, np.concatenate([calq, calq]), np.concatenate([calq, moved]).astype(float),
                   kind="autoencoder", seeds=2)
    assert row.seed_medians[0] == 0.0 and row.seed_medians[1] > 1.0
    assert "seeds' medians 0.000-" in row.note
    assert bw.judge("x", 2, calq, calq.astype(float)).seed_medians == []
