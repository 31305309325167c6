"""`econ-emd neemo estimate|fit`: NEEMo EMD estimates and geometric fits, written to <run>/neemo/."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from .config import RunConfig

log = logging.getLogger("econ_emd")


def add_parser(sub) -> None:
    from .cli import _common

    p = sub.add_parser("neemo", help="NEEMo: Lipschitz-network EMD estimates and geometric fits",
                       description="NEEMo: EMD through the Kantorovich-Rubinstein dual with a Lipschitz network.")
    nsub = p.add_subparsers(dest="neemo_command", metavar="ACTION", required=True)
    e = nsub.add_parser("estimate", help="EMD between two modules or two files of modules (row by row)",
                        description="NEEMo estimate vs exact EMD for module pairs: the rows of --a and --b "
                                    "(CSV/HDF5, ECON-T columns; one row is paired with every row of the "
                                    "other), or random synthetic module pairs.")
    _common(e)
    e.add_argument("--a", metavar="FILE", help="modules (CSV or HDF5)")
    e.add_argument("--b", metavar="FILE", help="modules (CSV or HDF5)")
    e.add_argument("--pairs", type=int, metavar="N", help="random synthetic pairs (default: neemo.random_pairs)")
    f = nsub.add_parser("fit", help="fit K points/circles/rings to an energy map",
                        description="Fit K shapes to a synthetic multi-cluster event or to a module's TC "
                                    "deposits; compare with energy-weighted k-means by exact EMD.")
    _common(f)
    f.add_argument("--shape", choices=("point", "circle", "ring"), help="default: neemo.fit.shape")
    f.add_argument("--k", type=int, help="number of shapes (default: neemo.fit.k)")
    f.add_argument("--clusters", type=int, default=3, help="clusters of the synthetic event (default 3)")
    f.add_argument("--event-seed", type=int, default=0, help="seed of the synthetic event")
    f.add_argument("--modules", metavar="FILE", help="fit a module's deposits instead (CSV or HDF5)")
    f.add_argument("--index", type=int, default=0, help="row of --modules to fit (default 0)")


def _read_modules(path: str) -> np.ndarray:
    from training.loaders import DataError, load_modules

    p = Path(path)
    source = "hdf5" if p.suffix.lower() in (".h5", ".hdf5", ".hdf") else "csv"
    if not p.exists():
        raise DataError(f"{path}: no such file")
    return load_modules(source, p).charges


def _pairs(cfg: RunConfig, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    from training.loaders import DataError

    if args.a or args.b:
        if not (args.a and args.b):
            raise DataError("neemo estimate: give both --a and --b (or neither, for random pairs)")
        a, b = _read_modules(args.a), _read_modules(args.b)
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise DataError(f"--a has {len(a)} modules and --b {len(b)}: need equal counts, or one module")
        n = max(len(a), len(b))
        return np.broadcast_to(a, (n, 48)).copy(), np.broadcast_to(b, (n, 48)).copy(), f"{args.a} vs {args.b}"
    from training.synthetic import generate

    n = args.pairs or cfg.neemo.random_pairs
    mods = generate(4 * n + 100, seed=cfg.seed + 17)
    rng = np.random.default_rng(cfg.seed + 17)
    ia, ib = rng.choice(len(mods), n, replace=False), rng.choice(len(mods), n, replace=False)
    return mods[ia], mods[ib], f"{n} random synthetic module pairs (seed {cfg.seed + 17})"


def run_estimate(cfg: RunConfig, args: argparse.Namespace, progress: bool) -> dict:
    import pandas as pd

    from training.artifacts import atomic_path, atomic_write_json
    from training.emd import exact_emd
    from training.geometry import tc_centres
    from training.neemo import kr_estimate, module_pair_weights
    from training.neemo_plots import plot_estimates

    a, b, source = _pairs(cfg, args)
    out = Path(cfg.run_dir) / "neemo" / "estimate"
    out.mkdir(parents=True, exist_ok=True)
    weights = module_pair_weights(a, b)
    log.info("neemo: %d pairs (%s), %d potential steps each, batched", len(a), source, cfg.neemo.steps)
    res = kr_estimate(tc_centres(), weights, cfg.neemo.optimizer(cfg.seed), progress=progress)
    t0 = time.perf_counter()
    exact = exact_emd(a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True))
    t_exact = time.perf_counter() - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(exact > 0, (res.estimate - exact) / exact, np.nan)
    table = pd.DataFrame({"neemo": res.estimate, "exact": exact, "relative_error": rel})
    with atomic_path(out / "estimates.csv") as tmp:
        table.to_csv(tmp, index_label="pair")
    over = res.estimate - exact * 1.01
    summary = {"source": source, "n_pairs": int(len(a)), "steps": cfg.neemo.steps,
               "median_abs_relative_error": float(np.nanmedian(np.abs(rel))),
               "p90_abs_relative_error": float(np.nanpercentile(np.abs(rel), 90)),
               "max_relative_error": float(np.nanmax(rel)),
               "never_above_exact_plus_1pct": bool((over <= 1e-9).all()),
               "seconds": res.seconds, "seconds_per_estimate": res.seconds / len(a),
               "exact_seconds": t_exact}
    plot_estimates(out / "neemo_vs_exact.png", exact, res.estimate, res, tc_centres(), weights)
    atomic_write_json(out / "summary.json", summary)
    log.info("neemo: median |NEEMo - exact| / exact = %.2f%% (p90 %.2f%%), max (NEEMo - exact) / exact = %+.2f%%; "
             "%.2f s per estimate (batched, all cores); written to %s", 100 * summary["median_abs_relative_error"],
             100 * summary["p90_abs_relative_error"], 100 * summary["max_relative_error"],
             summary["seconds_per_estimate"], out)
    return summary


def run_fit(cfg: RunConfig, args: argparse.Namespace, progress: bool) -> dict:
    from training.artifacts import atomic_write_json
    from training.geometry import tc_centres
    from training.loaders import DataError
    from training.neemo import fit_shapes, kmeans_baseline, synthetic_event
    from training.neemo_plots import plot_fit

    overrides = {k: v for k, v in (("shape", args.shape), ("k", args.k)) if v is not None}
    fit = cfg.neemo.fit_params(**overrides)
    if args.modules:
        mods = _read_modules(args.modules)
        if not 0 <= args.index < len(mods):
            raise DataError(f"--index {args.index}: {args.modules} has {len(mods)} modules")
        points, energies = tc_centres(), mods[args.index] / mods[args.index].sum()
        name, truth = f"module{args.index}", None
        what = f"module {args.index} of {args.modules}"
    else:
        if not 1 <= args.clusters <= 20:
            raise DataError("--clusters must be between 1 and 20")
        ev = synthetic_event(args.clusters, args.event_seed)
        points, energies, truth = ev["points"], ev["energies"], ev["centres"]
        name = f"synthetic_c{args.clusters}_s{args.event_seed}"
        what = f"synthetic event with {args.clusters} clusters (seed {args.event_seed})"
    if (energies > 0).sum() < fit.k:
        raise DataError(f"{what}: fewer deposits than k={fit.k}")
    out = Path(cfg.run_dir) / "neemo" / "fit" / f"{name}_{fit.shape}{fit.k}"
    out.mkdir(parents=True, exist_ok=True)
    log.info("neemo fit: %d %ss to %s", fit.k, fit.shape, what)
    res = fit_shapes([(points, energies)], fit, cfg.neemo.optimizer(cfg.seed), progress=progress)
    km = kmeans_baseline(points, energies, fit.k, seed=cfg.seed)
    summary = {"event": what, "shape": fit.shape, "k": fit.k, "centres": res.centres[0], "radii": res.radii[0],
               "widths": res.widths[0], "fractions": res.fractions[0],
               "neemo_estimate": float(res.estimate[0]), "exact_emd": float(res.exact[0]),
               "estimate_over_exact": float(res.estimate[0] / res.exact[0]),
               "kmeans": {"centres": km["centres"], "fractions": km["fractions"], "exact_emd": km["exact_emd"]},
               "true_centres": truth, "seconds": res.seconds,
               "track": [{"step": t["step"], "estimate": float(t["estimate"][0]), "exact": float(t["exact"][0])}
                         for t in res.track], "fit_params": fit.__dict__}
    plot_fit(out / "fit.png", points, energies, res, 0, fit.shape, km)
    atomic_write_json(out / "fit.json", summary)
    log.info("neemo fit: exact EMD %.4f (NEEMo estimate %.4f); energy-weighted k-means %.4f; %.0f s; written to %s",
             summary["exact_emd"], summary["neemo_estimate"], km["exact_emd"], res.seconds, out)
    return summary
