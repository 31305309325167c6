"""How alike two sets of modules are: the distributions the detector generator is calibrated
on, and the distances between them.

A set of modules is summarized by `module_statistics`: the occupancy (TCs above 1 MIP_T),
the per-cell charge spectrum (all cells pooled), the module sum, the per-cell mean charge
(the spatial pattern, e.g. the pileup gradient towards the beam) and the cell-to-cell
correlation against distance (Pearson correlation over modules of every TC pair, averaged
in bins of the pair's ground distance). `distances(a, b)` compares two summaries:
Kolmogorov-Smirnov statistics and Wasserstein-1 distances of the three distributions, the
RMS difference of the correlation curves and of the relative per-cell means.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from econ_emd.geometry import N_TC, distance_matrix
from econ_emd.base.units import ADC_PER_MIP_T

#: edges of the distance bins of the correlation curve (half TC pitches: adjacent TCs are
#: 1.8-2.3 apart, the second ring 3.0-4.2, the far side of the module up to 13.8)
CORRELATION_BIN_EDGES = (0.0, 2.5, 4.2, 6.0, 8.0, 10.0, 14.0)


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class ModuleStatistics:
    occupancy: np.ndarray          # (n,) TCs above 1 MIP_T
    spectrum: np.ndarray           # (n * 48,) every cell's charge
    module_sum: np.ndarray         # (n,)
    cell_mean: np.ndarray          # (48,) mean charge of each cell
    correlation: np.ndarray        # (len(CORRELATION_BIN_EDGES) - 1,) mean pair correlation per bin

    @property
    def n_modules(self) -> int:
        return int(self.occupancy.size)


@dataclass(frozen=True)
class RealismDistances:
    """Distances between two sets of modules (0 = the same distribution)."""

    occupancy_ks: float
    spectrum_ks: float
    sum_ks: float
    correlation_rms: float         # RMS over distance bins of the correlation difference
    cell_mean_rms: float           # RMS over cells of (mean / reference mean - 1)
    occupancy_w1: float | None     # TCs (None: not computed, `distances(..., w1=False)`)
    spectrum_w1: float | None      # ADC
    sum_w1_relative: float | None  # W1 of the module sums / the reference's median sum

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: names and formats of the distances, in table order
DISTANCE_COLUMNS = (("occupancy_ks", "{:.3f}"), ("occupancy_w1", "{:.2f}"), ("spectrum_ks", "{:.3f}"),
                    ("spectrum_w1", "{:.1f}"), ("sum_ks", "{:.3f}"), ("sum_w1_relative", "{:.3f}"),
                    ("correlation_rms", "{:.3f}"), ("cell_mean_rms", "{:.3f}"))


def _bin_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    d = distance_matrix()
    iu, ju = np.triu_indices(N_TC, 1)
    out = []
    for lo, hi in zip(CORRELATION_BIN_EDGES[:-1], CORRELATION_BIN_EDGES[1:]):
        keep = (d[iu, ju] > lo) & (d[iu, ju] <= hi)
        out.append((iu[keep], ju[keep]))
    return out


def correlation_curve(charges: np.ndarray) -> np.ndarray:
    """Mean Pearson correlation (over modules) of the TC pairs in each distance bin; a cell
    that never varies contributes no pairs."""
    x = np.asarray(charges, dtype=np.float64)
    x = x - x.mean(0)
    sd = np.sqrt((x * x).mean(0))
    live = sd > 0
    cov = x.T @ x / x.shape[0]
    corr = np.divide(cov, np.outer(sd, sd), out=np.zeros_like(cov), where=np.outer(live, live))
    curve = []
    for i, j in _bin_pairs():
        both = live[i] & live[j]
        curve.append(float(corr[i[both], j[both]].mean()) if both.any() else 0.0)
    return np.array(curve)


def module_statistics(charges: np.ndarray, adc_per_mip: float = ADC_PER_MIP_T) -> ModuleStatistics:
    """The distributions of `charges` ((n, 48), n >= 2) that the generator is judged on."""
    q = np.asarray(charges, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != N_TC or q.shape[0] < 2:
        raise ValueError(f"expected (n >= 2, {N_TC}) charges, got shape {q.shape}")
    return ModuleStatistics(occupancy=(q > adc_per_mip).sum(1), spectrum=q.ravel(), module_sum=q.sum(1),
                            cell_mean=q.mean(0), correlation=correlation_curve(q))


def distances(a: ModuleStatistics, reference: ModuleStatistics, w1: bool = True) -> RealismDistances:
    """How far `a` is from `reference` (relative figures are relative to `reference`);
    `w1=False` skips the Wasserstein distances (the fit's objective does not use them)."""
    from scipy.stats import ks_2samp, wasserstein_distance

    def ks(x, y) -> float:
        return float(ks_2samp(x, y).statistic)

    def w(x, y, scale=1.0) -> float | None:
        return float(wasserstein_distance(x, y)) / scale if w1 else None

    ref_mean = np.where(reference.cell_mean > 0, reference.cell_mean, 1.0)
    return RealismDistances(
        occupancy_ks=ks(a.occupancy, reference.occupancy),
        spectrum_ks=ks(a.spectrum, reference.spectrum),
        sum_ks=ks(a.module_sum, reference.module_sum),
        correlation_rms=float(np.sqrt(np.mean((a.correlation - reference.correlation) ** 2))),
        cell_mean_rms=float(np.sqrt(np.mean((a.cell_mean / ref_mean - 1.0) ** 2))),
        occupancy_w1=w(a.occupancy, reference.occupancy),
        spectrum_w1=w(a.spectrum, reference.spectrum),
        sum_w1_relative=w(a.module_sum, reference.module_sum, max(float(np.median(reference.module_sum)), 1.0)),
    )
