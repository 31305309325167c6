"""`econ-emd econt firmware DIR`: the CMS autoencoder of a golden-vector folder through
this product's firmware path, checked against the vector's output words.

The folder's register image (init.yaml) is loaded into the product's QKeras encoder
(`models.arch.ECONT_ASIC_ENCODER`, weights as the ASIC block reads them:
`econt.autoencoder.AeWeights.from_registers`), converted with hls4ml with the block's
product cuts (`econt.autoencoder`: convolution products to 2^-7, dense to 2^-8; hls4ml
keeps each product in the accumulator type, which does the cut), C-simulated with g++,
and traced to Verilog with da4ml (the same cuts) and simulated with Verilator, on every
crossing of the vector. The firmware's inputs are the converter's outputs, computed by the
emulator's front end; the module sum beside the latents is the emulator's too.

Compared with the words of the vector: every latent bit the packet carries (all 144 at 5
links with the full mask; the vector `AE_8x8_c8_S2_ele_qkeras` runs at 2 links and carries
50), per latent, with the LSB-difference histogram for the latents sent whole.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from econ_emd.base.artifacts import atomic_write_json, atomic_write_text, claim_output_folder, mark_output_folder
from econ_emd.base.errors import CheckFailed, UserError
from econ_emd.base.tables import markdown_table
from econ_emd.econt import algorithms as alg
from econ_emd.econt import autoencoder as ae
from econ_emd.econt.emulator import front_end
from econ_emd.econt.formatter import autoencoder_sent_bits, read_autoencoder_packet
from econ_emd.econt.links import read_rx, read_tx
from econ_emd.econt.registers import ae_register_values, load_config
from econ_emd.econt.verify import CONFIG_NAME, OUTPUT_NAMES, aligned_start, find_input

from .stages.result import ECONT_FIRMWARE_DIR     # the reports' folder under the run directory, one per vector

log = logging.getLogger("econ_emd")

LATENT_LSB = 2.0 ** -ae.DENSE_FRACTION


def _vector(folder: Path):
    if not (folder / CONFIG_NAME).is_file():
        raise UserError(f"{folder}: no {CONFIG_NAME} (an ECON-T test-vector folder)")
    cfg = load_config(folder / CONFIG_NAME)
    if cfg.algorithm != 4:
        raise UserError(f"{folder / CONFIG_NAME}: algorithm {cfg.algorithm} ({cfg.algorithm_name}), "
                        "not the autoencoder (4)")
    out = next((folder / n for n in OUTPUT_NAMES if (folder / n).is_file()), None)
    if out is None:
        raise UserError(f"{folder}: no expected output ({OUTPUT_NAMES[0]}[.gz])")
    inp = find_input(folder, folder.parent)
    if inp is None:
        raise UserError(f"{folder}: no input (testInput.csv[.gz]) in the folder or the one above")
    rx, tx = read_rx(inp), read_tx(out)
    start = aligned_start(rx, len(tx))          # an input longer than the output: from its BX0 header
    return cfg, rx[start:start + len(tx)], tx


def _h5_agreement(folder: Path, register_values: np.ndarray) -> dict | None:
    """Does the folder's encoder.hdf5 give the register image (floor to 1/32, Keras order)?"""
    path = folder / "encoder.hdf5"
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as h:
            arrays = []
            h.visititems(lambda n, o: arrays.append((n, o[()])) if isinstance(o, h5py.Dataset) else None)
    except OSError as exc:
        raise UserError(f"{path}: not an HDF5 weights file ({exc})") from None
    conv = sorted((n, a) for n, a in arrays if a.ndim == 4 or (a.ndim == 1 and a.size == ae.N_FILTERS))
    dense = sorted((n, a) for n, a in arrays if a.shape in ((ae.N_HIDDEN, ae.N_LATENT), (ae.N_LATENT,)))
    kernel = next((a for n, a in conv if a.ndim == 4), None)
    bias = next((a for n, a in conv if a.ndim == 1), None)
    dk = next((a for n, a in dense if a.ndim == 2), None)
    db = next((a for n, a in dense if a.ndim == 1), None)
    if any(v is None for v in (kernel, bias, dk, db)):
        return {"file": path.name, "agrees": False, "message": "not the 8x8 encoder's four weight arrays"}
    flat = np.concatenate([kernel.ravel(), bias, dk.ravel(), db])
    quantized = np.clip(np.floor(flat * 2 ** ae.WEIGHT_FRACTION), ae.WEIGHT_MIN, ae.WEIGHT_MAX).astype(np.int64)
    same = int((quantized == register_values).sum())
    return {"file": path.name, "agrees": same == len(flat), "weights_equal": same, "weights": int(len(flat))}


