"""Typed parameters of the training room: the EMD-CNN and the ECON-T encoder."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from econ_emd.base.schema import PathName, Strict

from econ_emd.models.arch import (ARRANGEMENTS, ASIC_DECODER, ENCODER_KINDS, INPUTS, OUTPUTS, SYMMETRIZE, AsicArch,
                                   DenseDecoderArch, EmdCnnArch, EncoderArch, HgqArch)
from econ_emd.econt.link_budget import AE_LINK_COUNTS, LinkBudgetError, check_link_budget, latent_bits_for_links

from .losses import LOSSES
from .signals import SIGNAL_ENERGIES_MIP

#: learning-rate schedules of the EMD-CNN training (training.emd_cnn_train)
LR_SCHEDULES = ("plateau", "cosine")
#: the encoder's bit widths default to the reference architecture's
_ENCODER = EncoderArch()
#: the width keys of the qkeras encoder; the asic encoder computes with the ASIC's own
_QKERAS_WIDTHS = ("input_bits", "input_integer", "weight_bits", "weight_integer", "conv_act_bits",
                  "conv_act_integer", "latent_integer")
#: quantization-aware epochs of the asic encoder's quantized decoder (training.encoder_train)
ASIC_DECODER_EPOCHS = 10
#: the encoder settings a float twin never reads (the link count and latent width, every
#: quantization width, the asic kind's start and quantized decoder): `float_twin` resets
#: them, so one float training stands for every request that differs only in them
#: (the asic kind's float start at each link count, the loss comparison's float row)
_QUANTIZATION_ONLY = ("links", "latent_bits", *_QKERAS_WIDTHS, "hgq_beta", "hgq_init_bits", "asic_start",
                      "asic_decoder_weight_bits", "asic_decoder_weight_integer", "asic_decoder_act_bits",
                      "asic_decoder_act_integer", "asic_decoder_output_bits", "asic_decoder_epochs")

LossName = Literal[tuple(LOSSES)]


class EmdCnnParams(Strict):
    """EMD-CNN architecture and training. Defaults: the product's default network (a lighter
    one than published; `configs/paper.yaml` sets the published one, models.emd_cnn.PUBLISHED_EMD_CNN)."""

    arrangement: Literal[ARRANGEMENTS] = "4x4x3"
    filters: int = Field(32, ge=1, le=512)
    kernel: int = Field(3, ge=1, le=9)
    n_conv: int = Field(3, ge=1, le=8)
    dense: int = Field(256, ge=1, le=4096)
    output: Literal[OUTPUTS] = Field(
        "mass", description="linear: published; log: predict log EMD; mass: moved mass x mean distance")
    difference_channel: bool = Field(True, description="feed a - b beside a and b (inputs: pair)")
    inputs: Literal[INPUTS] = Field(
        "difference", description="pair: images of a and b (published); difference: only (a - b) / moved mass")
    symmetrize: Literal[SYMMETRIZE] = Field(
        "canonical", description="mean: of the network on both orders (published, two passes); "
        "canonical: the pair in a canonical order, one pass")
    epochs: int = Field(16, ge=1, le=1000)
    batch_size: int = Field(512, ge=8, le=65536)
    learning_rate: float = Field(4e-3, gt=0, le=1, description="held-out sigma 0.034/0.030 on the default run "
                                 "(0.037/0.033 at 0.002; docs/measured.md)")
    lr_schedule: Literal[LR_SCHEDULES] = Field(
        "cosine", description="plateau: halve on a validation plateau; cosine: decay to 1% over the epochs")
    patience: int = Field(20, ge=1, le=1000, description="early stopping on validation loss (the best epoch is restored)")
    one_way_training: bool = Field(
        True, description="train f(a, b) on randomly swapped pairs (half the compute); the symmetrized model is saved")
    augment_rotations: bool = Field(True, description="also train on the pairs rotated by 120 and 240 degrees")

    @model_validator(mode="after")
    def _difference_needs_mass(self) -> "EmdCnnParams":
        if self.inputs == "difference" and self.output != "mass":
            raise ValueError("inputs 'difference' needs output 'mass'")
        return self

    def arch(self) -> EmdCnnArch:
        return EmdCnnArch(self.arrangement, self.filters, self.kernel, self.n_conv, self.dense,
                          self.output, self.difference_channel, self.inputs, self.symmetrize)


class EncoderParams(Strict):
    """The quantized ECON-T encoder, its training and the loss comparison."""

    links: int = Field(2, ge=min(AE_LINK_COUNTS), le=max(AE_LINK_COUNTS),
                       description="ECON-T output links (eTx); sets the latent width (econt.link_budget). 2: what "
                                   "76% of the detector's modules have (data/allocation.py)")
    latent_bits: Optional[int] = Field(None, ge=1, le=16, description="default: the link count's width")
    latent_integer: int = Field(_ENCODER.latent_integer, ge=0, le=8)
    input_bits: int = Field(_ENCODER.input_bits, ge=2, le=24)
    input_integer: int = Field(_ENCODER.input_integer, ge=1, le=8, description="must hold the sumlog2 range [0, 2)")
    weight_bits: int = Field(_ENCODER.weight_bits, ge=2, le=16)
    weight_integer: int = Field(_ENCODER.weight_integer, ge=0, le=8)
    conv_act_bits: int = Field(_ENCODER.conv_act_bits, ge=2, le=24)
    conv_act_integer: int = Field(_ENCODER.conv_act_integer, ge=0, le=12)
    quantized: bool = _ENCODER.quantized
    kind: Literal[ENCODER_KINDS] = Field(
        "asic", description="asic: the ECON-T ASIC's own arithmetic (its registers can hold it: `econ-emd econt "
        "export`), with a quantized dense decoder for the back end; at least as good as qkeras at 2-5 links "
        "(README, 'Which encoder'); qkeras: the published uniform bit widths (the paper comparison); hgq: "
        "resource-aware, per-weight and per-activation widths learned under an EBOPs penalty (HGQ)")
    hgq_beta: float = Field(1e-5, ge=0, le=1, description="hgq: strength of the EBOPs (resource) penalty")
    hgq_init_bits: int = Field(6, ge=0, le=16, description="hgq: starting fractional bits of weights and activations")
    asic_decoder_hidden: list[int] = Field(
        default_factory=lambda: list(ASIC_DECODER.hidden), min_length=1, max_length=4,
        description="asic: widths of the decoder's hidden dense layers")
    asic_decoder_weight_bits: int = Field(ASIC_DECODER.weight_bits, ge=2, le=16,
                                          description="asic: decoder weights and biases, bits")
    asic_decoder_weight_integer: int = Field(ASIC_DECODER.weight_integer, ge=0, le=8)
    asic_decoder_act_bits: int = Field(ASIC_DECODER.act_bits, ge=2, le=24,
                                       description="asic: decoder hidden activations, bits")
    asic_decoder_act_integer: int = Field(ASIC_DECODER.act_integer, ge=0, le=12)
    asic_decoder_output_bits: int = Field(ASIC_DECODER.output_bits, ge=2, le=24,
                                          description="asic: the decoder's 48 outputs (in [0, 1)), bits")
    asic_start: Literal["float", "scratch"] = Field(
        "float", description="asic: float: train the float twin first, fold its weights into the register ranges "
        "(models.asic_encoder.fold_into_registers), then train in the ASIC's arithmetic from there (both at "
        "learning_rate, up to epochs each); scratch: train in the ASIC's arithmetic from a random start")
    asic_decoder_epochs: int = Field(
        ASIC_DECODER_EPOCHS, ge=0, le=1000, description="asic: quantization-aware epochs of the quantized decoder "
        "on the trained encoder's latents, from the float decoder trained with it folded into the quantizers' ranges "
        "(0: that folded decoder as it is)")
    loss: LossName = "emd_cnn"
    emd_cnn_path: Optional[PathName] = Field(
        None, description="a frozen EMD-CNN file as the emd_cnn loss instead of the run's (ours, or the "
        "published two-input format)")
    epochs: int = Field(15, ge=1, le=1000)
    batch_size: int = Field(256, ge=8, le=65536)
    learning_rate: float = Field(5e-3, gt=0, le=1, description="the loss search's choice for emd_cnn")
    patience: int = Field(4, ge=1, le=1000)
    max_train_modules: Optional[int] = Field(15_000, ge=10, le=1_000_000_000, description="cap on training modules (null: all)")
    max_eval_modules: Optional[int] = Field(10_000, ge=10, le=1_000_000_000, description="cap on test modules evaluated (null: all)")
    sinkhorn_epsilon: float = Field(0.3, gt=0, le=100, description="entropic regularization (distance units)")
    sinkhorn_iter: int = Field(30, ge=1, le=1000)

    @model_validator(mode="after")
    def _budget(self) -> "EncoderParams":
        try:
            check_link_budget(self.links, self.bits())
        except LinkBudgetError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _asic_widths(self) -> "EncoderParams":
        """The asic encoder's widths are the ASIC's: a width key, or latent bits other than
        the link count's, would be silently ignored."""
        if self.kind != "asic":
            return self
        given = [k for k in _QKERAS_WIDTHS if k in self.model_fields_set
                 and getattr(self, k) != type(self).model_fields[k].default]
        if given:
            raise ValueError(f"{given[0]}: the asic encoder computes with the ASIC's widths (6-bit weights, "
                             "8-bit inputs, 9-bit latents); remove the key or choose kind qkeras")
        if self.latent_bits is not None and self.latent_bits != latent_bits_for_links(self.links):
            raise ValueError(f"latent_bits {self.latent_bits}: the asic encoder sends the "
                             f"{latent_bits_for_links(self.links)} bits the ASIC's packet holds at {self.links} links; "
                             "remove the key")
        if self.asic_decoder_weight_integer >= self.asic_decoder_weight_bits:
            raise ValueError("asic_decoder_weight_integer: fewer than asic_decoder_weight_bits (one bit is the sign)")
        if self.asic_decoder_act_integer > self.asic_decoder_act_bits:
            raise ValueError("asic_decoder_act_integer: at most asic_decoder_act_bits")
        if any(not 1 <= w <= 1024 for w in self.asic_decoder_hidden):
            raise ValueError("asic_decoder_hidden: each width in 1..1024")
        return self

    def bits(self) -> int:
        return self.latent_bits if self.latent_bits is not None else latent_bits_for_links(self.links)

    def float_twin(self) -> "EncoderParams":
        """The unquantized twin of these settings, with every setting it does not read at its
        default (the asic kind's twin keeps its dense decoder's hidden widths)."""
        unread = _QUANTIZATION_ONLY + (() if self.kind == "asic" else ("asic_decoder_hidden",))
        fields = type(self).model_fields
        return self.model_copy(update={"quantized": False,
                                       **{k: fields[k].get_default(call_default_factory=True) for k in unread}})

    def starts_from_float_twin(self) -> bool:
        """The asic encoder trained from its float twin folded into the registers."""
        return self.kind == "asic" and self.quantized and self.asic_start == "float"

    def asic_arch(self, quantized: Optional[bool] = None) -> AsicArch:
        """The asic encoder and its decoder (quantized: the decoder's quantizers on)."""
        return AsicArch(latent_bits=self.bits(), decoder=DenseDecoderArch(
            hidden=tuple(self.asic_decoder_hidden), weight_bits=self.asic_decoder_weight_bits,
            weight_integer=self.asic_decoder_weight_integer, act_bits=self.asic_decoder_act_bits,
            act_integer=self.asic_decoder_act_integer, output_bits=self.asic_decoder_output_bits,
            quantized=self.quantized if quantized is None else quantized))

    def hgq_arch(self) -> HgqArch:
        return HgqArch(beta=self.hgq_beta, init_bits=self.hgq_init_bits, input_bits=self.input_bits - self.input_integer,
                       latent_bits=self.bits(), latent_integer=self.latent_integer)

    def arch(self, quantized: Optional[bool] = None) -> EncoderArch:
        return EncoderArch(self.input_bits, self.input_integer, self.weight_bits, self.weight_integer,
                           self.conv_act_bits, self.conv_act_integer, self.bits(), self.latent_integer,
                           quantized=self.quantized if quantized is None else quantized)


