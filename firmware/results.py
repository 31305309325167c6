"""What the firmware flow measures, as typed values (`firmware.flow` returns them).

Each result turns into the JSON a summary holds (`to_json`) and back (`from_json`): the
fields other code reads are typed; what is only for people (timings, paths) travels in
`details` and is written beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass(kw_only=True)
class BitAccuracy:
    """One bit-accuracy check of firmware outputs against the Keras model's, in units of
    the output LSB (values rounded to the LSB grid first)."""

    n_modules: int
    bit_exact_fraction: float
    mismatching_modules: int
    mismatching_latents: int
    max_abs_diff_lsb: int
    first_mismatches: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    KEYS = ("n_modules", "bit_exact_fraction", "mismatching_modules", "mismatching_latents", "max_abs_diff_lsb",
            "first_mismatches")

    @classmethod
    def compare(cls, expected: np.ndarray, got: np.ndarray, lsb: float, inputs: np.ndarray | None = None,
                n_examples: int = 5, **details) -> "BitAccuracy":
        """Compare `got` with `expected` (real values, one module per row) in output LSBs."""
        e = np.rint(np.asarray(expected, dtype=np.float64).reshape(len(expected), -1) / lsb).astype(np.int64)
        g = np.rint(np.asarray(got, dtype=np.float64).reshape(len(got), -1) / lsb).astype(np.int64)
        if e.shape != g.shape:
            raise ValueError(f"firmware returned shape {g.shape}, expected {e.shape}")
        diff = g - e
        bad_rows = np.flatnonzero((diff != 0).any(1))
        examples = []
        for r in bad_rows[:n_examples]:
            ex = {"module": int(r), "expected_lsb": e[r].tolist(), "got_lsb": g[r].tolist()}
            if inputs is not None:
                ex["input"] = np.asarray(inputs[r]).reshape(-1).tolist()
            examples.append(ex)
        return cls(n_modules=int(len(e)), bit_exact_fraction=float(1.0 - len(bad_rows) / max(len(e), 1)),
                   mismatching_modules=int(len(bad_rows)), mismatching_latents=int((diff != 0).sum()),
                   max_abs_diff_lsb=int(np.abs(diff).max()) if diff.size else 0, first_mismatches=examples,
                   details={"n_latents": int(e.size), **details})

    @classmethod
    def from_json(cls, d: dict) -> "BitAccuracy":
        return cls(**{k: d[k] for k in cls.KEYS if k in d}, details={k: v for k, v in d.items() if k not in cls.KEYS})

    def to_json(self) -> dict:
        return {**self.details, **{k: getattr(self, k) for k in self.KEYS}}

    def row(self, name: str) -> list[str]:
        return [name, f"{self.n_modules:,}", f"{100 * self.bit_exact_fraction:.4f}%", str(self.max_abs_diff_lsb)]


@dataclass(kw_only=True)
class RtlSimulation(BitAccuracy):
    """The Verilator simulation: bit-accuracy, and the latency measured by streaming one
    module per clock cycle (found: II = 1; None: no shift reproduces the model)."""

    latency_cycles: int | None = None
    latency_ns: float | None = None
    initiation_interval: int | None = None
    simulator: str = ""

    KEYS = BitAccuracy.KEYS + ("latency_cycles", "latency_ns", "initiation_interval", "simulator")


@dataclass(kw_only=True)
class Synthesis:
    """Yosys' resource counts of the Verilog (`firmware.rtl_synth`), with the tool's version."""

    counts: dict
    family: str
    seconds: float
    version: str = ""
    script: str = ""
    details: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "Synthesis":
        names = {f.name for f in fields(cls)} - {"details"}
        return cls(**{k: d[k] for k in names if k in d}, details={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> dict:
        return {**self.details, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}}


@dataclass(kw_only=True)
class RtlBuild:
    """The vendor-free RTL path of one model: da4ml Verilog, its Verilator simulation and
    (when Yosys ran) its synthesis, with the figures the report shows."""

    part: str
    clock_period_ns: float
    design: dict
    simulation: RtlSimulation
    synthesis: Synthesis | None
    synthesis_skipped: str | None
    figures: dict
    check_passed: bool
    details: dict = field(default_factory=dict)
    #: the simulated outputs in output LSBs, aligned with the inputs (not stored)
    outputs: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {**self.details, "part": self.part, "clock_period_ns": self.clock_period_ns, "design": self.design,
                "simulation": self.simulation.to_json(),
                "synthesis": None if self.synthesis is None else self.synthesis.to_json(),
                "synthesis_skipped": self.synthesis_skipped, "figures": self.figures,
                "check_passed": self.check_passed}

    @classmethod
    def from_json(cls, d: dict) -> "RtlBuild":
        known = ("part", "clock_period_ns", "design", "simulation", "synthesis", "synthesis_skipped", "figures",
                 "check_passed")
        return cls(part=d["part"], clock_period_ns=d["clock_period_ns"], design=d["design"],
                   simulation=RtlSimulation.from_json(d["simulation"]),
                   synthesis=Synthesis.from_json(d["synthesis"]) if d.get("synthesis") else None,
                   synthesis_skipped=d.get("synthesis_skipped"), figures=d.get("figures", {}),
                   check_passed=d["check_passed"], details={k: v for k, v in d.items() if k not in known})


@dataclass(kw_only=True)
class CSimulation:
    """The g++ C simulation of an hls4ml project against the model's outputs."""

    accuracy: BitAccuracy
    #: the testbench's outputs (real values, one module per row; not stored)
    outputs: np.ndarray = field(repr=False)


@dataclass(kw_only=True)
class HlsBuild:
    """An hls4ml project of one model: where it is, the fixed-point formats it was given
    (`firmware.convert.model_formats`), the LSB of its outputs, and the check of hls4ml's
    own compiled `predict` against the model when it was run."""

    project: str
    formats: dict
    output_lsb: float
    predict: BitAccuracy | None
    convert_seconds: float
    vendor: dict
    #: the hls4ml model object, for a later compile or vendor build (not stored)
    hls_model: object = field(default=None, repr=False)


@dataclass(kw_only=True)
class FirmwareBuild:
    """What `firmware.flow.build_firmware` made of one model: whichever of the HLS project,
    its C simulation and the RTL path (simulation, synthesis) were asked for."""

    hls: HlsBuild | None = None
    csim: CSimulation | None = None
    rtl: RtlBuild | None = None
