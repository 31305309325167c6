"""Pictures of NEEMo results: the potential as a heatmap under the deposits and the shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import save_figure
from .estimate import evaluate_potential


def _heatmap(ax, result, member: int, lo: np.ndarray, hi: np.ndarray, n: int = 120):
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    f = evaluate_potential(result, np.stack([gx.ravel(), gy.ravel()], 1), member).reshape(n, n)
    im = ax.imshow(f, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap="coolwarm", aspect="equal")
    return im


def _bounds(*point_sets: np.ndarray, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    allp = np.concatenate([np.asarray(p).reshape(-1, 2) for p in point_sets])
    lo, hi = allp.min(0), allp.max(0)
    pad = margin * (hi - lo).max()
    return lo - pad, hi + pad


def plot_fit(path: str | Path, points: np.ndarray, energies: np.ndarray, fit, member: int, shape: str,
             kmeans: dict | None = None, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s_pts, s_w = fit.samples[member]
    lo, hi = _bounds(points, s_pts)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = _heatmap(ax, fit, member, lo, hi)
    fig.colorbar(im, ax=ax, label="potential f (1-Lipschitz)")
    keep = energies > 0
    ax.scatter(points[keep, 0], points[keep, 1], s=2000 * energies[keep], c="k", alpha=0.6, label="deposits")
    if shape == "point":
        ax.scatter(fit.centres[member, :, 0], fit.centres[member, :, 1], marker="X", s=160, c="gold",
                   edgecolors="k", label="NEEMo points")
    else:
        ax.scatter(s_pts[:, 0], s_pts[:, 1], s=6, c="gold", label=f"NEEMo {shape}s (samples)")
    if kmeans is not None:
        ax.scatter(kmeans["centres"][:, 0], kmeans["centres"][:, 1], marker="+", s=160, c="lime",
                   linewidths=2.5, label="energy-weighted k-means")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"NEEMo fit: {fit.exact[member]:.4f} exact EMD, estimate {fit.estimate[member]:.4f}",
                 fontsize=10)
    save_figure(fig, path)


def plot_estimates(path: str | Path, exact: np.ndarray, estimate: np.ndarray, result, tc_points: np.ndarray,
                   weights: np.ndarray) -> None:
    """Estimate vs exact, and the potential of the first pair over the module with p - q."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.8))
    a1.scatter(exact, estimate, s=8)
    top = max(exact.max(), estimate.max()) * 1.05
    a1.plot([0, top], [0, top], "k--", lw=1)
    a1.set_xlabel("exact EMD (POT)")
    a1.set_ylabel("NEEMo estimate")
    defined = exact > 0          # identical modules (exact EMD 0) have no relative error
    a1.set_title(f"{len(exact)} pairs: median |rel. error| "
                 f"{np.median(np.abs(estimate - exact)[defined] / exact[defined]):.2%}" if defined.any()
                 else f"{len(exact)} pairs of identical modules (exact EMD 0)")
    lo, hi = _bounds(tc_points)
    im = _heatmap(a2, result, 0, lo, hi)
    fig.colorbar(im, ax=a2, label="potential f")
    sc = a2.scatter(tc_points[:, 0], tc_points[:, 1], c=weights[0], cmap="PiYG", s=60, edgecolors="k")
    fig.colorbar(sc, ax=a2, label="p - q")
    a2.set_title(f"pair 0: estimate {estimate[0]:.3f}, exact {exact[0]:.3f}")
    save_figure(fig, path)