def _compare(cfg, tx: np.ndarray, latents: np.ndarray) -> dict:
    """Latents (n, 16) against the vector's words: per-latent agreement on the bits sent,
    LSB-difference histogram of the latents sent whole."""
    lat_idx, bit_idx = autoencoder_sent_bits(cfg)
    _, sent = read_autoencoder_packet(tx, cfg)
    produced = ((latents[:, lat_idx] >> bit_idx) & 1).astype(np.uint8)
    per_latent, whole = [], []
    for i in range(ae.N_LATENT):
        cols = np.flatnonzero(lat_idx == i)
        if not len(cols):
            per_latent.append({"latent": i, "bits_sent": 0, "agreement": None})
            continue
        equal = (produced[:, cols] == sent[:, cols]).all(axis=1)
        per_latent.append({"latent": i, "bits_sent": int(len(cols)), "agreement": float(equal.mean())})
        if len(cols) == ae.LATENT_BITS:
            whole.append(i)
    hist: dict[int, int] = {}
    if whole:
        expected = np.zeros((len(tx), len(whole)), dtype=np.int64)
        for j, i in enumerate(whole):
            for c in np.flatnonzero(lat_idx == i):
                expected[:, j] |= sent[:, c].astype(np.int64) << int(bit_idx[c])
        diff = latents[:, whole] - expected
        values, counts = np.unique(diff, return_counts=True)
        hist = {int(v): int(c) for v, c in zip(values, counts)}
    rows_equal = (produced == sent).all(axis=1)
    return {"crossings": int(len(tx)), "crossings_identical": int(rows_equal.sum()),
            "fraction_identical": float(rows_equal.mean()) if len(tx) else 0.0,
            "bits_compared": int(len(lat_idx)), "latents_sent_whole": whole,
            "per_latent": per_latent, "lsb_difference_histogram": hist,
            "first_mismatch_row": int(np.flatnonzero(~rows_equal)[0]) if (~rows_equal).any() else None}


def run_ae_firmware(folder: str, run_cfg, output: str | None = None, rtl: bool = True) -> Path:
    """Build and check the vector folder's autoencoder; the report goes to `output`, by
    default `<run_dir>/econt_firmware/<folder name>`. Returns the report's folder."""
    from econ_emd.base.artifacts import building
    from econ_emd.base.digests import tree_digest

    folder = Path(folder)
    out_dir = Path(output) if output else Path(run_cfg.run_dir) / ECONT_FIRMWARE_DIR / folder.name
    claim_output_folder(out_dir, "--output")          # before any work: nothing of the user's is replaced
    real_out = out_dir.resolve()
    if folder.resolve() == real_out or folder.resolve().is_relative_to(real_out):
        raise UserError(f"--output {out_dir}: holds the vector folder {folder}, which the report would replace; "
                        "name another folder")
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    cfg, rx, tx = _vector(folder)
    key = tree_digest(folder) + repr((rtl, run_cfg.firmware.model_dump_json(), run_cfg.rtl.model_dump_json()))
    with building(out_dir, hashlib.sha256(key.encode()).hexdigest()[:16]) as work:
        summary = _run(cfg, rx, tx, folder, work, run_cfg, rtl)
        mark_output_folder(work)
    failed = [name for name, c in summary["checks"].items() if c["fraction_identical"] < 1.0]
    if summary["module_sum"]["fraction_identical"] < 1.0:
        failed.append("module sum")
    log.info("econt firmware: report in %s", out_dir / "report.md")
    if failed:
        raise CheckFailed(f"econt firmware {folder}: not identical to the vector: {', '.join(failed)}")
    return out_dir


