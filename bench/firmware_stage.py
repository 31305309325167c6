"""Firmware stage timing and bit-exactness over output-link counts and IO types, in one run.

For each link count (latent 3/5/7/9 bits) and IO type: build the encoder of that preset
carrying the trained weights of the run's encoder (the presets differ only in the latent
quantizer; without a trained encoder, seeded random weights), convert it with hls4ml, build
and run the g++ C simulation on N held-out modules, and compare with QKeras in output LSBs.
Prints wall time of convert + compile + csim and the bit-exact fraction per configuration.
Goal (issue 5): 100% bit-exact on >= 10,000 modules for every preset (io_parallel/Latency)
and for io_stream; the firmware stage of the default pipeline <= 2 minutes on 2 cores.

    .venv/bin/python bench/firmware_stage.py [--run-dir runs/default] [--n 10000] [--io io_parallel io_stream]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from econ_emd.econt.link_budget import AE_LINK_COUNTS, latent_bits_for_links  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/default")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--io", nargs="+", default=["io_parallel", "io_stream"])
    ap.add_argument("--presets", nargs="+", type=int, default=list(AE_LINK_COUNTS), help="output-link counts")
    args = ap.parse_args()

    import tensorflow as tf

    from econ_emd.firmware.flow import build_firmware
    from econ_emd.firmware.params import FirmwareParams, RtlParams
    from econ_emd.models.econt import EncoderArch, build_encoder
    from econ_emd.training.encoder_train import encoder_inputs, load_encoder
    from econ_emd.data.synthetic import generate

    run = Path(args.run_dir)
    trained = None
    if (run / "encoder" / "encoder.h5").exists():
        trained = load_encoder(run / "encoder")
    data = run / "data" / "modules.h5"
    if data.exists():
        from econ_emd.data.dataset import load_dataset

        modules = load_dataset(run / "data")["test"]
    else:
        modules = generate(args.n, seed=99)
    if len(modules) < args.n:
        modules = np.concatenate([modules, generate(args.n - len(modules), seed=99)])
    modules = modules[: args.n]
    print(f"modules: {len(modules):,}; weights: {'trained (' + str(run / 'encoder') + ')' if trained else 'random (seed 0)'}")
    print(f"{'links':>6} {'latent bits':>11} {'io':>12} {'convert s':>9} {'csim build s':>12} {'csim run s':>10} "
          f"{'total s':>8} {'bit-exact':>10} {'max LSB':>7}")
    for n_el in args.presets:
        bits = latent_bits_for_links(n_el)
        tf.keras.utils.set_random_seed(0)
        enc = build_encoder(EncoderArch(latent_bits=bits))
        if trained is not None:
            enc.set_weights(trained.get_weights())
        x = encoder_inputs(modules, enc)
        y = enc.predict(x, batch_size=4096, verbose=0)
        for io in args.io:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                build = build_firmware(enc, x, y, tmp, firmware=FirmwareParams(io_type=io), rtl=RtlParams(),
                                       products=("hls", "csim"))
                total = time.perf_counter() - t0
            rep = build.csim.accuracy
            print(f"{n_el:>6} {bits:>11} {io:>12} {build.hls.convert_seconds:>9.1f} "
                  f"{rep.details['compile_seconds']:>12.1f} {rep.details['run_seconds']:>10.1f} {total:>8.1f} "
                  f"{100 * rep.bit_exact_fraction:>9.3f}% {rep.max_abs_diff_lsb:>7}")


if __name__ == "__main__":
    main()
