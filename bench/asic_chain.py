"""Issue 29's proof at every link count: the asic encoders of a run, each on N test modules
turned into input link words, give the same latent bits in Keras, the product's ECON-T
emulator (the exported configuration's packets), the ECON-T block's integer model, hls4ml's
C simulation and the RTL (da4ml Verilog, Verilator).

Reads the run's asic encoders (the encoder stage's and compare-econt's first seed at every
other link count: `econ-emd pipeline` with encoder.kind asic), so run that first. Prints one
row per link count: modules, and the fraction identical in each comparison (goal: 100% on
>= 10,000 modules at every link count). The HLS projects and Verilog stay in --out.

    .venv/bin/python bench/asic_chain.py --run-dir runs/default [--n 10000] [--out /tmp/asic_chain]
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="default: configs/default.yaml (its firmware and rtl settings)")
    ap.add_argument("--run-dir", default="runs/default")
    ap.add_argument("--n", type=int, default=10_000, help="test modules per link count")
    ap.add_argument("--out", default=None, help="where the HLS projects and Verilog go (default: a temporary folder)")
    args = ap.parse_args()
    logging.getLogger("econ_emd").setLevel(logging.WARNING)

    from econ_emd.config import load_config
    from econ_emd.data.dataset import load_dataset
    from econ_emd.econt_export import export_config
    from econ_emd.firmware.flow import build_firmware
    from econ_emd.training.encoder_train import firmware_form, load_encoder
    from econ_emd.training.rebuild import integer_calq

    cfg = load_config(args.config)
    run = Path(args.run_dir)
    modules = load_dataset(run / "data")["test"][: args.n]
    if len(modules) < args.n:
        raise SystemExit(f"{run}/data: {len(modules):,} test modules, fewer than --n {args.n:,}")
    folders = {cfg.encoder.links: run / "encoder"}
    for n in cfg.compare_econt.link_counts:
        folders.setdefault(n, run / "compare_econt" / f"encoder_{n}links" / "seed_0")
    out = Path(args.out or tempfile.mkdtemp(prefix="asic_chain."))
    calq = integer_calq(modules)
    print(f"{len(modules):,} test modules of {run / 'data'}; projects under {out}")
    print(f"{'links':>5} {'bits':>4} {'emulator packets = Keras':>25} {'block = Keras':>14} {'C sim = block':>14} "
          f"{'RTL = block':>12} {'s':>5}")
    for n_links, folder in sorted(folders.items()):
        if not (folder / "encoder.h5").is_file():
            print(f"{n_links:>5} no asic encoder in {folder}")
            continue
        t0 = time.perf_counter()
        trained = load_encoder(folder)
        exported = export_config(trained, out / f"init_{n_links}links.yaml", calq, links=n_links, source=str(folder))
        form = firmware_form(trained, modules)          # raises unless every module's block latents = Keras
        build = build_firmware(form.model, form.inputs, form.expected, out / f"{n_links}links", firmware=cfg.firmware,
                               rtl=cfg.rtl.model_copy(update={"synthesize": "never"}), products=("hls", "csim", "rtl"),
                               product_cuts=form.product_cuts)
        print(f"{n_links:>5} {exported.latent_bits:>4} {exported.crossings_checked:>16,} of {len(modules):,} "
              f"{'100%':>14} {100 * build.csim.accuracy.bit_exact_fraction:>13.4f}% "
              f"{100 * build.rtl.simulation.bit_exact_fraction:>11.4f}% {time.perf_counter() - t0:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
