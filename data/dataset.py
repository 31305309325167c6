"""The module dataset of a run: obtain modules, split them, write and read them.

`build_dataset` turns the data config into train/val/test arrays of raw ADC charges
(synthetic by default, or the user's ECON-T CSV/HDF5 files), shuffled and split with the
run's seed. `save_dataset` writes `data/modules.h5` (one dataset per split) atomically
and returns its summary (the stage stores it as `data/summary.json`); `load_dataset`
reads them back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import atomic_path, ensure_free_space
from econ_emd.base.errors import DataError
from econ_emd.geometry import N_TC, geometry_hash
from econ_emd.base.seeds import derive_seed
from econ_emd.base.units import ADC_PER_MIP_T
from .loaders import load_modules
from .params import DataParams
from .synthetic import generate, occupancy

SPLITS = ("train", "val", "test")
MODULES_FILE = "modules.h5"
SUMMARY_FILE = "summary.json"


@dataclass
class Dataset:
    splits: dict[str, np.ndarray]           # split name -> (n, 48) float64 ADC charges
    info: dict = field(default_factory=dict)  # provenance and counts

    def __getitem__(self, split: str) -> np.ndarray:
        return self.splits[split]

    @property
    def n_modules(self) -> int:
        return sum(v.shape[0] for v in self.splits.values())


def split_indices(n: int, params: DataParams, seed: int) -> dict[str, np.ndarray]:
    """Shuffled, disjoint index sets per split (sizes follow the split fractions)."""
    order = np.random.default_rng(derive_seed(seed, "split")).permutation(n)
    n_train = int(round(params.split.train * n))
    n_val = int(round(params.split.val * n))
    if min(n_train, n_val, n - n_train - n_val) < 1:
        raise DataError(f"{n} modules are too few for a train/val/test split of "
                        f"{params.split.train:g}/{params.split.val:g}/{params.split.test:g} (each split needs one)")
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def build_dataset(params: DataParams, seed: int) -> Dataset:
    """Generate or load the modules named by the config and split them."""
    if params.source == "synthetic":
        charges = generate(params.n_modules, derive_seed(seed, "synthetic_modules"), params.synthetic)
        info = {"source": "synthetic", "n_read": charges.shape[0], "n_zero_sum_dropped": 0,
                "generator": params.synthetic.model_dump()}
    elif params.source == "detector":
        charges, info = _detector_modules(params, seed)
    elif params.source == "simulated_crossings":
        from .crossings import require_training, training_crossings

        charges = np.array(require_training(training_crossings(), "the data stage"))
        if params.max_modules is not None:
            charges = charges[:params.max_modules]
        info = {"source": "simulated_crossings", "n_read": charges.shape[0], "n_zero_sum_dropped": 0,
                "part": "training (the held-out crossings are never read)"}
    else:
        loaded = load_modules(params.source, params.path, params.hdf5_key, params.max_modules,
                              econt_config=params.econt_config, ntuple_charge=params.ntuple.charge,
                              ntuple_layers=tuple(params.ntuple.layers) if params.ntuple.layers else None)
        charges = loaded.charges
        info = {"source": params.source, "files": list(loaded.files), "n_read": loaded.n_read,
                "n_zero_sum_dropped": loaded.n_zero_sum}
    idx = split_indices(charges.shape[0], params, seed)
    info.update(seed=seed, geometry_hash=geometry_hash())
    return Dataset({k: charges[v] for k, v in idx.items()}, info)


def _detector_modules(params: DataParams, seed: int) -> tuple[np.ndarray, dict]:
    """Modules of the detector generator and what the run summary says of them."""
    from .detector import CALIBRATION, build_placement, generate_detector

    seq = derive_seed(seed, "synthetic_modules")
    placement = build_placement(params.detector, params.n_modules, seq)
    made = generate_detector(params.n_modules, seq, placement, pileup=params.detector.pileup)
    links, counts = np.unique(placement.links, return_counts=True)
    info = {"source": "detector", "n_read": params.n_modules, "n_zero_sum_dropped": 0,
            "generator": params.detector.model_dump(), "calibration": asdict(CALIBRATION),
            "modules_per_link_count": {str(k): int(c) for k, c in zip(links, counts) if k >= 0},
            "high_density_fraction": float(placement.high_density.mean())}
    return made.charges, info


def summarize(ds: Dataset, adc_per_mip: float = ADC_PER_MIP_T) -> dict:
    """Counts, occupancy histogram and charge-sum percentiles, per split and overall."""
    allq = np.concatenate([ds[s] for s in SPLITS])
    occ = occupancy(allq, adc_per_mip)
    sums = allq.sum(1)
    return {
        **ds.info,
        "n_modules": {s: int(ds[s].shape[0]) for s in SPLITS},
        "occupancy_histogram": np.bincount(occ, minlength=N_TC + 1).tolist(),
        "occupancy_median": float(np.median(occ)),
        "nonzero_tc_fraction": float((allq > 0).mean()),
        "sum_adc_percentiles": {str(p): float(v) for p, v in
                                zip((1, 16, 50, 84, 99), np.percentile(sums, [1, 16, 50, 84, 99]))},
    }


def save_dataset(ds: Dataset, out_dir: str | Path) -> dict:
    import h5py

    out_dir = Path(out_dir)
    ensure_free_space(out_dir, sum(ds[s].nbytes for s in SPLITS))
    with atomic_path(out_dir / MODULES_FILE, ".h5") as tmp:
        with h5py.File(tmp, "w") as fh:
            for s in SPLITS:
                fh.create_dataset(s, data=ds[s], compression="lzf")
            fh.attrs["geometry_hash"] = geometry_hash()
    return summarize(ds)


def load_dataset(data_dir: str | Path) -> Dataset:
    import h5py
    import json

    data_dir = Path(data_dir)
    path = data_dir / MODULES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `econ-emd data` first")
    with h5py.File(path, "r") as fh:
        if fh.attrs.get("geometry_hash") != geometry_hash():
            raise ValueError(f"{path} was written for another TC geometry")
        splits = {s: fh[s][...] for s in SPLITS}
    info_path = data_dir / SUMMARY_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    return Dataset(splits, info)
