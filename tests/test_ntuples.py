"""The CMS HGCAL trigger-ntuple loader on ntuples written here with uproot in the TPG's
schema (tree hgcalTriggerNtuplizer/HGCalTriggerNtuple, one list per branch and event)."""
from __future__ import annotations

import re

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import error_line
from econ_emd.base.errors import DataError
from econ_emd.geometry import distance_matrix, remap_table
from econ_emd.base.units import ADC_PER_MIP_T
from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR
from econ_emd.data.loaders import load_modules
from econ_emd.data.ntuples import NTUPLE_TREE, read_ntuples

SMOKE = str(CONFIG_DIR / "smoke.yaml")
PLACE = ("tc_subdet", "tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu", "tc_cellv")
CHARGES = ("tc_uncompressedCharge", "tc_data", "tc_mipPt")


def write_ntuple(path, events, tree=NTUPLE_TREE, types=None, drop=()):
    """`events`: per event a list of TCs (subdet, zside, layer, waferu, waferv, cellu, cellv,
    uncompressedCharge, data, mipPt). Branches are jagged int32 (places), uint32 (charges)
    and float32 (mipPt) unless `types` says otherwise; `drop` leaves branches out."""
    names = (*PLACE, *CHARGES)
    types = {**{n: np.int32 for n in PLACE}, "tc_uncompressedCharge": np.uint32, "tc_data": np.uint32,
             "tc_mipPt": np.float32, **(types or {})}
    arrays = {n: ak.values_astype(ak.Array([[tc[i] for tc in ev] for ev in events]) if events
                                  else ak.Array([[0]])[:0], types[n])
              for i, n in enumerate(names) if n not in drop}
    with uproot.recreate(path) as fh:
        t = fh.mktree(tree, {n: a.type.content for n, a in arrays.items()})
        if events:
            t.extend(arrays)
    return path


def _cell(calq: int) -> tuple[int, int]:
    """(cellu, cellv) of CALQ index `calq`, from the product's geometry table."""
    table = remap_table()
    row = table[table[:, 2] == calq][0]
    return int(row[0]), int(row[1])