def _run(cfg, rx: np.ndarray, tx: np.ndarray, folder: Path, work: Path, run_cfg, rtl: bool) -> dict:
    from econ_emd.firmware.flow import build_firmware
    from econ_emd.models.asic_encoder import PRODUCT_CUTS, firmware_encoder

    t0 = time.perf_counter()
    weights = ae.AeWeights.from_registers(cfg.ae_weight_words)
    q = front_end(cfg, rx)
    emulated = ae.encode(q, weights)
    x = ae.image(ae.converter(q)).astype(np.float64)[..., None] * 2.0 ** -ae.INPUT_FRACTION
    sum_code, _ = read_autoencoder_packet(tx, cfg)
    sums = alg.module_sum_5e4m(q)
    checks = {"emulator (numpy)": _compare(cfg, tx, emulated)}

    encoder = firmware_encoder(weights)
    log.info("econt firmware: hls4ml project and RTL of the CMS autoencoder (%s)", folder)
    build = build_firmware(encoder, x, emulated * LATENT_LSB, work, firmware=run_cfg.firmware, rtl=run_cfg.rtl,
                           products=("hls", "csim", "rtl") if rtl else ("hls", "csim"),
                           product_cuts=PRODUCT_CUTS)
    csim_latents = np.rint(build.csim.outputs / LATENT_LSB).astype(np.int64)
    checks["C simulation (hls4ml, g++)"] = _compare(cfg, tx, csim_latents)
    acc = build.csim.accuracy
    timings = {"emulator_and_convert_seconds": time.perf_counter() - t0,
               "csim_compile_seconds": acc.details["compile_seconds"], "csim_run_seconds": acc.details["run_seconds"]}
    log.info("econt firmware: C simulation on %d crossings: %.2f%% identical to the vector",
             len(tx), 100 * checks["C simulation (hls4ml, g++)"]["fraction_identical"])
    design = None
    if build.rtl is not None:
        r = build.rtl
        checks["RTL simulation (da4ml Verilog, Verilator)"] = _compare(cfg, tx, r.outputs)
        design = {**r.design, "latency_cycles": r.simulation.latency_cycles,
                  "build_seconds": r.simulation.details["build_seconds"],
                  "simulation_seconds": r.simulation.details["simulation_seconds"],
                  "trace_seconds": r.details["trace_seconds"]}
        log.info("econt firmware: RTL simulation: %.2f%% identical to the vector, latency %s cycles",
                 100 * checks["RTL simulation (da4ml Verilog, Verilator)"]["fraction_identical"],
                 r.simulation.latency_cycles)
    summary = {"vector": str(folder), "links": cfg.n_etx, "ae_mask": f"{cfg.ae_mask:036x}",
               "encoder_hdf5": _h5_agreement(folder, ae_register_values(cfg.ae_weight_words)),
               "module_sum": {"fraction_identical": float((sum_code == sums).mean())},
               "checks": checks, "rtl": design, "timings": timings}
    atomic_write_json(work / "summary.json", summary)
    atomic_write_text(work / "report.md", report_markdown(summary))
    return summary


def report_markdown(s: dict) -> str:
    lines = [f"# The CMS autoencoder of `{s['vector']}` through the firmware", "",
             f"{next(iter(s['checks'].values()))['crossings']:,} crossings, {s['links']} output links, "
             f"{next(iter(s['checks'].values()))['bits_compared']} latent bits a crossing compared; "
             f"module sum identical in {100 * s['module_sum']['fraction_identical']:.2f}% of crossings.", ""]
    h5 = s["encoder_hdf5"]
    if h5:
        lines += [f"`{h5['file']}` floored to 1/32 in Keras order "
                  f"{'gives' if h5['agrees'] else 'does not give'} the register image"
                  + (f" ({h5['weights_equal']} of {h5['weights']} weights equal)." if "weights" in h5 else "."), ""]
    head = ["check", "crossings identical", *[f"z{i}" for i in range(16)]]
    rows = []
    for name, c in s["checks"].items():
        rows.append([name, f"{100 * c['fraction_identical']:.2f}%",
                     *["-" if p["agreement"] is None else f"{100 * p['agreement']:.1f}" for p in c["per_latent"]]])
    lines += ["Per-latent agreement with the vector's words (% of crossings; - = not sent):", "",
              *markdown_table(head, rows), ""]
    lines += ["LSB differences (produced - vector) of the latents sent whole:", ""]
    for name, c in s["checks"].items():
        hist = ", ".join(f"{k:+d}: {v:,}" for k, v in sorted(c["lsb_difference_histogram"].items())) or "none sent whole"
        lines.append(f"- {name}: {hist}")
    if s["rtl"]:
        lines += ["", f"RTL: {s['rtl']['pipeline_stages']} pipeline stages, measured latency "
                      f"{s['rtl']['latency_cycles']} cycles at II = 1."]
    return "\n".join(lines) + "\n"
