"""Architecture records of the networks and their choice lists, without TensorFlow: the
config schema reads them (defaults, allowed values) and the builders take them."""
from __future__ import annotations

from dataclasses import dataclass

from .elinks import N_LATENT

ARRANGEMENTS = ("4x4x3", "8x8")
OUTPUTS = ("linear", "log", "mass")
INPUTS = ("pair", "difference")
SYMMETRIZE = ("mean", "canonical")


@dataclass(frozen=True)
class EmdCnnArch:
    """The architecture; no defaults here: the run's default is the config schema's
    (training.params.EmdCnnParams), the published one is `PUBLISHED_EMD_CNN`."""

    arrangement: str          # 4x4x3 (published) | 8x8
    filters: int
    kernel: int
    n_conv: int
    dense: int
    output: str               # linear (published) | log | mass
    difference_channel: bool
    inputs: str               # pair (published) | difference
    symmetrize: str           # mean (published) | canonical


#: the published EMD-CNN: 3 convolutions of 32 5x5 filters on the two 4x4x3 module images,
#: dense 256, linear output, symmetrized by the mean over both orders
PUBLISHED_EMD_CNN = EmdCnnArch("4x4x3", 32, 5, 3, 256, "linear", False, "pair", "mean")


@dataclass(frozen=True)
class EncoderArch:
    input_bits: int = 10
    input_integer: int = 3
    weight_bits: int = 5
    weight_integer: int = 1
    conv_act_bits: int = 11
    conv_act_integer: int = 3
    latent_bits: int = 9
    latent_integer: int = 1
    filters: int = 8
    n_latent: int = N_LATENT
    quantized: bool = True
