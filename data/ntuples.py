"""CMS HGCAL trigger ntuples (the TPG's `hgcalTriggerNtuplizer/HGCalTriggerNtuple`) read as
module crossings, through uproot.

Each event of the tree holds every trigger cell with a non-zero charge as parallel
per-TC lists (CMSSW's HGCalTriggerNtupleHGCTriggerCells): `tc_subdet`, `tc_zside`,
`tc_layer`, `tc_waferu`, `tc_waferv`, `tc_cellu`, `tc_cellv` (integers) and the charges
`tc_uncompressedCharge` (the TC's linear charge before the HGCROC's 4E3M code, what the
CMS emulator feeds the ECON-T), `tc_data` (the hardware pT word after the concentrator),
`tc_mipPt` (transverse MIPs, times ADC_PER_MIP_T here) and more. The loader keeps the
silicon TCs (`tc_subdet` 1 = CE-E, 2 = CE-H silicon; the scintillator's cells have no
wafer), groups them by (event, zside, layer, waferu, waferv) into modules, and places
each TC at its CALQ index by its (cellu, cellv) through the geometry's remap table
(`geometry.remap_table`, the same (u, v) -> TC number map as the CMS emulator's
Utils/LDM_TC_Mapping.csv): one row per module and event, cells without a TC in the event
are zero. Rows come in (file, event, zside, layer, waferu,
waferv) order.

Every defect is a one-line `DataError` naming the file (and the branch or event).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from econ_emd.base.errors import DataError
from econ_emd.geometry import N_TC, remap_table
from econ_emd.base.units import ADC_PER_MIP_T

NTUPLE_TREE = "hgcalTriggerNtuplizer/HGCalTriggerNtuple"
NTUPLE_SUFFIXES = (".root",)
#: the branches that say where a TC is (integers per TC)
PLACE_BRANCHES = ("tc_subdet", "tc_zside", "tc_layer", "tc_waferu", "tc_waferv", "tc_cellu", "tc_cellv")
#: charge choices (`data.ntuple.charge`) -> their branch
CHARGE_BRANCHES = {"uncompressedCharge": "tc_uncompressedCharge", "data": "tc_data", "mipPt": "tc_mipPt"}
#: factors that bring a charge choice to the product's ADC-like units (tc_mipPt is in
#: transverse MIPs: 1 MIP_T = ADC_PER_MIP_T, the unit the occupancy threshold counts in)
CHARGE_SCALE = {"mipPt": ADC_PER_MIP_T}
#: tc_subdet of the silicon TCs (HGCalTriggerDetId: 1 CE-E, 2 CE-H silicon)
SILICON_SUBDETS = (1, 2)
ROOT_MAGIC = b"root"
#: how much of a tree is read at once (an event at 200 pileup lists ~10^5 TCs)
STEP_SIZE = "100 MB"


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class NtupleModules:
    charges: np.ndarray     # (n, 48) float64, CALQ order
    event: np.ndarray       # (n,) entry number in its file
    file_index: np.ndarray  # (n,) index into `files`
    zside: np.ndarray
    layer: np.ndarray
    wafer_u: np.ndarray
    wafer_v: np.ndarray
    files: tuple[str, ...]


@lru_cache(maxsize=1)
def _calq_of_cell() -> np.ndarray:
    """(8, 8) CALQ index of trigger cell (cellu, cellv), -1 where there is none."""
    table = remap_table()
    lut = np.full((8, 8), -1, dtype=np.int64)
    lut[table[:, 0], table[:, 1]] = table[:, 2]
    lut.setflags(write=False)
    return lut


def _unreadable():
    """The exceptions uproot raises on a damaged or truncated file."""
    import zlib

    import uproot

    return (OSError, EOFError, ValueError, zlib.error, uproot.deserialization.DeserializationError)


def _damaged(path: Path, exc: Exception) -> DataError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(",")
    return DataError(f"{path}: not a readable ROOT file, damaged or truncated ({first})")


def _open_tree(path: Path):
    import uproot

    with open(path, "rb") as fh:
        if fh.read(4) != ROOT_MAGIC:
            raise DataError(f"{path}: not a ROOT file")
    try:
        root = uproot.open(path)
        names = root.keys(recursive=True, cycle=False)
        tree = root[NTUPLE_TREE] if NTUPLE_TREE in names else None
    except _unreadable() as exc:
        raise _damaged(path, exc) from None
    if tree is None:
        raise DataError(f"{path}: no tree {NTUPLE_TREE} (has: {', '.join(names) or 'nothing'})")
    if not hasattr(tree, "num_entries") or not hasattr(tree, "arrays"):
        raise DataError(f"{path}: {NTUPLE_TREE} is not a TTree")
    return tree


def _per_tc(path: Path, name: str, values, integer: bool) -> np.ndarray:
    """The flat numpy values of a per-TC branch (integers, or any real numbers), or a
    DataError naming the branch's type."""
    import awkward as ak

    try:
        flat = ak.to_numpy(ak.flatten(values, axis=1))
    except (ValueError, TypeError, ak.errors.AxisError):
        flat = None
    kind = np.integer if integer else np.number
    if (flat is None or flat.ndim != 1 or not np.issubdtype(flat.dtype, kind)
            or np.issubdtype(flat.dtype, np.complexfloating)):
        raise DataError(f"{path}: branch {name} has type {ak.type(values).content}, expected "
                        f"{'integers' if integer else 'numbers'} per trigger cell (var * "
                        f"{'int' if integer else 'number'})")
    return flat.astype(np.int64 if integer else np.float64)


