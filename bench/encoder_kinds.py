"""Which encoder the default trains: the QKeras encoder of the published widths against the
encoder in the ECON-T block's own arithmetic (and its float twin), over seeds, per link count.

Issue 29's rule: the asic kind becomes the default when its mean exact EMD (median over
seeds) is at least as good as the QKeras encoder's; its goal: within 10% of its float twin.
Every point trains on the run's data against the run's frozen EMD-CNN with the config's
encoder settings, at each kind's measured learning rate (`scan.learning_rates`), and is
judged by the exact EMD of the run's test modules (the asic kind after its quantized
decoder). Each training is kept under `<run-dir>/bench_encoder_kinds/` (a killed study
resumes where it stopped; a finished point is read back). Prints per point and the median
over seeds with its range; `--json` writes the table.

    .venv/bin/python bench/encoder_kinds.py --run-dir runs/default [--links 2 3 4 5] [--seeds 5] [--set KEY=VALUE]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: (name, encoder kind, quantized)
POINTS = (("qkeras", "qkeras", True), ("asic", "asic", True), ("asic (float twin)", "asic", False))


def spread(values: list[float]) -> dict:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="default: configs/default.yaml")
    ap.add_argument("--run-dir", default="runs/default", help="holds data/ and emd_cnn/ (run the pipeline first)")
    ap.add_argument("--links", type=int, nargs="+", default=None, help="default: encoder.links")
    ap.add_argument("--seeds", type=int, default=5, help="training seeds per point (derived from the config's seed)")
    ap.add_argument("--points", nargs="+", default=[p[0] for p in POINTS], choices=[p[0] for p in POINTS])
    ap.add_argument("--json", default=None, help="write the table here")
    ap.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                    help="override a config value, e.g. --set encoder.max_train_modules=20000 (repeatable)")
    args = ap.parse_args()
    logging.getLogger("econ_emd").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    from _material import training_material
    from econ_emd.stages.result import training_seeds
    from econ_emd.training.encoder_run import TrainRequest, train_and_evaluate

    cfg, ds, frozen, runner = training_material(args.config, args.run_dir, args.overrides)
    run = Path(args.run_dir)
    seeds = training_seeds(cfg, args.seeds)
    links = args.links or [cfg.encoder.links]
    e = cfg.encoder
    print(f"{len(ds['train'][: e.max_train_modules]):,} training and {len(ds['test'][: e.max_eval_modules]):,} "
          f"test modules of {run / 'data'}; {e.epochs} epochs; seeds {seeds}", flush=True)
    table: dict = {"run_dir": str(run), "seeds": seeds, "epochs": e.epochs, "points": {}}
    # the asic points' folders by seed: their float starts are the float twin points (and the
    # other link counts' float starts), reused rather than trained again
    asic_folders: dict[int, list[Path]] = {}
    for n_links in links:
        means: dict[str, list[float]] = {}
        for name, kind, quantized in (p for p in POINTS if p[0] in args.points):
            lr = cfg.scan.learning_rates[kind]
            params = e.model_copy(update={"kind": kind, "quantized": quantized, "links": n_links, "learning_rate": lr})
            for seed in seeds:
                t0 = time.perf_counter()
                out = run / "bench_encoder_kinds" / f"{kind}{'' if quantized else '_float'}_{n_links}links_seed{seed}"
                r = train_and_evaluate(TrainRequest(params=params, loss=e.loss, seed=seed), data=ds, out=out,
                                       frozen=frozen, runner=runner, label=name,
                                       reuse_from=list(asic_folders.get(seed, [])))
                if kind == "asic" and quantized:
                    asic_folders.setdefault(seed, []).append(out)
                means.setdefault(name, []).append(r.evaluation.overall.mean)
                print(f"  {n_links} links {name:18s} seed {seed}: mean {r.evaluation.overall.mean:.4f} median "
                      f"{r.evaluation.overall.median:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        summary = {name: spread(v) for name, v in means.items()}
        ratios = {}
        if "asic" in means and "qkeras" in means:
            ratios["asic / qkeras"] = summary["asic"]["median"] / summary["qkeras"]["median"]
        if "asic" in means and "asic (float twin)" in means:
            ratios["asic / float twin"] = summary["asic"]["median"] / summary["asic (float twin)"]["median"]
        table["points"][str(n_links)] = {"mean_exact_emd": summary, "ratios": ratios}
        print(f"{n_links} links, mean exact EMD, median over {len(seeds)} seeds [min, max]:")
        for name, s in summary.items():
            print(f"  {name:18s} {s['median']:.4f} [{s['min']:.4f}, {s['max']:.4f}]")
        for k, v in ratios.items():
            print(f"  {k}: {v:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
