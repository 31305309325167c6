"""C simulation of the HLS project without vendor tools, and the bit-accuracy check.

hls4ml writes a plain C++ testbench (`myproject_test.cpp`) that reads
tb_data/tb_input_features.dat, runs the firmware's top function on each line and writes
tb_data/csim_results.log: the same C simulation the vendor tool's csim runs. It is compiled
here with g++ against the bundled ap_types headers and the weights directory. Its printed
values have ~6 significant digits, so results are compared in units of the output LSB.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from .results import BitAccuracy, CSimulation
from .tools import raise_if_refused_write

TB_BINARY = "csim_tb"


class CsimError(RuntimeError):
    """The testbench could not be built or run."""


def write_tb_data(project_dir: str | Path, inputs: np.ndarray, expected: np.ndarray) -> None:
    """One module per line; values written exactly (17 significant digits)."""
    tb = Path(project_dir) / "tb_data"
    tb.mkdir(parents=True, exist_ok=True)
    np.savetxt(tb / "tb_input_features.dat", inputs.reshape(len(inputs), -1), fmt="%.17g")
    np.savetxt(tb / "tb_output_predictions.dat", expected.reshape(len(expected), -1), fmt="%.17g")


def build_testbench(project_dir: str | Path, compiler: str = "g++") -> Path:
    """Compile myproject_test.cpp + firmware/myproject.cpp; return the binary's path."""
    project_dir = Path(project_dir).resolve()
    cxx = shutil.which(compiler)
    if cxx is None:
        raise CsimError(f"no C++ compiler '{compiler}' on PATH: install g++ to run the C simulation")
    test = project_dir / "myproject_test.cpp"
    if not test.exists():
        raise CsimError(f"{project_dir}: no myproject_test.cpp (not an hls4ml project? run `econ-emd firmware`)")
    out = project_dir / TB_BINARY
    weights = project_dir / "firmware" / "weights"
    cmd = [cxx, "-O2", "-std=c++14", "-w", f"-I{project_dir / 'firmware' / 'ap_types'}",
           f"-I{project_dir / 'firmware'}", f"-I{project_dir}", f'-DWEIGHTS_DIR="{weights}"',
           str(test), str(project_dir / "firmware" / "myproject.cpp"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise_if_refused_write(proc.stderr + proc.stdout, out)
        raise CsimError(f"testbench compilation failed:\n{proc.stderr[-3000:]}")
    return out


def run_testbench(project_dir: str | Path, binary: Path) -> np.ndarray:
    """Run the compiled testbench in the project directory; parse csim_results.log."""
    project_dir = Path(project_dir)
    log = project_dir / "tb_data" / "csim_results.log"
    if log.exists():
        log.unlink()
    proc = subprocess.run([str(binary)], cwd=project_dir, capture_output=True, text=True, encoding="utf-8",
                          errors="replace")
    if proc.returncode != 0 or not log.exists():
        raise_if_refused_write(proc.stderr + proc.stdout, log)
        raise CsimError(f"testbench run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return np.loadtxt(log, ndmin=2)


def c_simulation(project_dir: str | Path, inputs: np.ndarray, expected: np.ndarray, lsb: float) -> CSimulation:
    """Write tb_data, build and run the testbench, compare with the model's outputs."""
    write_tb_data(project_dir, inputs, expected)
    t0 = time.perf_counter()
    binary = build_testbench(project_dir)
    t1 = time.perf_counter()
    got = run_testbench(project_dir, binary)
    t2 = time.perf_counter()
    if got.shape[0] != len(expected):
        raise CsimError(f"the C simulation returned {got.shape[0]} rows for {len(expected)} inputs")
    accuracy = BitAccuracy.compare(expected, got, lsb, inputs, compile_seconds=t1 - t0, run_seconds=t2 - t1)
    return CSimulation(accuracy=accuracy, outputs=got)


def predict_check(hls_model, inputs: np.ndarray, expected: np.ndarray, lsb: float) -> BitAccuracy:
    """hls4ml's own compiled model (`compile` + `predict`) compared the same way."""
    import contextlib
    import io

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model.compile()
    t1 = time.perf_counter()
    got = np.asarray(hls_model.predict(np.ascontiguousarray(inputs.reshape(len(inputs), -1))))
    return BitAccuracy.compare(expected, got, lsb, inputs, compile_seconds=t1 - t0,
                               run_seconds=time.perf_counter() - t1)


def vendor_tool() -> str | None:
    """The vendor HLS tool on PATH, if any."""
    for tool in ("vitis_hls", "vivado_hls"):
        if shutil.which(tool):
            return tool
    return None


def vendor_build(hls_model, cosim: bool = False) -> dict:
    """csim + synthesis (+ cosim) with the vendor tool when present; a note otherwise."""
    tool = vendor_tool()
    if tool is None:
        return {"ran": False, "message": "no vitis_hls/vivado_hls on PATH: vendor C synthesis skipped "
                                         "(C simulation ran with g++; see the Yosys path for resources)"}
    t0 = time.perf_counter()
    result = hls_model.build(csim=True, synth=True, cosim=cosim, vsynth=False)
    return {"ran": True, "tool": tool, "seconds": time.perf_counter() - t0, "result": result,
            "env": os.environ.get("XILINX_VIVADO") or os.environ.get("XILINX_HLS")}
