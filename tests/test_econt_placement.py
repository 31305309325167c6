"""Where each trigger cell of the simulated crossings sits, against CMS's own mapping.

The fixture `econt_placement/ldm_tc_mapping.csv` holds the 48 facts of the CMS tool that
made the golden vectors' input from simulation (cmantill/ECONT_Emulator,
`Utils/LDM_TC_Mapping.csv`, read by `getDataFromMC.py`): cell (TC_U, TC_V), the ECON-T
input TC it is packed on (PreMux) and the TC the standard MUX makes of it (PostMux)."""
from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from econ_emd import geometry as g
from econ_emd.econt import algorithms as alg
from econ_emd.econt.links import read_rx, unpack_tc_codes
from econ_emd.econt.registers import AsicConfig
from econ_emd.econt.vectors import simulated_calq

FACTS = Path(__file__).parent / "fixtures" / "econt_placement" / "ldm_tc_mapping.csv"


def _facts() -> list[dict[str, int]]:
    with FACTS.open() as f:
        return [{k: int(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_the_product_places_all_48_cells_as_the_cms_mapping():
    facts = _facts()
    assert len(facts) == 48
    table = g.econt_input_table()       # u, v, CALQ, input, MUX output
    by_uv = {(int(r[0]), int(r[1])): r for r in table}
    for fact in facts:
        row = by_uv[(fact["TC_U"], fact["TC_V"])]
        assert (row[3], row[4]) == (fact["ECON_TC_Number_PreMux"], fact["ECON_TC_Number_PostMux"])
    # the CALQ index of a cell is its (u, v) in the geometry's own table
    calq_of_uv = {(int(u), int(v)): int(c) for u, v, c, _ in g.remap_table()}
    assert all(calq_of_uv[(int(r[0]), int(r[1]))] == r[2] for r in table)
    assert sorted(g.econt_input_of_calq().tolist()) == list(range(48))


def test_simulated_crossings_read_each_cell_from_its_input():
    """Column c of `simulated_calq` is the CALQ of the input TC the CMS mapping packs cell
    c on (the input words decoded here directly: four TCs of a link from the bits next to
    the header down, high density, calibration 1.0)."""
    root = resources.files("econ_emd.econt.vectors")
    with resources.as_file(root / "mc_ttbar_input.csv.gz") as path:
        rx = read_rx(path)
    per_input = alg.calq(unpack_tc_codes(rx, msb_first=True), AsicConfig(high_density=True))
    calq_of_uv = {(int(u), int(v)): int(c) for u, v, c, _ in g.remap_table()}
    q = simulated_calq()
    for fact in _facts():
        c = calq_of_uv[(fact["TC_U"], fact["TC_V"])]
        assert np.array_equal(q[:, c], per_input[:, fact["ECON_TC_Number_PreMux"]])


def test_super_trigger_cells_of_the_standard_mux_are_2x2_blocks():
    """Sanity of the mapping against the geometry: the standard MUX's runs of 4 (STC4) are
    four cells no farther apart than a 2x2 block's long diagonal (2 sqrt 3), and its runs of
    16 (STC16) are the three rhombi of CALQ 0-15, 16-31, 32-47."""
    table = g.econt_input_table()
    d = g.distance_matrix()
    for k in range(12):
        cells = table[table[:, 4] // 4 == k, 2]
        assert d[np.ix_(cells, cells)].max() <= 2 * np.sqrt(3) + 1e-4     # table precision
    for k in range(3):
        assert len({int(c) // 16 for c in table[table[:, 4] // 16 == k, 2]}) == 1


def _correlation_by_distance(q: np.ndarray) -> list[float]:
    """Mean correlation of log(1 + CALQ) between cell pairs in distance bands: nearest
    across a seam (1.80), adjacent (2.0), across the other seam (2.29), second ring
    (3.0-3.6), far (> 5.5)."""
    c = np.corrcoef(np.log1p(q.astype(np.float64)).T)
    d = g.distance_matrix()
    iu = np.triu_indices(48, 1)
    bands = [(1.7, 1.9), (1.95, 2.05), (2.2, 2.35), (3.0, 3.6), (5.5, 99.0)]
    return [float(c[iu][(d[iu] >= lo) & (d[iu] <= hi)].mean()) for lo, hi in bands]


def test_showers_look_like_showers_in_the_placement():
    """Sanity figure: under the CMS placement the crossings' cell-to-cell correlation falls
    with distance at every step (0.16, 0.14, 0.11, 0.05, 0.03). Negative control: the
    placement the product used before (the autoencoder configuration's MUX read as the
    autoencoder's slot layout, 37 cells elsewhere) does not (0.05 across the nearest seam,
    below the second ring's 0.07)."""
    from econ_emd.econt.emulator import front_end
    from econ_emd.econt.registers import load_config

    now = _correlation_by_distance(simulated_calq())
    assert all(a > b for a, b in zip(now, now[1:])), now
    assert now[1] > 2 * now[3]
    root = resources.files("econ_emd.econt.vectors")
    with resources.as_file(root / "mc_ttbar_input.csv.gz") as w, \
            resources.as_file(root / "mc_ttbar_AE_init.yaml") as c:
        before = g.calq_from_ae_slots(front_end(load_config(c), read_rx(w)))
    old = _correlation_by_distance(before)
    assert not all(a > b for a, b in zip(old, old[1:])), old
