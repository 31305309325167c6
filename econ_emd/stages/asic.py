"""The stages of an encoder the ECON-T runs (encoder.kind asic): its configuration for the
ASIC, proven on the emulator's packets (export), and its decoder on the back-end FPGA
(decoder). Enabled only for that kind."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from econ_emd.base.artifacts import atomic_write_text
from econ_emd.base.tables import markdown_table
from econ_emd.firmware.results import BitAccuracy, RtlSimulation

from .result import CheckedResult, StageContext, StageResult

log = logging.getLogger("econ_emd")

#: the bunch-crossing rate every module's decoder must keep up with
BX_RATE_MHZ = 40.0
#: where the export stage writes the configurations, one init_<n>links.yaml per link count
CONFIG_DIR = "configurations"


def _test_modules(ctx: StageContext, n: int) -> np.ndarray:
    from econ_emd.data.dataset import load_dataset

    return load_dataset(ctx.folder("data"))["test"][:n]


def exported_encoders(ctx: StageContext) -> dict[int, str]:
    """link count -> the folder of the asic encoder trained for it: the encoder stage's, and
    the equal-bandwidth comparison's first seed at every other link count it trained."""
    folders = {ctx.cfg.encoder.links: str(ctx.folder("encoder"))}
    b = ctx.cfg.compare_econt
    if b.enabled and b.train_encoders:
        for n in b.link_counts:
            folders.setdefault(n, str(ctx.folder("compare_econt") / f"encoder_{n}links" / "seed_0"))
    return dict(sorted(folders.items()))


@dataclass(kw_only=True)
class ExportStageResult(CheckedResult):
    #: per link count: the configuration file, the crossings checked, the latent bits each
    configurations: dict[str, dict]

    def report_json(self, others) -> dict:
        return {"export": self.configurations}

    def report_markdown(self, others) -> list[str]:
        return []              # the chain table (decoder stage) shows it


def run_export(ctx: StageContext) -> ExportStageResult:
    """Every trained asic encoder's ECON-T configuration (`init_<n>links.yaml`), each
    written only after the emulator's packets on the run's test modules turned into input
    link words equal the Keras model's transmitted latents, every bit."""
    from econ_emd.econt_export import export_config
    from econ_emd.training.encoder_train import load_encoder
    from econ_emd.training.rebuild import integer_calq

    calq = integer_calq(_test_modules(ctx, ctx.cfg.firmware.n_check))
    (ctx.out / CONFIG_DIR).mkdir(exist_ok=True)
    out = {}
    for n, folder in exported_encoders(ctx).items():
        name = f"init_{n}links.yaml"
        result = export_config(load_encoder(folder), ctx.out / CONFIG_DIR / name, calq, links=n, source=folder,
                               final=ctx.folder("export") / CONFIG_DIR / name)
        out[str(n)] = {"file": f"{CONFIG_DIR}/{result.path.name}", "crossings": result.crossings_checked,
                       "identical": result.crossings_checked, "latent_bits": result.latent_bits,
                       "bits_per_crossing": result.bits_checked, "mask": result.mask}
    return ExportStageResult(configurations=out, passed=True)


@dataclass(kw_only=True)
class DecoderResult(CheckedResult):
    csim: BitAccuracy
    rtl: RtlSimulation
    synthesis: dict | None
    figures: dict
    capacity: dict                 # instances and modules one FPGA of the part decodes
    emd: dict                      # exact EMD with the quantized and the float decoder
    DECODE = {"csim": BitAccuracy.from_json, "rtl": RtlSimulation.from_json}

    def report_json(self, others) -> dict:
        return {"decoder": {"csim_bit_exact": self.csim.bit_exact_fraction, "rtl_bit_exact": self.rtl.bit_exact_fraction,
                            "latency_cycles": self.rtl.latency_cycles, "ii": self.rtl.initiation_interval,
                            "capacity": self.capacity, "emd": self.emd}}

    def report_markdown(self, others) -> list[str]:
        return chain_markdown(others, self)


