"""What the ECON-T block's arithmetic does to busy modules: how many LSBs the converter's
8-bit image gives a cell, how often the floor of every convolution product to 2^-7 changes
it and by how much, and how many convolution weights training pushed to the ends of their
range. The reason an encoder in the ASIC's arithmetic loses to its float twin on busy
modules (docs/reference.md, "The encoder the ASIC runs").

    .venv/bin/python bench/asic_cuts.py --run-dir R [--encoder R/encoder] [--n 2000]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/default", help="its data/ (the test modules)")
    ap.add_argument("--encoder", default=None, help="an asic encoder (default: the run's encoder/)")
    ap.add_argument("--n", type=int, default=2000, help="test modules")
    args = ap.parse_args()

    import numpy as np

    from econ_emd.data.dataset import load_dataset
    from econ_emd.econt import autoencoder as ae
    from econ_emd.geometry import ae_slots_from_calq
    from econ_emd.models.asic_encoder import asic_weights
    from econ_emd.training.encoder_train import load_encoder
    from econ_emd.training.rebuild import integer_calq

    run = Path(args.run_dir)
    modules = load_dataset(run / "data")["test"][: args.n]
    weights = asic_weights(load_encoder(args.encoder or run / "encoder"))
    x = ae.converter(ae_slots_from_calq(integer_calq(modules)))          # units of 2^-(INPUT_FRACTION)
    nonzero = x[x > 0]
    print(f"{len(modules):,} test modules of {run / 'data'}")
    print(f"converter image: median {np.median(nonzero):.0f} LSB per non-zero cell; cells 0: {np.mean(x == 0):.1%}; "
          f"1-4 LSB: {np.mean((x > 0) & (x <= 4)):.1%}")
    k = weights.conv_kernel.ravel()                                        # units of 2^-(WEIGHT_FRACTION)
    print(f"convolution weights at the ends of the range: {np.mean((k == ae.WEIGHT_MAX) | (k == ae.WEIGHT_MIN)):.1%}")
    step = 2 ** (ae.INPUT_FRACTION + ae.WEIGHT_FRACTION - ae.CONV_FRACTION)   # the cut, in product units
    products = np.outer(nonzero, k).ravel()
    cut = np.floor(products / step) * step
    print(f"convolution products changed by the floor to 2^-{ae.CONV_FRACTION}: {np.mean(cut != products):.1%}; "
          f"mean |change| / mean |product|: {np.abs(cut - products).mean() / np.abs(products).mean():.1%}")


if __name__ == "__main__":
    main()
