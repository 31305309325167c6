"""The detector generator, its calibration and the held-out guard of the simulated crossings,
and the link allocation that places modules."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import error_line
from econ_emd.base.errors import DataError
from econ_emd.data import crossings
from econ_emd.data.allocation import embedded_allocation, read_allocation, ring2
from econ_emd.data.crossings import (N_CROSSINGS, Crossings, HeldOutAccess, heldout_crossings, part_indices,
                                     require_training, training_crossings)
from econ_emd.data.detector import (CALIBRATION, DROPPED_LSBS, Placement, allocation_placement, generate_detector,
                                    reference_placement)
from econ_emd.data.realism import distances, module_statistics
from econ_emd.econt.codes import E4M3, decode

FIXTURE = Path(__file__).parent / "fixtures" / "module_links_sample.csv"


# --- the split of the simulated crossings ----------------------------------------------

def test_split_is_fixed_disjoint_and_covers_every_crossing():
    train, held = part_indices("training"), part_indices("heldout")
    assert train.size == held.size == N_CROSSINGS // 2
    assert np.intersect1d(train, held).size == 0
    assert np.array_equal(np.union1d(train, held), np.arange(N_CROSSINGS))
    assert (held % 2 == 1).all()
    from econ_emd.econt.vectors import simulated_calq

    every = simulated_calq()
    np.testing.assert_array_equal(training_crossings().charges, every[0::2])
    np.testing.assert_array_equal(heldout_crossings().charges, every[1::2])
    assert not training_crossings().charges.flags.writeable


def test_require_training_refuses_held_out_rows():
    train = training_crossings()
    np.testing.assert_array_equal(require_training(train, "a test"), train.charges)
    with pytest.raises(HeldOutAccess, match=r"a test may read only the training part .* \(got 1782 held-out"):
        require_training(heldout_crossings(), "a test")
    smuggled = Crossings(charges=train.charges, index=np.r_[train.index[:-1], 7], part="training")
    with pytest.raises(HeldOutAccess, match=r"got 1 held-out"):
        require_training(smuggled, "a test")


def test_calibration_and_training_data_never_read_held_out_crossings(monkeypatch):
    """Every read of the crossings goes through `crossings._part`: a spy on it sees only
    the training part while the calibration fits and while the data stage builds its
    modules from the crossings or the generator; it does see a held-out read (the spy
    works), and the fit refuses held-out crossings (negative controls)."""
    from econ_emd.data.dataset import SPLITS, build_dataset
    from econ_emd.data.detector_fit import fit
    from econ_emd.data.params import DataParams

    seen: list[str] = []
    real = crossings._part
    monkeypatch.setattr(crossings, "_part", lambda part: seen.append(part) or real(part))

    fit(training_crossings(), n_modules=300, generations=1, max_evals=4)
    ds = build_dataset(DataParams(source="simulated_crossings"), seed=3)
    build_dataset(DataParams(source="detector", n_modules=200), seed=3)
    assert seen and set(seen) == {"training"}
    rows = np.concatenate([ds[s] for s in SPLITS])
    train_rows = {r.tobytes() for r in training_crossings().charges}
    assert rows.shape[0] == N_CROSSINGS // 2 and all(r.tobytes() in train_rows for r in rows)

    heldout_crossings()
    assert seen[-1] == "heldout"
    with pytest.raises(HeldOutAccess):
        fit(heldout_crossings(), n_modules=300, generations=0, max_evals=1)


# --- the generator ---------------------------------------------------------------------

def test_generator_is_deterministic_and_speaks_the_asics_values():
    a = generate_detector(2000, 5).charges
    np.testing.assert_array_equal(a, generate_detector(2000, 5).charges)
    assert not np.array_equal(a, generate_detector(2000, 6).charges)
    seq = np.random.SeedSequence(5)
    np.testing.assert_array_equal(generate_detector(2000, seq).charges, a)    # the caller's sequence is not consumed
    np.testing.assert_array_equal(generate_detector(2000, seq).charges, a)
    # every value is one the ECON-T's float-to-fix outputs for a high-density module
    assert np.isin(a, decode(np.arange(128), E4M3, DROPPED_LSBS[True])).all()


def test_dropped_bits_are_those_of_the_asic_front_end():
    from econ_emd.econt.algorithms import calq
    from econ_emd.econt.registers import AsicConfig

    codes = np.repeat(np.arange(128)[:, None], 48, 1)
    for hd in (True, False):
        np.testing.assert_array_equal(calq(codes, AsicConfig(high_density=hd)), decode(codes, E4M3, DROPPED_LSBS[hd]))


#: distances of 4,000 modules (seed 11) from the held-out crossings: the bounds are the
#: values measured at the calibration (docs/reference.md) plus a margin for other
#: platforms' floating point; the training crossings themselves are at the floor
BOUNDS = {"occupancy_ks": 0.10, "spectrum_ks": 0.03, "sum_ks": 0.06, "correlation_rms": 0.03,
          "cell_mean_rms": 0.13}


def test_generated_modules_resemble_held_out_crossings_and_the_sparse_generator_does_not():
    from econ_emd.data.synthetic import generate

    held = module_statistics(heldout_crossings().charges)
    new = distances(module_statistics(generate_detector(4000, 11).charges), held)
    old = distances(module_statistics(generate(4000, 11)), held)
    for key, bound in BOUNDS.items():
        assert getattr(new, key) < bound, (key, getattr(new, key))
    # negative control: the sparse generator is far from the crossings on every distribution
    for key in ("occupancy_ks", "spectrum_ks", "sum_ks", "correlation_rms"):
        assert getattr(old, key) > 4 * getattr(new, key), (key, getattr(old, key), getattr(new, key))
    assert old.occupancy_ks > 0.9 and old.sum_ks > 0.9


def test_modules_are_busier_near_the_beam_and_at_higher_pileup():
    def occupancy(pl, pileup=200.0):
        return np.median((generate_detector(len(pl), 2, pl, pileup=pileup).charges > 35).sum(1))

    near = reference_placement(1500)
    far = Placement(**{**near.__dict__, "beam_distance": near.beam_distance * 2.0})
    assert occupancy(near) > occupancy(far) + 10
    assert occupancy(near, pileup=100.0) < occupancy(near) - 3


def test_low_density_modules_use_the_low_density_code():
    pl = reference_placement(500)
    ld = Placement(**{**pl.__dict__, "high_density": np.zeros(500, bool)})
    q = generate_detector(500, 4, ld).charges
    assert np.isin(q, decode(np.arange(128), E4M3, DROPPED_LSBS[False])).all()
    assert not np.isin(q, decode(np.arange(128), E4M3, DROPPED_LSBS[True])).all()


def test_refit_improves_a_perturbed_model():
    """The refit command's minimizer moves a spoiled model back towards the data."""
    from econ_emd.data.detector_fit import FitTarget, fit, fit_loss

    spoiled = CALIBRATION.with_values(mb_deposits_per_tc=CALIBRATION.mb_deposits_per_tc * 1.6)
    target = FitTarget.of(training_crossings().charges)
    before = fit_loss(module_statistics(generate_detector(1500, 9, model=spoiled).charges), target)
    result = fit(training_crossings(), start=spoiled, n_modules=1500, seed=9, generations=3, max_evals=30)
    assert result.loss < 0.8 * before


