"""How much the loss comparison depends on the training seed, in one run.

For each seed, trains the quantized encoder with each loss on the run's data (and the run's
frozen EMD-CNN for the emd_cnn loss), with the config's encoder settings, judges every
reconstruction of the test modules by the exact EMD, and prints the median exact EMD per
loss and the ratios of issue 4 (emd_cnn / telescope <= 0.75, emd_cnn / wmse <= 0.6) per seed.
`--float` adds the unquantized twin with the emd_cnn loss and the quantized / float mean.
The pipeline trains with the config's `seed` only; this shows the spread around it.

    .venv/bin/python bench/loss_seeds.py [--run-dir runs/default] [--seeds 1234 7] [--float]
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="default: configs/default.yaml")
    ap.add_argument("--run-dir", default="runs/default", help="holds data/ and emd_cnn/ (run the pipeline first)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 7])
    ap.add_argument("--losses", nargs="+", default=["emd_cnn", "telescope", "wmse"])
    ap.add_argument("--float", action="store_true", help="also the unquantized twin (emd_cnn loss)")
    args = ap.parse_args()
    logging.getLogger("econ_emd").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes between trainings

    from econ_emd.config import load_config
    from econ_emd.data.dataset import load_dataset
    from econ_emd.emd.exact import EmdRunner
    from econ_emd.training.encoder_run import TrainRequest, train_and_evaluate
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    cfg = load_config(args.config)
    run = Path(args.run_dir)
    if not (run / "data").is_dir() or ("emd_cnn" in args.losses and not (run / "emd_cnn").is_dir()):
        raise SystemExit(f"{run}: needs data/ and emd_cnn/ from `econ-emd pipeline` first")
    e = cfg.encoder
    ds = load_dataset(run / "data")
    n_train, n_test = len(ds["train"][: e.max_train_modules]), len(ds["test"][: e.max_eval_modules])
    frozen = load_frozen_emd_cnn(run / "emd_cnn") if "emd_cnn" in args.losses else None
    runner = EmdRunner(solver=cfg.emd.solver, n_jobs=len(os.sched_getaffinity(0)), progress=False)
    jobs = [(name, True) for name in args.losses] + ([("emd_cnn", False)] if args.float else [])
    print(f"{n_train:,} training and {n_test:,} test modules; {e.epochs} epochs, learning rate "
          f"{e.learning_rate}, batch {e.batch_size}")
    for seed in args.seeds:
        med, mean = {}, {}
        for name, quantized in jobs:
            t0 = time.perf_counter()
            request = TrainRequest(params=e.model_copy(update={"quantized": quantized}), loss=name, seed=seed)
            run = train_and_evaluate(request, data=ds, out=None, frozen=frozen, runner=runner, label=name)
            key = name if quantized else f"{name} (float)"
            med[key], mean[key] = run.evaluation.overall.median, run.evaluation.overall.mean
            print(f"  seed {seed} {key:16s} median {med[key]:.3f} mean {mean[key]:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        line = [f"seed {seed}:"]
        for other, goal in (("telescope", 0.75), ("wmse", 0.6)):
            if "emd_cnn" in med and other in med:
                r = med["emd_cnn"] / med[other]
                line.append(f"emd_cnn/{other} {r:.3f} ({'PASS' if r <= goal else 'FAIL'} <= {goal})")
        if "emd_cnn (float)" in mean:
            r = mean["emd_cnn"] / mean["emd_cnn (float)"]
            line.append(f"quantized/float {r:.3f} ({'PASS' if r <= 1.1 else 'FAIL'} <= 1.1)")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
