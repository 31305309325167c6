"""The simulated module crossings shipped with the package (see README.md here)."""
from __future__ import annotations

from importlib import resources

import numpy as np

INPUT = "mc_ttbar_input.csv.gz"
CONFIG = "mc_ttbar_AE_init.yaml"
CMS_AUTOENCODER = "AE_8x8_c8_S2_ele"     # <name>_encoder.hdf5, <name>_decoder.hdf5


def simulated_calq() -> np.ndarray:
    """(3564, 48) CALQ of the simulated crossings, in CALQ order: the autoencoder
    configuration's MUX delivers them in AE-slot order (`geometry.calq_from_ae_slots`)."""
    from econ_emd.geometry import calq_from_ae_slots
    from econ_emd.econt.emulator import front_end
    from econ_emd.econt.links import read_rx
    from econ_emd.econt.registers import load_config

    root = resources.files(__name__)
    with resources.as_file(root / INPUT) as words, resources.as_file(root / CONFIG) as cfg:
        return calq_from_ae_slots(front_end(load_config(cfg), read_rx(words)))


def cms_autoencoder_weights() -> tuple[str, str]:
    """Paths of the CMS autoencoder's encoder and decoder weight files (package data)."""
    root = resources.files(__name__)
    return (str(root / f"{CMS_AUTOENCODER}_encoder.hdf5"), str(root / f"{CMS_AUTOENCODER}_decoder.hdf5"))
