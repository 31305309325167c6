"""How a trained encoder is judged: the exact EMD of every (input, reconstruction) pair,
overall, per occupancy bin and per module-charge bin, whatever loss trained it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import save_figure
from econ_emd.base.units import ADC_PER_MIP_T
from econ_emd.data.synthetic import occupancy
from econ_emd.emd.exact import exact_emd

#: occupancy bin edges (TCs above 1 MIP_T; upper edge exclusive)
OCC_BINS = (1, 3, 6, 10, 20, 30, 40, 46, 49)
#: charge-sum bin edges in MIP_T
SUM_BINS_MIP = (0, 10, 30, 100, 300, 1e9)


@dataclass
class Distribution:
    """Mean, median and 16/84% quantiles of a set of exact-EMD values (None when empty)."""

    n: int
    mean: float | None = None
    median: float | None = None
    p16: float | None = None
    p84: float | None = None

    @classmethod
    def of(cls, v: np.ndarray) -> "Distribution":
        if v.size == 0:
            return cls(0)
        p16, p50, p84 = np.percentile(v, [16, 50, 84])
        return cls(int(v.size), float(v.mean()), float(p50), float(p16), float(p84))


@dataclass
class Bin(Distribution):
    lo: float = 0
    hi: float = 0


@dataclass
class Evaluation:
    overall: Distribution
    n_dead_reconstructions: int
    by_occupancy: list[Bin] = field(default_factory=list)
    by_sum_mip: list[Bin] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Evaluation":
        return cls(Distribution(**d["overall"]), d["n_dead_reconstructions"],
                   [Bin(**b) for b in d["by_occupancy"]], [Bin(**b) for b in d["by_sum_mip"]])


def judged_reconstruction(recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reconstruction as it is judged (negative charges clipped, a dead reconstruction
    replaced by a flat one), and which rows were dead."""
    recon = np.maximum(recon, 0.0)
    empty = recon.sum(1) <= 0
    recon[empty] = 1.0
    return recon, empty


def evaluate_reconstruction(charges: np.ndarray, recon: np.ndarray, emd_runner=None) -> tuple[Evaluation, np.ndarray]:
    """The evaluation and the exact EMD of every (input, reconstruction) pair."""
    recon, empty = judged_reconstruction(recon)
    emd = emd_runner(charges, recon, desc="exact EMD of reconstructions") if emd_runner else exact_emd(charges, recon)
    occ = occupancy(charges)
    sums = charges.sum(1) / ADC_PER_MIP_T
    out = Evaluation(Distribution.of(emd), int(empty.sum()))
    for lo, hi in zip(OCC_BINS[:-1], OCC_BINS[1:]):
        m = (occ >= lo) & (occ < hi)
        out.by_occupancy.append(Bin(**asdict(Distribution.of(emd[m])), lo=lo, hi=hi - 1))
    for lo, hi in zip(SUM_BINS_MIP[:-1], SUM_BINS_MIP[1:]):
        m = (sums >= lo) & (sums < hi)
        out.by_sum_mip.append(Bin(**asdict(Distribution.of(emd[m])), lo=lo, hi=hi))
    return out, emd


def plot_emd_vs_occupancy(results: dict[str, Evaluation], path: str | Path) -> None:
    """Median exact EMD vs occupancy with 16-84% bands, one curve per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (name, ev) in enumerate(results.items()):
        bins = [b for b in ev.by_occupancy if b.n > 0]
        x = np.arange(len(bins)) + (i - len(results) / 2) * 0.06
        med = np.array([b.median for b in bins])
        lo = np.array([b.p16 for b in bins])
        hi = np.array([b.p84 for b in bins])
        ax.errorbar(x, med, yerr=[med - lo, hi - med], marker="o", capsize=3, label=name)
    labels = [f"{b.lo}-{b.hi}" for b in next(iter(results.values())).by_occupancy if b.n > 0]
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(xlabel="occupancy (TCs above 1 MIP_T)", ylabel="exact EMD (input, reconstruction)",
           title="Median EMD with 16-84% band, test modules")
    ax.legend(fontsize=8)
    save_figure(fig, path)