# --- the link allocation ---------------------------------------------------------------

def test_embedded_allocation_counts_the_detectors_modules():
    alloc = embedded_allocation()
    assert alloc.n_modules == 10_392
    per = alloc.modules_per_link_count()
    assert [per[k] for k in (1, 2, 3, 4, 5)] == [696, 7878, 564, 240, 186]
    # the high-density modules are the inner ones of every layer that has both
    for layer in np.unique(alloc.layer):
        hd = (alloc.layer == layer) & alloc.high_density
        ld = (alloc.layer == layer) & ~alloc.high_density
        if hd.any() and ld.any():
            mean_ring = [np.average(alloc.ring2[k], weights=alloc.modules[k]) for k in (hd, ld)]
            assert mean_ring[0] < mean_ring[1], layer


def test_allocation_placement_draws_modules_as_asked():
    alloc = embedded_allocation()
    pl = allocation_placement(alloc, 20_000, np.random.default_rng(0), links=[2])
    assert (pl.links == 2).all()
    hd_share = alloc.modules[alloc.high_density & (alloc.links == 2)].sum() / alloc.modules[alloc.links == 2].sum()
    assert abs(pl.high_density.mean() - hd_share) < 0.01                  # every module equally likely
    assert (allocation_placement(alloc, 500, np.random.default_rng(1), layers=[29]).layer == 29).all()
    assert (allocation_placement(alloc, 5000, np.random.default_rng(1)).links > 0).all()   # no 0-link module
    with pytest.raises(DataError, match=r"has no module with links \[12\]"):
        allocation_placement(alloc, 10, np.random.default_rng(0), links=[12])


