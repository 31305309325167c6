"""The simulated module crossings shipped with the package (see README.md here)."""
from __future__ import annotations

from importlib import resources

import numpy as np

INPUT = "mc_ttbar_input.csv.gz"
CONFIG = "mc_ttbar_AE_init.yaml"
CMS_AUTOENCODER = "AE_8x8_c8_S2_ele"     # <name>_encoder.hdf5, <name>_decoder.hdf5


def simulated_calq() -> np.ndarray:
    """(3564, 48) CALQ of the simulated crossings, in CALQ order.

    Each cell is read from the input TC the CMS tool that made these words put it on
    (`econt.emulator.cells_in_calq_order`, `geometry.econt_input_table`), through the
    float-to-fix and calibration of the vectors' configuration (high density; every CAL
    register 2048). Not through the autoencoder configuration's MUX as AE slots: for these
    words that would put 37 of the 48 cells elsewhere (README.md)."""
    from econ_emd.econt.emulator import cells_in_calq_order
    from econ_emd.econt.links import read_rx
    from econ_emd.econt.registers import load_config

    root = resources.files(__name__)
    with resources.as_file(root / INPUT) as words, resources.as_file(root / CONFIG) as cfg:
        return cells_in_calq_order(load_config(cfg), read_rx(words))


def cms_autoencoder_weights() -> tuple[str, str]:
    """Paths of the CMS autoencoder's encoder and decoder weight files (package data)."""
    root = resources.files(__name__)
    return (str(root / f"{CMS_AUTOENCODER}_encoder.hdf5"), str(root / f"{CMS_AUTOENCODER}_decoder.hdf5"))