def _events(n_events=10, seed=0):
    """Per event: a CE-E module (layer 5, wafer (3, 2), +z) with 20 TCs, a CE-H module
    (layer 30, wafer (-2, 4), -z) with 5, and a scintillator cell (no wafer)."""
    rng = np.random.default_rng(seed)
    events, truth = [], []
    for _ in range(n_events):
        ee, hsi = rng.choice(48, 20, replace=False), rng.choice(48, 5, replace=False)
        q_ee, q_h = rng.integers(1, 4000, 20), rng.integers(1, 4000, 5)
        ev = [(1, 1, 5, 3, 2, *_cell(c), int(q), int(q) // 2, q / 16) for c, q in zip(ee, q_ee)]
        ev += [(2, -1, 30, -2, 4, *_cell(c), int(q), int(q) // 2, q / 16) for c, q in zip(hsi, q_h)]
        ev += [(10, 1, 40, -999, -999, 5, 77, 300, 150, 18.75)]
        events.append(ev)
        a, b = np.zeros(48), np.zeros(48)
        a[ee], b[hsi] = q_ee, q_h
        truth.append((b, a))          # zside -1 sorts first
    return events, truth


def test_modules_are_grouped_and_cells_placed_by_the_geometry_table(tmp_path, monkeypatch):
    from econ_emd.data import ntuples

    events, truth = _events()
    f = write_ntuple(tmp_path / "a.root", events)
    got = read_ntuples([f])
    monkeypatch.setattr(ntuples, "STEP_SIZE", 3)          # read 3 events at a time: same modules, same events
    in_steps = read_ntuples([f])
    np.testing.assert_array_equal(in_steps.charges, got.charges)
    np.testing.assert_array_equal(in_steps.event, got.event)
    assert got.charges.shape == (20, 48)            # 2 silicon modules x 10 events, scintillator dropped
    want = np.concatenate([np.stack(t) for t in truth])
    np.testing.assert_array_equal(got.charges, want)
    assert got.layer.tolist() == [30, 5] * 10 and got.zside.tolist() == [-1, 1] * 10
    assert got.event.tolist() == list(np.repeat(np.arange(10), 2))
    # tc_data or tc_mipPt (in units of 1 MIP_T = ADC_PER_MIP_T) instead of tc_uncompressedCharge; a layer filter
    np.testing.assert_array_equal(read_ntuples([f], charge="data").charges, want // 2)
    np.testing.assert_allclose(read_ntuples([f], charge="mipPt").charges, want / 16 * ADC_PER_MIP_T, rtol=1e-6)
    only = read_ntuples([f], layers=(30,))
    assert (only.layer == 30).all() and only.charges.shape == (10, 48)


def test_cell_uv_lattice_matches_the_tc_geometry():
    """Placing TCs by (cellu, cellv) is only right if the remap table and the TC centres
    describe one module: the (u, v) lattice (basis (0, 2), (sqrt 3, -1) half pitches) must
    give every CALQ cell the same neighbours as the centres do, and a swap of two CALQ
    indices must break it (negative control)."""
    table = remap_table()

    def lattice_neighbours(calq_of_row):
        p = np.zeros((48, 2))
        p[calq_of_row] = table[:, :1] * np.array([0.0, 2.0]) + table[:, 1:2] * np.array([np.sqrt(3.0), -1.0])
        d = np.hypot(*(p[:, None] - p[None]).transpose(2, 0, 1))
        return (d > 0) & (d < 2.1)

    d = distance_matrix()
    from_centres = (d > 0) & (d <= 2.5)
    assert (lattice_neighbours(table[:, 2]) == from_centres).all()
    swapped = table[:, 2].copy()
    swapped[[0, 20]] = swapped[[20, 0]]
    assert not (lattice_neighbours(swapped) == from_centres).all()


def test_data_stage_reads_ntuples(tmp_path, capsys):
    events, _ = _events(n_events=15)
    f = write_ntuple(tmp_path / "a.root", events)
    rc = main(["data", "-c", SMOKE, "--set", "data.source=ntuple", "--set", f"data.path={f}",
               "--set", "data.ntuple.charge=data", "--run-dir", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    import h5py

    with h5py.File(tmp_path / "run" / "data" / "modules.h5") as fh:
        n = sum(fh[s].shape[0] for s in ("train", "val", "test"))
        assert n == 30 and max(fh[s][...].max() for s in ("train", "val", "test")) < 2000   # tc_data = q // 2


def _wrong_type(p):
    events, _ = _events()
    return write_ntuple(p, events, types={"tc_cellu": np.float32})


def _no_branch(p):
    events, _ = _events()
    return write_ntuple(p, events, drop=("tc_waferv",))


def _empty(p):
    return write_ntuple(p, [])


def _other_tree(p):
    events, _ = _events()
    return write_ntuple(p, events, tree="otherTree")


def _bad_cell(p):
    events, _ = _events()
    events[3][0] = (1, 1, 5, 3, 2, 0, 7, 100, 50, 6.25)        # (0, 7) is no trigger cell
    return write_ntuple(p, events)


def _twice(p):
    events, _ = _events()
    events[2].append(events[2][0])
    return write_ntuple(p, events)


def _no_silicon(p):
    return write_ntuple(p, [[(10, 1, 40, -999, -999, 5, 77, 300, 150, 18.75)]] * 4)


def _truncated(p):
    events, _ = _events(n_events=50)
    data = write_ntuple(p, events).read_bytes()
    p.write_bytes(data[:len(data) // 2])
    return p


def _text(p):
    p.write_text("tc_layer,tc_data\n1,2\n")
    return p


@pytest.mark.parametrize("make, pattern", [
    (_wrong_type, r"a\.root: branch tc_cellu has type .*float32, expected integers per trigger cell"),
    (_no_branch, r"a\.root: hgcalTriggerNtuplizer/HGCalTriggerNtuple lacks branch\(es\) tc_waferv$"),
    (_empty, r"a\.root: hgcalTriggerNtuplizer/HGCalTriggerNtuple holds no events$"),
    (_other_tree, r"a\.root: no tree hgcalTriggerNtuplizer/HGCalTriggerNtuple \(has: otherTree\)$"),
    (_bad_cell, r"a\.root: event 3: trigger cell \(cellu, cellv\) = \(0, 7\) of layer 5 wafer \(3, 2\) is not one"),
    (_twice, r"a\.root: event 2: layer 5 wafer \(3, 2\) zside 1 lists CALQ cell \d+ twice$"),
    (_no_silicon, r"a\.root: no HGCAL silicon trigger cells$"),
    (_text, r"a\.root: not a ROOT file$"),
    (_truncated, r"a\.root: not a readable ROOT file, damaged or truncated \(.+\)$"),
], ids=["wrong-type", "missing-branch", "empty-tree", "no-tree", "bad-cell", "cell-twice", "no-silicon", "not-root",
        "truncated"])
def test_malformed_ntuple_is_one_line_exit_2(tmp_path, capsys, make, pattern):
    f = make(tmp_path / "a.root")
    rc = main(["data", "-c", SMOKE, "--set", "data.source=ntuple", "--set", f"data.path={f}",
               "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = error_line(err)
    assert re.search(pattern, line), line


def test_directory_of_ntuples_and_max_modules(tmp_path):
    events, _ = _events(n_events=6)
    write_ntuple(tmp_path / "a.root", events[:3])
    write_ntuple(tmp_path / "b.root", events[3:])
    (tmp_path / "notes.txt").write_text("not read")
    both = load_modules("ntuple", tmp_path)
    assert both.charges.shape == (12, 48) and len(both.files) == 2
    assert load_modules("ntuple", tmp_path, max_rows=5).charges.shape == (5, 48)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the directory holds no \.root files"):
        load_modules("ntuple", tmp_path / "empty")
