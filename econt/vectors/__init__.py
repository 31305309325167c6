"""The simulated module crossings shipped with the package (see README.md here)."""
from __future__ import annotations

from dataclasses import replace
from importlib import resources

import numpy as np

INPUT = "mc_ttbar_input.csv.gz"
CONFIG = "mc_ttbar_AE_init.yaml"
CMS_AUTOENCODER = "AE_8x8_c8_S2_ele"     # <name>_encoder.hdf5, <name>_decoder.hdf5


def simulated_calq() -> np.ndarray:
    """(3564, 48) CALQ of the simulated crossings, in CALQ order.

    Each cell is read from the input TC the CMS tool that made these words put it on
    (`base.geometry.econt_input_table`: input TC 4l+k of link l from the bits next to the
    header down), through the float-to-fix of the vectors' configuration (high density)
    and a calibration of 1.0 (every CAL register of the vectors is 2048). Not through the
    autoencoder configuration's MUX: its output is not the autoencoder's slot layout for
    these words (37 of the 48 slots would hold another cell; README.md)."""
    from econ_emd.base.geometry import econt_input_of_calq
    from econ_emd.econt.emulator import front_end
    from econ_emd.econt.links import read_rx
    from econ_emd.econt.registers import load_config

    root = resources.files(__name__)
    with resources.as_file(root / INPUT) as words, resources.as_file(root / CONFIG) as cfg:
        config, rx = load_config(cfg), read_rx(words)
    in_calq_order = replace(config, mux=tuple(int(i) for i in econt_input_of_calq()),
                            cal=(2048,) * 48, erx_msb_first=True)
    return front_end(in_calq_order, rx)


def cms_autoencoder_weights() -> tuple[str, str]:
    """Paths of the CMS autoencoder's encoder and decoder weight files (package data)."""
    root = resources.files(__name__)
    return (str(root / f"{CMS_AUTOENCODER}_encoder.hdf5"), str(root / f"{CMS_AUTOENCODER}_decoder.hdf5"))
