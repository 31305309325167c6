"""The labelling stage: exact EMD labels for random and perturbed module pairs.

Writes `labels/labels.h5` with one group per kind and split (`random/train`,
`perturbed/test`, ...), each holding the two modules of every pair (`a`, `b`, raw charges),
the index of `a` in its split (`index_a`) and the exact EMD (`emd`); its summary (counts,
EMD percentiles, throughput) is stored by the stage as `labels/summary.json`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import atomic_path, ensure_free_space
from econ_emd.base.errors import DataError
from .dataset import SPLITS, Dataset
from econ_emd.emd.exact import EmdRunner
from econ_emd.geometry import geometry_hash
from econ_emd.base.seeds import derive_seed
from .pairs import KINDS, perturb, random_pairs
from .params import LabelParams

LABELS_FILE = "labels.h5"


@dataclass
class PairSet:
    a: np.ndarray        # (n, 48) first modules
    b: np.ndarray        # (n, 48) second modules
    index_a: np.ndarray  # index of each first module in its split
    emd: np.ndarray | None = None


def make_pairs(ds: Dataset, params: LabelParams, seed: int) -> dict[tuple[str, str], PairSet]:
    """Unlabelled pairs per (kind, split); pair counts split like the modules."""
    n_total = ds.n_modules
    out = {}
    for k, kind in enumerate(KINDS):
        total = params.random_pairs if kind == "random" else params.perturbed_pairs
        for s, split in enumerate(SPLITS):
            x = ds[split]
            n = int(round(total * x.shape[0] / n_total))
            rng = np.random.default_rng(derive_seed(seed, "label_pairs", k, s))
            if n and x.shape[0] < 2:
                raise DataError(f"the {split} split holds {x.shape[0]} module(s): {kind} label pairs need at least "
                                f"2 per split (more modules, or labels.{kind}_pairs: 0)")
            if kind == "random":
                i, j = random_pairs(x.shape[0], n, rng)
                out[kind, split] = PairSet(x[i], x[j], i)
            else:
                i = rng.integers(0, x.shape[0], n)
                out[kind, split] = PairSet(x[i], perturb(x[i], params.perturb, rng), i)
    return out


def label_pairs(pairs: dict[tuple[str, str], PairSet], runner: EmdRunner) -> dict:
    """Fill in the exact EMD of every pair set; return throughput figures."""
    t0 = time.perf_counter()
    n = 0
    for (kind, split), ps in pairs.items():
        if ps.a.shape[0]:
            ps.emd = runner(ps.a, ps.b, desc=f"EMD {kind}/{split}")
        else:
            ps.emd = np.zeros(0)
        n += ps.a.shape[0]
    dt = time.perf_counter() - t0
    return {"n_pairs": n, "seconds": dt, "pairs_per_second": n / dt if dt > 0 else None}


def save_labels(pairs: dict[tuple[str, str], PairSet], out_dir: str | Path, extra: dict) -> dict:
    import h5py

    out_dir = Path(out_dir)
    ensure_free_space(out_dir, sum(getattr(ps, n).nbytes for ps in pairs.values() for n in ("a", "b", "index_a", "emd")))
    with atomic_path(out_dir / LABELS_FILE, ".h5") as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["geometry_hash"] = geometry_hash()
            for (kind, split), ps in pairs.items():
                g = fh.create_group(f"{kind}/{split}")
                for name in ("a", "b", "index_a", "emd"):
                    g.create_dataset(name, data=getattr(ps, name), compression="lzf")
    summary = {
        **extra,
        "pairs": {f"{k}/{s}": int(ps.a.shape[0]) for (k, s), ps in pairs.items()},
        "emd_percentiles": {
            f"{k}/{s}": {str(p): float(v) for p, v in zip((16, 50, 84), np.percentile(ps.emd, [16, 50, 84]))}
            for (k, s), ps in pairs.items() if ps.emd is not None and ps.emd.size
        },
    }
    return summary


def load_labels(labels_dir: str | Path) -> dict[tuple[str, str], PairSet]:
    import h5py

    path = Path(labels_dir) / LABELS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `econ-emd label` first")
    out = {}
    with h5py.File(path, "r") as fh:
        if fh.attrs.get("geometry_hash") != geometry_hash():
            raise ValueError(f"{path} was written for another TC geometry")
        for kind in fh:
            for split in fh[kind]:
                g = fh[kind][split]
                out[kind, split] = PairSet(g["a"][...], g["b"][...], g["index_a"][...], g["emd"][...])
    return out