class LossSettings(Strict):
    """One loss's training settings in the comparison (the search's choice, or given)."""

    learning_rate: float = Field(gt=0, le=1)
    epochs: int = Field(ge=1, le=1000, description="at most; early stopping on the validation loss")


#: the comparison's per-loss settings, chosen by `compare_losses.search` (search_epochs 15,
#: the rows' own cap) on the default run's validation split (the QKeras encoder at 2 links
#: on detector-like modules; sinkhorn from the earlier synthetic 5-link search;
#: docs/measured.md "The default since the detector-like data")
TUNED = {"emd_cnn": LossSettings(learning_rate=5e-3, epochs=15),
         "telescope": LossSettings(learning_rate=1e-2, epochs=15),
         "wmse": LossSettings(learning_rate=2e-2, epochs=15),
         "mse": LossSettings(learning_rate=1e-2, epochs=15),
         "sinkhorn": LossSettings(learning_rate=5e-3, epochs=15)}


class CompareLossesParams(Strict):
    """The loss comparison (compare-losses): the losses, the training seeds every loss gets
    (the same seeds and split for all), how each loss's learning rate and epoch cap are
    chosen, and the paired statistics."""

    losses: list[LossName] = Field(default_factory=lambda: ["emd_cnn", "telescope", "wmse", "mse"],
                                   description="+ sinkhorn: several minutes more")
    kind: Optional[Literal[ENCODER_KINDS]] = Field(
        "qkeras", description="the encoder kind the losses are compared on (null: encoder.kind). qkeras: the "
        "published encoder, whose conv decoder the baselines' learning rates were searched for; the asic kind's "
        "dense decoder ends in 8-bit outputs in [0, 1), which quantize the unit-sum cells MSE-type losses fit "
        "(docs/measured.md)")
    float_twin: bool = Field(True, description="also the unquantized twin of encoder.loss")
    seeds: int = Field(1, ge=1, le=20, description="training seeds per loss (seed 0 is the encoder stage's; "
                                                   "the README's figures: 5)")
    search: bool = Field(False, description="choose each loss's learning rate by the validation split's "
                                            "exact EMD (configs/paper.yaml); false: `tuned`")
    learning_rates: list[float] = Field(default_factory=lambda: [2e-3, 5e-3, 1e-2, 2e-2], max_length=20,
                                        description="the search's candidates")
    search_epochs: int = Field(15, ge=1, le=1000, description="the search's epoch cap (early stopping decides): the rows' own")
    tuned: dict[LossName, LossSettings] = Field(default_factory=lambda: dict(TUNED),
                                                description="per-loss settings used without the search")
    bootstrap: int = Field(2000, ge=100, le=1_000_000, description="resamples of the median-ratio intervals")
    emd_cnn_files: list[PathName] = Field(default_factory=list, max_length=20,
                                     description="more frozen EMD-CNNs, each trained against as its own row")

    @model_validator(mode="after")
    def _choices(self) -> "CompareLossesParams":
        if len(set(self.losses)) != len(self.losses):
            raise ValueError(f"losses: repeated ({self.losses})")
        if not self.losses:
            raise ValueError("losses: at least one")
        if self.search and not self.learning_rates:
            raise ValueError("learning_rates: the search needs at least one candidate")
        if any(not 0 < lr <= 1 for lr in self.learning_rates):
            raise ValueError("learning_rates: each in (0, 1]")
        if len(set(self.learning_rates)) != len(self.learning_rates):
            raise ValueError(f"learning_rates: repeated ({self.learning_rates})")
        if len(set(self.emd_cnn_files)) != len(self.emd_cnn_files):
            raise ValueError(f"emd_cnn_files: a file is named twice ({self.emd_cnn_files})")
        return self

    def settings(self, loss: str, encoder: "EncoderParams") -> LossSettings:
        """The settings a loss trains with when there is no search: `tuned`, else the encoder's."""
        return self.tuned.get(loss, LossSettings(learning_rate=encoder.learning_rate, epochs=encoder.epochs))


