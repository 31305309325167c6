"""FPGA parts the reports know: Yosys family and resource capacity (from the vendor's data sheets).

Yosys reports cell counts only; a percentage of the device needs the capacity. Parts not
listed here still synthesize (family from the part-name prefix); their percentages are
'n/a' in the report rather than guessed.
"""
from __future__ import annotations

import re

#: the shape of a Xilinx part name, as hls4ml and the reports take it: xc<device> and one
#: to three dash-separated fields (package, speed grade, temperature grade), or the device
#: and package run together (xc7z020clg400-1)
PART_NAME = re.compile(r"xc[a-z0-9]+(?:-[a-z0-9]+){1,3}", re.IGNORECASE)

#: part-name prefix -> (LUT, FF, DSP, BRAM_18K)
CAPACITY: dict[str, tuple[int, int, int, int]] = {
    "xcvu13p": (1_728_000, 3_456_000, 12_288, 5_376),
    "xcvu9p": (1_182_240, 2_364_480, 6_840, 4_320),
    "xc7z020": (53_200, 106_400, 220, 280),
}

#: the synth_xilinx families Yosys knows (-family)
YOSYS_FAMILIES = ("xc7", "xcu", "xcup")
#: Yosys synth_xilinx families by part-name prefix (first match wins)
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("xc7", "xc7"),
    ("xczu", "xcup"),
    ("xcau", "xcup"),
    ("xcvu", "xcu"),
    ("xcku", "xcu"),
)


def capacity(part: str) -> dict[str, int] | None:
    key = part.lower()
    for prefix, cap in CAPACITY.items():
        if key.startswith(prefix):
            return dict(zip(("lut", "ff", "dsp", "bram_18k"), cap))
    return None


def yosys_family(part: str) -> str:
    """synth_xilinx -family for a Xilinx part: UltraScale+ parts end their device name in 'p'."""
    key = part.lower()
    device = key.split("-")[0]
    for prefix, family in _FAMILIES:
        if key.startswith(prefix):
            if family == "xcu" and device.endswith("p"):
                return "xcup"
            return family
    raise ValueError(f"part '{part}': unknown Xilinx family; set rtl.yosys_family explicitly "
                     f"({', '.join(YOSYS_FAMILIES)})")
