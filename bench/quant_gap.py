"""Where the quantized encoder loses against its float twin: one width widened at a time.

Trains the encoder (the config's settings, the emd_cnn loss against the run's frozen
EMD-CNN, the encoder stage's training seed, or the comparison's first `--seeds` seeds) with
the published widths, with each quantizer widened alone (weights and biases, the input, the
convolution activations, the latents), with all of them widened, and unquantized; judges
every reconstruction of the test modules by exact EMD and prints, per variant, the mean and
median exact EMD and the mean against the float twin's (the goal: quantized / float <= 1.10).
The variant whose widening closes most of the gap names the quantizer that costs it.

    .venv/bin/python bench/quant_gap.py [--run-dir runs/default] [--seeds 1]
"""
from __future__ import annotations

import argparse
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: one quantizer widened at a time (integer bits kept, the extra bits all fractional)
WIDENED = {
    "weights 12 bits": {"weight_bits": 12},
    "input 16 bits": {"input_bits": 16},
    "conv activations 18 bits": {"conv_act_bits": 18},
    "latents 16 bits": {"latent_bits": 16},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="default: configs/default.yaml")
    ap.add_argument("--run-dir", default="runs/default", help="holds data/ and emd_cnn/ (run the pipeline first)")
    ap.add_argument("--seeds", type=int, default=1, help="how many of the comparison's training seeds")
    args = ap.parse_args()
    logging.getLogger("econ_emd").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)

    from _material import training_material
    from econ_emd.stages.compare_losses import seeds as compare_seeds
    from econ_emd.training.encoder_run import TrainRequest, train_and_evaluate

    cfg, ds, frozen, runner = training_material(args.config, args.run_dir)
    e = cfg.encoder
    every = {k: v for d in WIDENED.values() for k, v in d.items()}
    variants = [("published widths", e, True), *((n, e.model_copy(update=u), True) for n, u in WIDENED.items()),
                ("all widened", e.model_copy(update=every), True), ("float", e, False)]
    print(f"{len(ds['train'][: e.max_train_modules]):,} training and {len(ds['test'][: e.max_eval_modules]):,} "
          f"test modules; {e.epochs} epochs, learning rate {e.learning_rate}; widths: input {e.input_bits}, "
          f"weights {e.weight_bits}, conv activations {e.conv_act_bits}, latents {e.bits()}")
    for seed in compare_seeds(cfg)[: args.seeds]:
        means = {}
        for name, params, quantized in variants:
            t0 = time.perf_counter()
            request = TrainRequest(params=params.model_copy(update={"quantized": quantized}), loss="emd_cnn",
                                   seed=seed)
            result = train_and_evaluate(request, data=ds, out=None, frozen=frozen, runner=runner, label=name)
            ov = result.evaluation.overall
            means[name] = ov.mean
            print(f"  seed {seed} {name:26s} mean {ov.mean:.3f} median {ov.median:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for name, _, _ in variants[:-1]:
            print(f"  seed {seed} {name:26s} / float: {means[name] / means['float']:.3f}")


if __name__ == "__main__":
    main()
