"""Where HGCAL modules sit and how many ECON-T output links each has.

Facts of the detector the generator needs to place a module:

* `LAYER_Z_CM`: the depth of each of the 50 layers (CMSSW v11 geometry, as tabulated in
  public HGCAL analysis code); the trigger reads the odd layers of CE-E (1-27) and every
  layer of CE-H (29-50).
* `MODULE_PITCH_CM`: the distance between neighbouring module centres (CMSSW's 8-inch
  `waferSize`, 166.4408 mm). A module at wafer (u, v) is `MODULE_PITCH_CM *
  sqrt(u^2 - u v + v^2)` from the beam: with this norm the allocation's high-density
  modules are the innermost of every layer (1.7-4.6 pitches) and the low-density ones
  surround them, as in the detector.
* The link allocation: `detector_data/link_allocation.csv`, counts of modules per
  (layer, ring, density, ECON-T links) derived from the 10,392 modules of the CMS
  emulator's `Utils/ModuleLinkSummary.csv` (the file's header says how). The full
  per-module table is the user's to give (`data.detector.allocation_path`, same columns
  as the CMS file: Layer, ModU, ModV, ECONT_eTX, HD_LD); `read_allocation` reads either
  into one `Allocation`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from econ_emd.base.errors import DataError

LAYER_Z_CM = np.array([
    322.103, 323.047, 325.073, 326.017, 328.043, 328.987, 331.013, 331.957, 333.983, 334.927,
    336.953, 337.897, 339.923, 340.867, 342.893, 343.837, 345.863, 346.807, 348.833, 349.777,
    351.803, 352.747, 354.773, 355.717, 357.743, 358.687, 360.713, 361.657, 367.699, 373.149,
    378.599, 384.049, 389.499, 394.949, 400.399, 405.849, 411.299, 416.749, 422.199, 427.649,
    436.199, 444.749, 453.299, 461.849, 470.399, 478.949, 487.499, 496.049, 504.599, 513.149])
N_LAYERS = LAYER_Z_CM.size
MODULE_PITCH_CM = 16.64408
EMBEDDED_ALLOCATION = "link_allocation.csv"
#: the columns of a per-module allocation file (the CMS ModuleLinkSummary.csv convention)
ALLOCATION_COLUMNS = ("Layer", "ModU", "ModV", "ECONT_eTX", "HD_LD")
DENSITIES = {"HD": True, "LD": False}


def layer_z_cm(layer: int | np.ndarray) -> np.ndarray:
    """Depth (cm) of layers 1-50."""
    layer = np.asarray(layer)
    if ((layer < 1) | (layer > N_LAYERS)).any():
        raise ValueError(f"HGCAL layers are 1-{N_LAYERS}, got {layer}")
    return LAYER_Z_CM[layer - 1]


def ring2(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u^2 - u v + v^2: the squared distance of wafer (u, v) from the beam in module pitches."""
    u, v = np.asarray(u), np.asarray(v)
    return u * u - u * v + v * v


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class Allocation:
    """Modules of the detector, as rows weighted by how many modules each stands for."""

    layer: np.ndarray           # (k,) int
    ring2: np.ndarray           # (k,) int
    high_density: np.ndarray    # (k,) bool
    links: np.ndarray           # (k,) int, ECON-T output links
    modules: np.ndarray         # (k,) int, modules the row stands for
    wafer_u: np.ndarray         # (k,) int, -1 for rows that stand for a whole ring
    wafer_v: np.ndarray         # (k,) int
    source: str

    @property
    def n_modules(self) -> int:
        return int(self.modules.sum())

    def modules_per_link_count(self) -> dict[int, int]:
        return {int(k): int(self.modules[self.links == k].sum()) for k in np.unique(self.links)}


@lru_cache(maxsize=1)
def embedded_allocation() -> Allocation:
    """The per-ring counts shipped with the package."""
    text = resources.files(__package__).joinpath("detector_data", EMBEDDED_ALLOCATION).read_text()
    rows = [r for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))]
    col = lambda name: np.array([int(r[name]) for r in rows])  # noqa: E731
    return Allocation(layer=col("layer"), ring2=col("ring2"),
                      high_density=np.array([DENSITIES[r["density"]] for r in rows]),
                      links=col("econt_links"), modules=col("modules"), wafer_u=np.full(len(rows), -1),
                      wafer_v=np.full(len(rows), -1), source=f"embedded {EMBEDDED_ALLOCATION}")


def read_allocation(path: str | Path) -> Allocation:
    """A per-module allocation file (columns `ALLOCATION_COLUMNS`, one module a row);
    every defect is a one-line `DataError` naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (data.detector.allocation_path)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ALLOCATION_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: lacks column(s) {', '.join(missing)} (an allocation file has "
                                f"{', '.join(ALLOCATION_COLUMNS)}, as the CMS ModuleLinkSummary.csv)")
            values: dict[str, list] = {c: [] for c in ALLOCATION_COLUMNS}
            for line, row in enumerate(reader, start=2):
                for c in ALLOCATION_COLUMNS:
                    text = (row.get(c) or "").strip()
                    if c == "HD_LD":
                        if text not in DENSITIES:
                            raise DataError(f"{path}: line {line}, column HD_LD: {text!r} is not HD or LD")
                        values[c].append(DENSITIES[text])
                        continue
                    try:
                        values[c].append(int(text))
                    except ValueError:
                        raise DataError(f"{path}: line {line}, column {c}: {text!r} is not an integer") from None
                if not 1 <= values["Layer"][-1] <= N_LAYERS:
                    raise DataError(f"{path}: line {line}, column Layer: {values['Layer'][-1]} is not 1-{N_LAYERS}")
                if values["ECONT_eTX"][-1] < 0:
                    raise DataError(f"{path}: line {line}, column ECONT_eTX: negative link count")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file (byte {exc.start})") from None
    if not values["Layer"]:
        raise DataError(f"{path}: the file holds no modules")
    u, v = np.array(values["ModU"]), np.array(values["ModV"])
    if (ring2(u, v) == 0).any():
        raise DataError(f"{path}: a module at wafer (0, 0) would sit on the beam")
    return Allocation(layer=np.array(values["Layer"]), ring2=ring2(u, v), high_density=np.array(values["HD_LD"]),
                      links=np.array(values["ECONT_eTX"]), modules=np.ones(u.size, dtype=np.int64),
                      wafer_u=u, wafer_v=v, source=str(path))