def _read_file(path: Path, charge_branch: str, layers: tuple[int, ...] | None,
               max_rows: int | None) -> dict[str, np.ndarray]:
    import awkward as ak

    tree = _open_tree(path)
    branches = (*PLACE_BRANCHES, charge_branch)
    missing = [b for b in branches if b not in tree.keys()]
    if missing:
        raise DataError(f"{path}: {NTUPLE_TREE} lacks branch(es) {', '.join(missing)}")
    if tree.num_entries == 0:
        raise DataError(f"{path}: {NTUPLE_TREE} holds no events")
    parts: list[dict[str, np.ndarray]] = []
    n_rows = 0
    batches = tree.iterate(list(branches), step_size=STEP_SIZE, library="ak", report=True)
    while True:
        try:
            arrays, report = next(batches)
        except StopIteration:
            break
        except _unreadable() as exc:
            raise _damaged(path, exc) from None
        start, stop = report.tree_entry_start, report.tree_entry_stop
        counts = np.asarray(ak.num(arrays[branches[0]], axis=1))
        for b in branches[1:]:
            other = np.asarray(ak.num(arrays[b], axis=1))
            if not np.array_equal(counts, other):
                k = int(np.flatnonzero(counts != other)[0])
                raise DataError(f"{path}: event {start + k}: {b} lists {other[k]} trigger cells but "
                                f"{branches[0]} {counts[k]}")
        flat = {b: _per_tc(path, b, arrays[b], integer=b != charge_branch) for b in branches}
        event = np.repeat(np.arange(start, stop), counts)
        keep = np.isin(flat["tc_subdet"], SILICON_SUBDETS)
        if layers is not None:
            keep &= np.isin(flat["tc_layer"], layers)
        part = {k: v[keep] for k, v in flat.items()}
        part["event"] = event[keep]
        parts.append(part)
        n_rows += _count_modules(part)
        if max_rows is not None and n_rows >= max_rows:
            break
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _module_keys(tcs: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([tcs["event"], tcs["tc_zside"], tcs["tc_layer"], tcs["tc_waferu"], tcs["tc_waferv"]], 1)


def _count_modules(tcs: dict[str, np.ndarray]) -> int:
    return 0 if tcs["event"].size == 0 else int(np.unique(_module_keys(tcs), axis=0).shape[0])


def _modules_of(path: Path, tcs: dict[str, np.ndarray], charge_branch: str) -> tuple[np.ndarray, np.ndarray]:
    """(module keys (m, 5), charges (m, 48)) of one file's silicon TCs."""
    cu, cv = tcs["tc_cellu"], tcs["tc_cellv"]
    inside = (cu >= 0) & (cu < 8) & (cv >= 0) & (cv < 8)
    calq = np.full(cu.shape, -1, dtype=np.int64)
    calq[inside] = _calq_of_cell()[cu[inside], cv[inside]]
    if (calq < 0).any():
        k = int(np.flatnonzero(calq < 0)[0])
        raise DataError(f"{path}: event {tcs['event'][k]}: trigger cell (cellu, cellv) = ({cu[k]}, {cv[k]}) "
                        f"of layer {tcs['tc_layer'][k]} wafer ({tcs['tc_waferu'][k]}, {tcs['tc_waferv'][k]}) "
                        "is not one of the module's 48")
    keys, row = np.unique(_module_keys(tcs), axis=0, return_inverse=True)
    row = row.reshape(-1)
    slot = row * N_TC + calq
    order = np.sort(slot)
    dup = np.flatnonzero(order[1:] == order[:-1])
    if dup.size:
        r, c = divmod(int(order[dup[0]]), N_TC)
        raise DataError(f"{path}: event {keys[r, 0]}: layer {keys[r, 2]} wafer ({keys[r, 3]}, {keys[r, 4]}) "
                        f"zside {keys[r, 1]} lists CALQ cell {c} twice")
    charges = np.zeros(keys.shape[0] * N_TC)
    charges[slot] = tcs[charge_branch]
    return keys, charges.reshape(-1, N_TC)


def _scaled(charges: np.ndarray, charge: str) -> np.ndarray:
    return charges * CHARGE_SCALE[charge] if charge in CHARGE_SCALE else charges


def read_ntuples(files: list[Path], charge: str = "uncompressedCharge", layers: tuple[int, ...] | None = None,
                 max_rows: int | None = None) -> NtupleModules:
    """The module crossings of trigger ntuple files (see the module docstring)."""
    if charge not in CHARGE_BRANCHES:
        raise DataError(f"unknown ntuple charge {charge!r} (known: {', '.join(CHARGE_BRANCHES)})")
    branch = CHARGE_BRANCHES[charge]
    keys, charges, file_index = [], [], []
    remaining = max_rows
    for i, path in enumerate(files):
        if remaining is not None and remaining <= 0:
            break
        tcs = _read_file(path, branch, layers, remaining)
        if tcs["event"].size == 0:
            continue
        k, q = _modules_of(path, tcs, branch)
        if remaining is not None:
            k, q = k[:remaining], q[:remaining]
            remaining -= k.shape[0]
        keys.append(k)
        charges.append(q)
        file_index.append(np.full(k.shape[0], i))
    if not keys:
        where = f" in layers {', '.join(map(str, layers))}" if layers else ""
        raise DataError(f"{files[0] if len(files) == 1 else files[0].parent}: no HGCAL silicon trigger cells{where}")
    k = np.concatenate(keys)
    return NtupleModules(charges=_scaled(np.concatenate(charges), charge), event=k[:, 0],
                         file_index=np.concatenate(file_index), zside=k[:, 1], layer=k[:, 2], wafer_u=k[:, 3], wafer_v=k[:, 4],
                         files=tuple(str(f) for f in files))