def chain_markdown(results: dict[str, StageResult], decoder: "DecoderResult") -> list[str]:
    """The chain in one table: train, export, emulate, C simulation, RTL, decoder (the other
    stages' results read by what they hold: a stage body imports no other body)."""
    rows = []
    enc = results.get("encoder")
    if hasattr(enc, "run"):
        ev = enc.run.evaluation.overall
        rows.append(["train (asic arithmetic)", f"{enc.run.n_links} links, {enc.run.latent_bits}-bit latents: median "
                     f"exact EMD {ev.median:.3f} on {ev.n:,} test modules", "run.json"])
    exp = results.get("export")
    if isinstance(exp, ExportStageResult):
        for n, c in exp.configurations.items():
            rows.append([f"export + emulate, {n} links", f"{c['identical']:,} of {c['crossings']:,} crossings: every "
                         f"latent bit ({c['bits_per_crossing']} a crossing) of the emulator's packets = Keras",
                         f"export/{c['file']}"])
    cs = results.get("csim")
    if hasattr(cs, "testbench"):
        rows.append(["C simulation (hls4ml, g++)", f"{100 * cs.testbench.bit_exact_fraction:.4f}% of "
                     f"{cs.testbench.n_modules:,} modules bit-exact (the block's 9-bit latents)", "csim/csim.md"])
    rt = results.get("rtl")
    if hasattr(rt, "simulation"):
        rows.append(["RTL (da4ml Verilog, Verilator)", f"{100 * rt.simulation.bit_exact_fraction:.4f}% bit-exact, "
                     f"latency {rt.simulation.latency_cycles} cycles, II {rt.simulation.initiation_interval}",
                     "rtl/rtl.md"])
    d = decoder
    c = d.capacity
    rows.append(["decoder (back-end FPGA)", f"C simulation {100 * d.csim.bit_exact_fraction:.4f}%, RTL "
                 f"{100 * d.rtl.bit_exact_fraction:.4f}% bit-exact on {d.csim.n_modules:,} modules; latency "
                 f"{d.rtl.latency_cycles} cycles, II {d.rtl.initiation_interval}; "
                 + (f"{c['lut']:,} LUT, {c['ff']:,} FF ({c['counts_from']}); {c['modules']:,} modules per {c['part']}"
                    if c.get("modules") else "no resource figure")
                 + f"; mean exact EMD {d.emd['quantized_mean']:.3f} against {d.emd['float_mean']:.3f} with the float "
                 f"decoder ({100 * (d.emd['ratio_mean'] - 1):+.1f}%)", "decoder/decoder.md"])
    return ["## The encoder the ECON-T runs, from training to the back end", "",
            *markdown_table(["step", "result", "details"], rows), ""]


def decoder_inputs(ctx: StageContext):
    """The decoder's inputs on the run's test modules (the transmitted latents and the
    module-sum code, exactly as the back end receives them) and its outputs."""
    from econ_emd.training.encoder_train import DECODER_FILE, decoder_inputs_of, encoder_inputs, load_decoder, load_encoder

    encoder = load_encoder(ctx.folder("encoder"))
    decoder = load_decoder(ctx.folder("encoder") / DECODER_FILE)
    modules = _test_modules(ctx, ctx.cfg.firmware.n_check)
    z = encoder.predict(encoder_inputs(modules, encoder), batch_size=4096, verbose=0)
    x = decoder_inputs_of(z, modules).astype(np.float32)
    return decoder, x, decoder.predict(x, batch_size=4096, verbose=0)


def decoder_resources(r) -> tuple[dict, str]:
    """The decoder's resource counts and where they come from: Yosys' when it synthesized
    the Verilog, else da4ml's (its LUT cost estimate and the pipeline's register bits)."""
    if r.synthesis is not None:
        return r.synthesis.counts, f"Yosys {r.synthesis.version}".strip()
    return {"lut": int(round(r.design["estimated_luts"])), "ff": int(r.design["register_bits"])}, "da4ml estimate"


