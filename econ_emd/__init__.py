"""econ-emd: HGCAL ECON-T compression trained with a differentiable Earth Mover's Distance.

The public API (`__all__`, documented in `econ_emd.api`): load a run configuration, run a
stage or the pipeline, exact EMD, the EMD-CNN, the encoder and decoder, and the ECON-T
emulator. Names are imported on first use, so ``import econ_emd`` stays light (no
TensorFlow until a network is loaded).
"""
from __future__ import annotations

from econ_emd.base.numerics import pin_numerics

pin_numerics()  # before anything imports TensorFlow (base/numerics.py says why)

__version__ = "0.1.0"

__all__ = ["RunConfig", "load_config", "run_stage", "run_pipeline", "exact_emd", "load_emd_cnn", "predict_emd",
           "load_encoder", "load_decoder", "encoder_inputs", "load_asic_config", "read_link_words", "emulate"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'econ_emd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
