"""Full-size vendor-free RTL of the trained encoder: bit-exactness, latency and Yosys resources.

For each (part, latency cutoff): trace the run's trained QKeras encoder with da4ml, write the
pipelined Verilog, simulate N held-out modules with Verilator (one per clock cycle) against
QKeras, and synthesize with Yosys synth_xilinx for the part's family. Prints one table with
the published Vivado figures of the same architecture for comparison (fastml-science
io_stream encoder on a Zynq-7020, Vivado HLS 2020.1: 36,023 LUT, 29,474 FF, 59 DSP,
103 cycles at 200 MHz, II 92).
Goals (issue 6): 100% bit-exact on >= 10,000 modules; II = 1 and latency <= 25 ns.

    .venv/bin/python bench/rtl_synthesis.py [--run-dir runs/default] [--n 10000]
        [--parts xcvu13p-flga2577-2-e:4.167 xc7z020clg400-1:5.0] [--cutoffs 5] [--compare-mapping]

--compare-mapping also synthesizes each design with `synth_xilinx` whole (ABC9 LUT mapping)
beside the product's classic-ABC mapping, one more row each (LUTs and Yosys time).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PUBLISHED = {"lut": 36_023, "ff": 29_474, "carry": None, "dsp": 59, "bram_18k": None,
             "latency_cycles": 103, "latency_ns": 103 * 5.0, "ii": 92}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/default")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--parts", nargs="+", default=["xcvu13p-flga2577-2-e:4.167", "xc7z020clg400-1:5.0"],
                    help="PART:CLOCK_NS")
    ap.add_argument("--cutoffs", nargs="+", type=float, default=[5.0], help="adder levels per stage")
    ap.add_argument("--compare-mapping", action="store_true", help="also synthesize with ABC9 (synth_xilinx whole)")
    args = ap.parse_args()

    import numpy as np

    from econ_emd.firmware import parts as part_db
    from econ_emd.firmware.params import FirmwareParams, RtlParams
    from econ_emd.firmware.rtl import build_rtl
    from econ_emd.firmware.rtl_synth import run_yosys
    from econ_emd.training.encoder_train import encoder_inputs, load_encoder
    from econ_emd.data.synthetic import generate

    run = Path(args.run_dir)
    encoder = load_encoder(run / "encoder")
    fw = run / "firmware"
    if (fw / "tb_inputs.npy").exists() and len(np.load(fw / "tb_inputs.npy")) >= args.n:
        x = np.load(fw / "tb_inputs.npy")[: args.n]
        source = f"{fw}/tb_inputs.npy"
    else:
        x = encoder_inputs(generate(args.n, seed=99), encoder)
        source = "synthetic modules, seed 99"
    y = encoder.predict(x, batch_size=4096, verbose=0)
    print(f"encoder {run / 'encoder'}; {len(x):,} modules from {source}\n")
    rows = []
    for spec in args.parts:
        part, clock = spec.split(":")
        for cut in args.cutoffs:
            with tempfile.TemporaryDirectory() as tmp:
                b = build_rtl(encoder, x, y, tmp, firmware=FirmwareParams(part=part, clock_period_ns=float(clock)),
                              rtl=RtlParams(latency_cutoff=cut, synthesize="always"))
                syntheses = [b.synthesis.to_json()]
                if args.compare_mapping:
                    syntheses.append(run_yosys(Path(tmp) / "verilog", part_db.yosys_family(part), mapping="abc9"))
            sim = b.simulation
            for syn in syntheses:
                c = syn["counts"]
                tool = f"{b.synthesis.version} ({syn['script']}), {sim.simulator}"
                rows.append((f"{tool}, {part} @ {float(clock):g} ns, cutoff {cut:g}", c["lut"], c["ff"], c["carry"],
                             c["dsp"], c["bram_18k"], sim.latency_cycles, sim.latency_ns, sim.initiation_interval,
                             f"{100 * sim.bit_exact_fraction:.3f}%", f"{syn['seconds']:.0f} s"))
    print("| implementation | LUT | FF | CARRY | DSP | BRAM18 | latency (cycles) | latency (ns) | II "
          "| bit-exact | Yosys time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| da4ml + {r[0]} | {r[1]:,} | {r[2]:,} | {r[3]:,} | {r[4]} | {r[5]} | {r[6]} | "
              f"{r[7]:.1f} | {r[8]} | {r[9]} | {r[10]} |")
    p = PUBLISHED
    print(f"| published: hls4ml io_stream, Vivado HLS 2020.1, Zynq-7020 @ 5 ns | {p['lut']:,} | {p['ff']:,} | - | "
          f"{p['dsp']} | - | {p['latency_cycles']} | {p['latency_ns']:.0f} | {p['ii']} | - | - |")


if __name__ == "__main__":
    main()
