"""NEEMo goals of issue 7, measured in one run with the default settings (configs' neemo section).

Estimation: N random synthetic module pairs; NEEMo (one potential per pair, batched) vs the
exact EMD: median |NEEMo - exact| / exact (goal <= 3%), NEEMo never above exact + 1%, time
per estimate on this machine's cores.
Fitting: M synthetic events with 2-5 known clusters, K = the true count, K points with
learned energy fractions; exact EMD (POT) of the fitted points vs the energy-weighted
k-means centres (goal: NEEMo <= k-means on >= 80% of events), and the final NEEMo estimate
vs the fitted configuration's exact EMD (goal: within 5%).

    .venv/bin/python bench/neemo_goals.py [--pairs 200] [--events 50 (0: no fitting)] [--init kmeans|energy]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--init", choices=("kmeans", "energy"), default=None, help="default: the config's")
    ap.add_argument("--skip-estimate", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from econ_emd.emd.exact import exact_emd
    from econ_emd.geometry import tc_centres
    from econ_emd.neemo.estimate import kr_estimate, module_pair_weights
    from econ_emd.neemo.events import kmeans_baseline, synthetic_event
    from econ_emd.neemo.fit import fit_shapes
    from econ_emd.neemo.params import NeemoConfig
    from econ_emd.data.synthetic import generate

    cfg = NeemoConfig()
    opt = cfg.potential()
    print(f"cores: {os.cpu_count()}; potential width {cfg.width}, {cfg.n_linear} linear layers, groups of "
          f"{cfg.group_size}; estimator {cfg.steps} steps, lr {cfg.learning_rate} -> {cfg.final_learning_rate}")
    if not args.skip_estimate:
        mods = generate(4 * args.pairs + 100, seed=2024)
        rng = np.random.default_rng(2024)
        a = mods[rng.choice(len(mods), args.pairs, replace=False)]
        b = mods[rng.choice(len(mods), args.pairs, replace=False)]
        exact = exact_emd(a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True))
        res = kr_estimate(tc_centres(), module_pair_weights(a, b), opt)
        rel = (res.estimate - exact) / exact
        print(f"\nEstimation, {args.pairs} random module pairs:")
        print(f"  median |NEEMo - exact| / exact = {100 * np.median(np.abs(rel)):.2f}%  (goal <= 3%)  "
              f"p90 {100 * np.percentile(np.abs(rel), 90):.2f}%")
        print(f"  max (NEEMo - exact) / exact = {100 * rel.max():+.3f}%  (goal <= +1%)  "
              f"-> {'PASS' if rel.max() <= 0.01 else 'FAIL'}")
        raw = (res.raw - exact) / exact
        print(f"  the network's own dual before the c-transform refinement: median |rel| "
              f"{100 * np.median(np.abs(raw)):.2f}%, max {100 * raw.max():+.3f}%")
        print(f"  time: {res.seconds:.0f} s for all pairs batched = {res.seconds / args.pairs:.2f} s per estimate")

    if args.events <= 0:
        return
    fit_cfg = cfg.fit.model_copy(update={"init": args.init} if args.init else {})
    events = [synthetic_event(2 + i % 4, 1000 + i) for i in range(args.events)]
    rows = []
    t0 = time.perf_counter()
    for k in (2, 3, 4, 5):
        sel = [i for i, ev in enumerate(events) if len(ev["centres"]) == k]
        if not sel:
            continue
        res = fit_shapes([(events[i]["points"], events[i]["energies"]) for i in sel],
                         fit_cfg.model_copy(update={"k": k}), opt)
        for j, i in enumerate(sel):
            km = kmeans_baseline(events[i]["points"], events[i]["energies"], k)
            rows.append((k, res.exact[j], km["exact_emd"], res.estimate[j], res.track[0]["exact"][j]))
        lag = [float(np.median(t["estimate"] / t["exact"])) for t in res.track]
        print(f"  K={k}: {len(sel)} events; tracked estimate/exact along the fit (median): "
              f"{', '.join(f'{v:.2f}' for v in lag)}")
    seconds = time.perf_counter() - t0
    r = np.array(rows)
    win = r[:, 1] <= r[:, 2]
    ratio = r[:, 3] / r[:, 1]
    print(f"\nFitting, {len(r)} synthetic events (2-5 clusters), K points, init {fit_cfg.init}:")
    print(f"  NEEMo exact EMD <= k-means exact EMD on {100 * win.mean():.0f}% of events (goal >= 80%); "
          f"median NEEMo / k-means {np.median(r[:, 1] / r[:, 2]):.3f}; median start / final "
          f"{np.median(r[:, 4] / r[:, 1]):.2f}")
    print(f"  final estimate / exact: median {np.median(ratio):.3f}, min {ratio.min():.3f}, max {ratio.max():.3f}; "
          f"within 5% on {100 * np.mean(np.abs(ratio - 1) <= 0.05):.0f}% of events")
    print(f"  time: {seconds:.0f} s = {seconds / len(r):.1f} s per event (events of equal K batched)")


if __name__ == "__main__":
    main()
