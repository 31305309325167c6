"""`econ-emd neemo estimate|fit`: NEEMo EMD estimates and geometric fits, written to <run>/neemo/."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ConfigError, DataError
from econ_emd.base.limits import require
from econ_emd.base.seeds import MAX_RUN_SEED, derive_seed, seed_int

from .config import RunConfig
from .sizes import neemo_needs
from .stages.result import NEEMO_DIR

log = logging.getLogger("econ_emd")


def _read_modules(path: str, drop_zero_sum: bool = True) -> np.ndarray:
    from econ_emd.data.loaders import HDF5_SUFFIXES, load_modules

    p = Path(path)
    source = "hdf5" if p.suffix.lower() in HDF5_SUFFIXES else "csv"
    if not p.exists():
        raise DataError(f"{path}: no such file")
    return load_modules(source, p, drop_zero_sum=drop_zero_sum).charges


def _pairs(cfg: RunConfig, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    if args.modules_a or args.modules_b:
        if not (args.modules_a and args.modules_b):
            raise DataError("neemo estimate: give both --modules-a and --modules-b (or neither, for random pairs)")
        if args.pairs is not None:
            raise DataError("neemo estimate: --pairs draws random pairs; it does not go with --modules-a/--modules-b")
        # rows are paired by position: zero-sum rows are dropped as pairs, never file by file
        a = _read_modules(args.modules_a, drop_zero_sum=False)
        b = _read_modules(args.modules_b, drop_zero_sum=False)
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise DataError(f"--modules-a has {len(a)} modules and --modules-b {len(b)}: need equal counts, "
                            "or one module")
        n = max(len(a), len(b))
        a, b = np.broadcast_to(a, (n, 48)).copy(), np.broadcast_to(b, (n, 48)).copy()
        empty = (a.sum(1) <= 0) | (b.sum(1) <= 0)
        if empty.all():
            raise DataError(f"{args.modules_a} vs {args.modules_b}: every pair has a module with a zero "
                            "charge sum (no EMD)")
        if empty.any():
            rows = np.flatnonzero(empty)
            log.warning("neemo: %d pair(s) with a zero-sum module skipped (data rows %s%s)", len(rows),
                        ", ".join(map(str, rows[:5])), " ..." if len(rows) > 5 else "")
        require(neemo_needs(cfg, int((~empty).sum()), f"{args.modules_a} vs {args.modules_b} "
                                                      f"({int((~empty).sum()):,} pairs)"))
        return a[~empty], b[~empty], f"{args.modules_a} vs {args.modules_b}"
    from econ_emd.neemo.events import random_module_pairs

    n = args.pairs if args.pairs is not None else cfg.neemo.random_pairs
    if n < 1:
        raise ConfigError(f"--pairs {n}: must be >= 1")
    require(neemo_needs(cfg, n, f"--pairs {n}" if args.pairs is not None else f"neemo.random_pairs={n}"))
    seed = derive_seed(cfg.seed, "neemo_random_pairs")
    a, b = random_module_pairs(n, seed)
    return a, b, f"{n} random synthetic module pairs (seed {seed.entropy})"


def run_estimate(cfg: RunConfig, args: argparse.Namespace, progress: bool) -> dict:
    import pandas as pd

    from econ_emd.base.artifacts import atomic_path, atomic_write_json
    from econ_emd.geometry import tc_centres
    from econ_emd.emd.exact import exact_emd
    from econ_emd.neemo.estimate import estimate_statistics, kr_estimate, module_pair_weights
    from econ_emd.neemo.plots import plot_estimates

    a, b, source = _pairs(cfg, args)
    out = Path(cfg.run_dir) / NEEMO_DIR / "estimate"
    out.mkdir(parents=True, exist_ok=True)
    weights = module_pair_weights(a, b)
    log.info("neemo: %d pairs (%s), %d potential steps each, batched", len(a), source, cfg.neemo.steps)
    res = kr_estimate(tc_centres(), weights, cfg.neemo.potential(), seed_int(cfg.seed, "neemo_potential"),
                      progress=progress)
    t0 = time.perf_counter()
    exact = exact_emd(a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True))
    t_exact = time.perf_counter() - t0
    stats = estimate_statistics(res.estimate, exact)
    identical = int((exact <= 0).sum())
    table = pd.DataFrame({"neemo": res.estimate, "exact": exact, "relative_error": stats.pop("relative_error")})
    with atomic_path(out / "estimates.csv") as tmp:
        table.to_csv(tmp, index_label="pair")
    summary = {"source": source, "n_pairs": int(len(a)), "identical_pairs": identical, "steps": cfg.neemo.steps,
               **stats,
               "seconds": res.seconds, "seconds_per_estimate": res.seconds / len(a), "exact_seconds": t_exact}
    plot_estimates(out / "neemo_vs_exact.png", exact, res.estimate, res, tc_centres(), weights)
    atomic_write_json(out / "summary.json", summary)
    if identical == len(a):
        log.info("neemo: every pair holds two identical modules (exact EMD 0): no relative error; largest "
                 "NEEMo estimate %.3g; written to %s", float(np.max(res.estimate)), out)
        return summary
    log.info("neemo: median |NEEMo - exact| / exact = %.2f%% (p90 %.2f%%), max (NEEMo - exact) / exact = %+.2f%%%s; "
             "%.2f s per estimate (batched, all cores); written to %s", 100 * summary["median_abs_relative_error"],
             100 * summary["p90_abs_relative_error"], 100 * summary["max_relative_error"],
             f" ({identical} identical pair(s), exact EMD 0, left out)" if identical else "",
             summary["seconds_per_estimate"], out)
    return summary


def _fit_params(cfg: RunConfig, args: argparse.Namespace):
    """The config's fit settings with --shape/--n-shapes applied, validated like the config."""
    from pydantic import ValidationError

    from econ_emd.neemo.params import FitParams

    flags = {"shape": "--shape", "k": "--n-shapes"}
    overrides = {k: v for k, v in (("shape", args.shape), ("k", args.n_shapes)) if v is not None}
    try:
        return FitParams.model_validate({**cfg.neemo.fit.model_dump(), **overrides})
    except ValidationError as exc:
        e = exc.errors()[0]
        key = e["loc"][0]
        raise ConfigError(f"{flags.get(key, key)} {overrides.get(key)}: {e['msg']}") from None