class ScanParams(Strict):
    """`econ-emd scan`: exact EMD against resources across link counts and quantization
    choices (the QKeras encoder, the encoder in the ASIC's arithmetic, the resource-aware
    HGQ encoder, QKeras weight widths)."""

    link_counts: list[int] = Field(default_factory=lambda: list(AE_LINK_COUNTS), max_length=len(AE_LINK_COUNTS))
    kinds: list[Literal[ENCODER_KINDS]] = Field(default_factory=lambda: ["qkeras", "asic", "hgq"])
    learning_rates: dict[Literal[ENCODER_KINDS], float] = Field(
        default_factory=lambda: {"qkeras": 0.005, "asic": 0.005, "hgq": 0.02},
        description="each kind's learning rate (measured per kind: docs/reference.md)")
    weight_bits: list[int] = Field(default_factory=list, max_length=15,
                                   description="more QKeras points at these weight widths (e.g. [4, 6, 8])")
    hgq_betas: list[float] = Field(default_factory=lambda: [1e-5], max_length=50,
                                   description="EBOPs penalties of the hgq points (each in [0, 1], as encoder.hgq_beta)")
    hgq_epochs: int = Field(30, ge=1, le=1000, description="epoch cap of the hgq points (early stopping)")
    n_check: int = Field(10_000, ge=1, le=10_000_000, description="held-out modules of each point's C and RTL simulation")
    synthesize: bool = Field(True, description="Yosys synthesis of every point")

    @model_validator(mode="after")
    def _choices(self) -> "ScanParams":
        bad = [n for n in self.link_counts if n not in AE_LINK_COUNTS]
        if bad:
            raise ValueError(f"link_counts: {bad[0]} is not a link count of the autoencoder {list(AE_LINK_COUNTS)}")
        if not self.link_counts or not self.kinds:
            raise ValueError("link_counts and kinds: at least one each")
        missing = [k for k in self.kinds if k not in self.learning_rates]
        if missing:
            raise ValueError(f"learning_rates: none for kind {missing[0]}")
        if any(not (0 < lr <= 1) for lr in self.learning_rates.values()):
            raise ValueError("learning_rates: each in (0, 1]")
        if any(not 2 <= b <= 16 for b in self.weight_bits):
            raise ValueError("weight_bits: each in 2..16")
        if any(not 0 <= b <= 1 for b in self.hgq_betas):
            raise ValueError(f"hgq_betas: each in [0, 1] (a negative penalty would reward resources; got {self.hgq_betas})")
        for name in ("link_counts", "weight_bits", "hgq_betas"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: repeated ({values})")
        return self


class CompareEcontParams(Strict):
    """The equal-bandwidth comparison with ECON-T's own algorithms (training/compare_econt.py,
    training/rebuild.py, training/signals.py)."""

    enabled: bool = Field(True, description="part of `pipeline`")
    link_counts: list[int] = Field(list(AE_LINK_COUNTS), min_length=1,
                                   description="output links to compare at (2-5)")
    train_encoders: bool = Field(True, description="train the encoder at every link count (else only the "
                                                   "encoder stage's, at encoder.links)")
    seeds: int = Field(1, ge=1, le=20, description="training seeds of the encoder at each link count (pooled)")
    threshold_adc: int = Field(47, ge=0, lt=2**22, description="threshold sum: CALQ threshold (47 = 1.35 MIP_T)")
    drop_lsb: int = Field(3, ge=0, le=4, description="DropLSB of the algorithms (3: high-density modules)")
    max_modules: Optional[int] = Field(10_000, ge=10, le=1_000_000_000,
                                       description="cap on the run's test (and training) modules judged (null: all)")
    heldout_crossings: bool = Field(True, description="also judge the held-out simulated ttbar crossings")
    signals: bool = Field(True, description="the low-energy signal study on the held-out crossings")
    signal_energies_mip: list[float] = Field(default_factory=lambda: list(SIGNAL_ENERGIES_MIP), min_length=1,
                                             max_length=50, description="injected shower energies (MIP_T)")
    cms_autoencoder: bool = Field(True, description="also judge the CMS test-vector autoencoder at 5 links")

    @model_validator(mode="after")
    def _links(self) -> "CompareEcontParams":
        bad = sorted(set(self.link_counts) - set(AE_LINK_COUNTS))
        if bad:
            raise ValueError(f"link_counts: {bad[0]} is not one of {list(AE_LINK_COUNTS)}")
        if len(set(self.link_counts)) != len(self.link_counts):
            raise ValueError("link_counts: a link count is repeated")
        if any(not 0 < e < 1e5 for e in self.signal_energies_mip):
            raise ValueError("signal_energies_mip: each in (0, 1e5)")
        return self