def fpga_capacity(counts: dict, counts_from: str, part: str, clock_period_ns: float,
                  initiation_interval: int = 1) -> dict:
    """How many decoders fit the part (the scarcest resource the decoder uses) and how many
    modules they decode at 40 MHz each: one decoder takes a new module every
    `initiation_interval` clocks, so it serves floor(clock / (40 MHz x II)) modules."""
    from econ_emd.firmware import parts

    cap = parts.capacity(part) or {}
    used = {k: counts.get(k, 0) for k in ("lut", "ff", "dsp", "bram_18k") if counts.get(k) and cap.get(k)}
    instances = int(min(cap[k] // used[k] for k in used)) if used else None
    per_instance = int(1000.0 / clock_period_ns // (BX_RATE_MHZ * max(1, initiation_interval)))
    limit = min(used, key=lambda k: cap[k] // used[k]) if used else None
    return {"part": part, "instances": instances, "modules_per_instance": per_instance,
            "modules": None if instances is None else instances * per_instance, "limited_by": limit,
            "clock_mhz": 1000.0 / clock_period_ns, "lut": counts.get("lut"), "ff": counts.get("ff"),
            "counts_from": counts_from}


def run_decoder(ctx: StageContext) -> DecoderResult:
    from econ_emd.base.artifacts import read_json
    from econ_emd.firmware.flow import PRODUCTS, build_firmware
    from econ_emd.training.encoder_run import RUN_FILE, EncoderRun

    cfg = ctx.cfg
    decoder, x, y = decoder_inputs(ctx)
    products = tuple(p for p in PRODUCTS if p != "synthesis" or cfg.rtl.synthesize_decoder)
    build = build_firmware(decoder, x, y, ctx.out, firmware=cfg.firmware, rtl=cfg.rtl, products=products,
                           tolerance_lsb=cfg.firmware.tolerance_lsb)
    r = build.rtl
    synthesis = r.synthesis.to_json() if r.synthesis else None
    capacity = fpga_capacity(*decoder_resources(r), cfg.firmware.part, cfg.firmware.clock_period_ns,
                             r.simulation.initiation_interval or 1)
    run = EncoderRun.from_json(read_json(ctx.folder("encoder") / RUN_FILE))
    if run.float_decoder_evaluation is None:
        from econ_emd.base.errors import StageOrderError

        raise StageOrderError("decoder: the encoder stage's run has no evaluation with the float decoder (made by an "
                              "earlier version): run `econ-emd pipeline --force` or delete its encoder/ folder")
    q, f = run.evaluation.overall, run.float_decoder_evaluation.overall
    emd = {"quantized_mean": q.mean, "quantized_median": q.median, "float_mean": f.mean, "float_median": f.median,
           "ratio_mean": q.mean / f.mean, "n_modules": q.n}
    passed = (build.csim.accuracy.max_abs_diff_lsb <= cfg.firmware.tolerance_lsb and r.check_passed)
    lines = ["# The back-end decoder (the asic encoder's quantized dense decoder)", "",
             *markdown_table(["check", "modules", "bit-exact", "max diff (LSB)"],
                             [build.csim.accuracy.row("C simulation (hls4ml, g++)"),
                              r.simulation.row("RTL simulation (Verilator, da4ml Verilog)")]), "",
             f"Latency {r.simulation.latency_cycles} cycles at II {r.simulation.initiation_interval} "
             f"({cfg.firmware.clock_period_ns} ns clock).", ""]
    if synthesis:
        c = synthesis["counts"]
        lines += [f"Yosys ({synthesis.get('version')}, {synthesis.get('script')}): {c['lut']:,} LUT, {c['ff']:,} FF, "
                  f"{c['dsp']} DSP, {c['bram_18k']} BRAM18."]
    else:
        why = r.synthesis_skipped if cfg.rtl.synthesize_decoder else "rtl.synthesize_decoder: false"
        lines += [f"Not synthesized ({why}): da4ml's estimate {capacity['lut']:,} LUT, its pipeline "
                  f"{capacity['ff']:,} register bits (Yosys within 3% of both on the default's decoder, "
                  "docs/measured.md)."]
    if capacity["modules"] is not None:
        lines += [f"One {capacity['part']} holds {capacity['instances']:,} decoders ({capacity['limited_by']} the "
                  f"limit, {capacity['counts_from']}), each serving {capacity['modules_per_instance']} modules at "
                  f"40 MHz: {capacity['modules']:,} modules.", ""]
    else:
        lines += [f"No capacity table for {capacity['part']} (firmware.parts): no FPGA capacity.", ""]
    lines += [f"Exact EMD of the {emd['n_modules']:,} test modules: mean {emd['quantized_mean']:.4f} (median "
              f"{emd['quantized_median']:.4f}) with the quantized decoder, {emd['float_mean']:.4f} "
              f"({emd['float_median']:.4f}) with the float decoder it started from: ratio {emd['ratio_mean']:.4f}.", ""]
    atomic_write_text(ctx.out / "decoder.md", "\n".join(lines))
    log.info("decoder: C simulation %.4f%%, RTL %.4f%% bit-exact, latency %s cycles; mean exact EMD %.4f (float "
             "decoder %.4f)", 100 * build.csim.accuracy.bit_exact_fraction, 100 * r.simulation.bit_exact_fraction,
             r.simulation.latency_cycles, emd["quantized_mean"], emd["float_mean"])
    return DecoderResult(csim=build.csim.accuracy, rtl=r.simulation, synthesis=synthesis, figures=r.figures,
                         capacity=capacity, emd=emd, passed=passed)