def test_per_module_allocation_file(tmp_path):
    alloc = read_allocation(FIXTURE)
    assert alloc.n_modules == 12 and alloc.layer.tolist()[:3] == [1, 1, 1]
    assert alloc.ring2.tolist()[:2] == [int(ring2(2, 1)), int(ring2(-1, 1))] == [3, 3]
    assert alloc.high_density.sum() == 4 and alloc.modules_per_link_count()[2] == 5
    pl = allocation_placement(alloc, 300, np.random.default_rng(0), layers=[29])
    assert set(zip(pl.wafer_u.tolist(), pl.wafer_v.tolist())) <= {(1, 2), (7, 3), (8, 1)}
    text = FIXTURE.read_text()
    for bad, pattern in [
        (text.replace("HD_LD", "Density"), r"lacks column\(s\) HD_LD"),
        (text.replace("1,2,1,4,6,HD", "1,2,1,4,6,XD"), r"line 2, column HD_LD: 'XD' is not HD or LD"),
        (text.replace("9,4,4,1,2,LD", "9,4,x,1,2,LD"), r"line 8, column ModV: 'x' is not an integer"),
        (text.replace("44,6,6,1,1", "51,6,6,1,1"), r"line 13, column Layer: 51 is not 1-50"),
        (text.splitlines()[0] + "\n", r"holds no modules"),
    ]:
        f = tmp_path / "bad.csv"
        f.write_text(bad)
        with pytest.raises(DataError, match=pattern) as info:
            read_allocation(f)
        assert "\n" not in str(info.value)


# --- the data stage and its config -----------------------------------------------------

def test_data_stage_with_the_detector_source(tmp_path, capsys):
    import json

    from econ_emd.cli import main
    from econ_emd.config import CONFIG_DIR

    smoke = str(CONFIG_DIR / "smoke.yaml")
    rc = main(["data", "-c", smoke, "--set", "data.source=detector", "--set", "data.n_modules=3000",
               "--set", "data.detector.placement=allocation", "--set", f"data.detector.allocation_path={FIXTURE}",
               "--set", "data.detector.links=[2, 3]", "--run-dir", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "data" / "summary.json").read_text())
    assert summary["source"] == "detector" and set(summary["modules_per_link_count"]) == {"2", "3"}
    rc = main(["data", "-c", smoke, "--set", "data.source=detector", "--set", "data.detector.links=[2]",
               "--run-dir", str(tmp_path / "run2")])
    err = capsys.readouterr().err
    assert rc == 2
    line = error_line(err)
    assert re.search(r"data\.detector: .*set placement: allocation", line), line
