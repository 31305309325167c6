"""Typed, validated parameters of the firmware stages (composed into the run config)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from econ_emd.base.schema import PathName, Strict

from .parts import PART_NAME, YOSYS_FAMILIES


class BudgetParams(Strict):
    """Limits checked against the report; a missing figure is 'n/a', never a pass."""

    max_ii: Optional[float] = Field(1, ge=1, description="initiation interval, cycles")
    max_latency_ns: Optional[float] = Field(25.0, gt=0, description="one bunch crossing")
    max_lut_percent: Optional[float] = Field(None, gt=0, le=100)
    max_ff_percent: Optional[float] = Field(None, gt=0, le=100)
    max_dsp_percent: Optional[float] = Field(None, gt=0, le=100)
    max_bram_percent: Optional[float] = Field(None, gt=0, le=100)


class FirmwareParams(Strict):
    encoder_path: Optional[PathName] = Field(None, description="a QKeras encoder .h5 to convert instead of the run's")
    backend: Literal["Vitis", "Vivado"] = "Vitis"
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    strategy: Literal["Latency", "Resource", "distributed_arithmetic"] = "Latency"
    reuse_factor: int = Field(1, ge=1, le=4096)
    part: str = Field("xcvu13p-flga2577-2-e", min_length=3, max_length=64,
                      description="a Xilinx part name (xc<device>-<package>-<speed>[-<grade>])")
    clock_period_ns: float = Field(4.167, gt=0, le=100, description="4.167 ns = 240 MHz")
    n_check: int = Field(10_000, ge=1, le=10_000_000, description="held-out modules in the bit-accuracy check")
    tolerance_lsb: int = Field(0, ge=0, le=2**16, description="largest mismatch (in output LSB) still accepted")
    cosim: bool = Field(False, description="vendor co-simulation when the vendor tool is present")
    budget: BudgetParams = BudgetParams()

    @field_validator("part")
    @classmethod
    def _part_name(cls, v: str) -> str:
        if not PART_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a Xilinx part name (xc<device>-<package>-<speed>[-<grade>], "
                             "e.g. xcvu13p-flga2577-2-e or xc7z020clg400-1)")
        return v


class RtlParams(Strict):
    """The vendor-free RTL path (da4ml Verilog, Verilator simulation, Yosys synthesis).

    It reuses the firmware stage's held-out modules and the firmware part and clock."""

    enabled: bool = Field(True, description="run the rtl stage in `econ-emd pipeline`")
    latency_cutoff: float = Field(5.0, gt=0, le=1000,
                                  description="adder levels per pipeline stage (da4ml); fewer = more stages")
    synthesize: Literal["auto", "always", "never"] = Field(
        "auto", description="Yosys synthesis: auto = when Yosys is installed")
    synthesize_decoder: bool = Field(
        False, description="also Yosys on the asic encoder's back-end decoder (the decoder stage; ~100 s on 2 "
        "cores); false: its LUT and FF are da4ml's estimate (LUT cost, register bits)")
    yosys_family: Literal[("auto", *YOSYS_FAMILIES)] = Field("auto", description="auto = from firmware.part")
    yosys_timeout_s: float = Field(1800.0, gt=0, le=7 * 86400)