def run_fit(cfg: RunConfig, args: argparse.Namespace, progress: bool) -> dict:
    from econ_emd.base.artifacts import atomic_write_json
    from econ_emd.geometry import tc_centres
    from econ_emd.neemo.events import kmeans_baseline, synthetic_event
    from econ_emd.neemo.fit import fit_shapes
    from econ_emd.neemo.plots import plot_fit

    fit = _fit_params(cfg, args)
    if not 0 <= args.event_seed <= MAX_RUN_SEED:
        raise ConfigError(f"--event-seed {args.event_seed}: must be in 0..{MAX_RUN_SEED}")
    if args.modules:
        # --index counts the file's modules as they stand, zero-sum rows included (dropping
        # them first would shift every later index onto another module)
        mods = _read_modules(args.modules, drop_zero_sum=False)
        if not 0 <= args.index < len(mods):
            raise DataError(f"--index {args.index}: {args.modules} has {len(mods)} modules (0..{len(mods) - 1})")
        if mods[args.index].sum() <= 0:
            raise DataError(f"--index {args.index}: module {args.index} of {args.modules} has no charge "
                            "(every TC is zero): nothing to fit")
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
    out = Path(cfg.run_dir) / NEEMO_DIR / "fit" / f"{name}_{fit.shape}{fit.k}"
    out.mkdir(parents=True, exist_ok=True)
    log.info("neemo fit: %d %ss to %s", fit.k, fit.shape, what)
    res = fit_shapes([(points, energies)], fit, cfg.neemo.potential(), seed_int(cfg.seed, "neemo_potential"),
                     progress=progress)
    km = kmeans_baseline(points, energies, fit.k, seed=seed_int(cfg.seed, "neemo_kmeans"))
    summary = {"event": what, "shape": fit.shape, "k": fit.k, "centres": res.centres[0], "radii": res.radii[0],
               "widths": res.widths[0], "fractions": res.fractions[0],
               "neemo_estimate": float(res.estimate[0]), "exact_emd": float(res.exact[0]),
               "estimate_over_exact": float(res.estimate[0] / res.exact[0]),
               "kmeans": {"centres": km["centres"], "fractions": km["fractions"], "exact_emd": km["exact_emd"]},
               "true_centres": truth, "seconds": res.seconds,
               "track": [{"step": t["step"], "estimate": float(t["estimate"][0]), "exact": float(t["exact"][0])}
                         for t in res.track], "fit_params": fit.model_dump()}
    plot_fit(out / "fit.png", points, energies, res, 0, fit.shape, km)
    atomic_write_json(out / "fit.json", summary)
    log.info("neemo fit: exact EMD %.4f (NEEMo estimate %.4f); energy-weighted k-means %.4f; %.0f s; written to %s",
             summary["exact_emd"], summary["neemo_estimate"], km["exact_emd"], res.seconds, out)
    return summary
