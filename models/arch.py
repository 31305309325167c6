"""Architecture records of the networks and their choice lists, without TensorFlow: the
config schema reads them (defaults, allowed values) and the builders take them."""
from __future__ import annotations

from dataclasses import dataclass

from econ_emd.econt.autoencoder import N_LATENT

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
    #: weights and biases on a grid symmetric about 0 (QKeras quantized_bits symmetric=1,
    #: as the published encoder: [-(1 - lsb), 1 - lsb] for 6 bits) or two's complement
    #: (symmetric=0: [-1, 1 - lsb], what the ASIC's registers hold)
    symmetric_weights: bool = True


#: The ECON-T ASIC's autoencoder block (econ_emd.econt.autoencoder) as a QKeras encoder of
#: this product: the converter's 8-bit inputs with 7 fractional bits (quantized_bits(9, 1):
#: hls4ml gives any quantized_bits a signed type, so one more bit for the sign), 6-bit
#: weights and biases with 5 fractional bits, convolution activations with the 7
#: fractional bits the block keeps and 5 integer bits (9 taps of |x| < 2 times |w| <= 1,
#: plus a bias, stay below 32), 9-bit latents with 8 fractional bits, two's-complement
#: weights (a register may hold -1). The block also cuts
#: every product before the sum, which QKeras cannot express: the firmware path does it
#: (firmware.convert.ProductFractions).
ECONT_ASIC_ENCODER = EncoderArch(input_bits=9, input_integer=1, weight_bits=6, weight_integer=0,
                                 conv_act_bits=12, conv_act_integer=5, latent_bits=9, latent_integer=1,
                                 symmetric_weights=False)


#: encoder kinds: the QKeras encoder with uniform bit widths (the published one), the
#: resource-aware HGQ encoder whose per-weight and per-activation widths are learned, or the
#: encoder trained in the ECON-T ASIC's own arithmetic (models.asic_encoder), which the
#: ASIC's registers can hold (`econ-emd econt export`)
ENCODER_KINDS = ("qkeras", "hgq", "asic")


@dataclass(frozen=True)
class HgqArch:
    """The resource-aware encoder (HGQ): the same network, every weight's and activation's
    fractional bits trained under an EBOPs penalty of strength `beta` (a width can reach
    zero: the weight is pruned); the latents keep the ECON-T format of the link count."""

    beta: float
    init_bits: int            # starting fractional bits of weights and activations
    input_bits: int           # starting fractional bits of the input (the converter gives 7)
    latent_bits: int
    latent_integer: int = 1
    filters: int = 8
    n_latent: int = N_LATENT


@dataclass(frozen=True)
class DenseDecoderArch:
    """The back-end decoder of the asic encoder (models.asic_encoder.build_dense_decoder):
    dense layers only (an hls4ml io_parallel conversion and a da4ml trace need nothing
    else), from the 16 transmitted latents and the module-sum code to the module's energy
    pattern over its 48 trigger cells. Quantized: QKeras weights and biases
    quantized_bits(weight_bits, weight_integer, alpha=1), hidden activations
    quantized_relu(act_bits, act_integer), the 48 outputs quantized_relu(output_bits, 0)
    (each in [0, 1))."""

    hidden: tuple[int, ...]
    weight_bits: int
    weight_integer: int
    act_bits: int
    act_integer: int
    output_bits: int
    quantized: bool = True


@dataclass(frozen=True)
class AsicArch:
    """The encoder in the ASIC's arithmetic (its widths are the block's, not choices: see
    econt.autoencoder) and what the link count keeps of its 9-bit latents: the top
    `latent_bits` bits of each."""

    latent_bits: int
    decoder: DenseDecoderArch


#: the asic encoder's default decoder (docs/reference.md: the widths measured against the
#: float decoder on the same latents)
ASIC_DECODER = DenseDecoderArch(hidden=(128,), weight_bits=8, weight_integer=0, act_bits=8, act_integer=1,
                                output_bits=8)
