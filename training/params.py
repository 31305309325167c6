"""Typed, validated parameters of the training-side stages.

Each stage's parameters are a pydantic model defined here, next to the code that uses
them; `econ_emd.config` composes them into the run configuration. Validation happens
once, when the YAML is loaded; code below receives these objects and trusts them.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticParams(Strict):
    """The synthetic HGCAL-like generator (see training/synthetic.py for the model).

    Energies are in MIP_T (1 MIP_T = `adc_per_mip` ADC counts); lengths are in units of
    half the TC pitch (adjacent TCs are 2.0 apart, a TC is ~2.4 cm across).
    """

    shower_probability: float = Field(0.55, ge=0, le=1, description="P(module holds >= 1 shower)")
    extra_showers_mean: float = Field(0.35, ge=0, le=10, description="Poisson mean of further showers")
    em_fraction: float = Field(0.5, ge=0, le=1, description="fraction of showers that are EM-like")
    energy_min_mip: float = Field(3.0, gt=0, description="lower edge of the shower energy spectrum")
    energy_max_mip: float = Field(3000.0, gt=0, description="upper cut of the spectrum")
    spectrum_index: float = Field(2.0, gt=1, le=6, description="dN/dE ~ E^-index")
    em_core_radius: float = Field(0.7, gt=0, description="EM core exponential radius")
    em_halo_radius: float = Field(2.5, gt=0, description="EM halo exponential radius")
    em_core_fraction: float = Field(0.8, ge=0, le=1, description="energy share of the EM core")
    had_radius: float = Field(2.0, gt=0, description="hadronic sub-cluster exponential radius")
    had_subclusters_max: int = Field(4, ge=1, le=16, description="hadronic sub-clusters: 1..max")
    had_subcluster_spread: float = Field(3.0, ge=0, description="sub-cluster offset scale")
    centre_spread: float = Field(2.5, ge=0, description="shower centre: random TC + disc of this radius")
    hits_per_mip: float = Field(3.0, gt=0, description="sampled energy hits per MIP_T (fluctuations)")
    hits_min: int = Field(12, ge=1)
    hits_max: int = Field(400, ge=1)
    pileup_mu_min: float = Field(0.002, ge=0, description="pile-up hits per TC: log-uniform lower edge")
    pileup_mu_max: float = Field(1.5, ge=0, description="pile-up hits per TC: log-uniform upper edge")
    pileup_hit_mip: float = Field(0.8, gt=0, description="mean energy of one pile-up hit (exponential)")
    noise_sigma_adc: float = Field(3.0, ge=0, description="Gaussian electronics noise per TC")
    zero_suppression_adc: float = Field(18.0, ge=0, description="charges below this are zeroed (~0.5 MIP_T)")
    adc_per_mip: float = Field(35.0, gt=0, description="ADC counts per MIP_T")
    adc_max: int = Field(2**22 - 1, gt=0, description="charge saturation (22-bit)")

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticParams":
        if self.energy_max_mip <= self.energy_min_mip:
            raise ValueError("energy_max_mip must be above energy_min_mip")
        if self.pileup_mu_max < self.pileup_mu_min:
            raise ValueError("pileup_mu_max must be >= pileup_mu_min")
        if self.hits_max < self.hits_min:
            raise ValueError("hits_max must be >= hits_min")
        return self


class SplitParams(Strict):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitParams":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1 (got {total:g})")
        return self


class DataParams(Strict):
    source: Literal["synthetic", "csv", "hdf5"] = "synthetic"
    path: Optional[str] = Field(None, description="csv/hdf5 file or directory of files")
    hdf5_key: Optional[str] = Field(None, description="dataset inside the HDF5 file")
    n_modules: int = Field(100_000, ge=10, le=50_000_000, description="synthetic modules")
    max_modules: Optional[int] = Field(None, ge=10, description="cap on modules read from files")
    split: SplitParams = SplitParams()
    synthetic: SyntheticParams = SyntheticParams()

    @model_validator(mode="after")
    def _path_for_files(self) -> "DataParams":
        if self.source != "synthetic" and not self.path:
            raise ValueError(f"source '{self.source}' needs data.path")
        return self


class PerturbParams(Strict):
    """Reconstruction-like perturbations of a module (the (module, perturbed) label pairs)."""

    smear_sigma_max: float = Field(0.3, ge=0, le=2, description="relative Gaussian smearing, per pair U(0, max)")
    dropout_max: float = Field(0.25, ge=0, lt=1, description="TC drop-out probability, per pair U(0, max)")
    shift_max: float = Field(0.4, ge=0, le=1, description="fraction of charge moved to a neighbour, per pair U(0, max)")
    spill_max: float = Field(0.05, ge=0, lt=1, description="share of the sum spread over empty TCs, per pair U(0, max)")


class EmdParams(Strict):
    solver: Literal["auto", "simplex", "wasserstein", "pot"] = Field(
        "auto", description="auto: the compiled simplex if numba is importable, else the C++ "
                            "wasserstein package if importable, else POT")
    n_jobs: int = Field(-1, ge=-1, description="worker processes (-1: all cores)")
    chunk_size: int = Field(4000, ge=1, description="pairs per task (and per cache entry)")
    dask_scheduler: Optional[str] = Field(None, description="address of a running Dask scheduler")
    cache: bool = Field(True, description="cache results on disk, keyed by content")
    cache_dir: Optional[str] = Field(None, description="default: <run_dir>/cache/emd")

    @model_validator(mode="after")
    def _n_jobs(self) -> "EmdParams":
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be -1 (all cores) or >= 1")
        return self


class LabelParams(Strict):
    random_pairs: int = Field(60_000, ge=0, description="random module pairs, split like the data")
    perturbed_pairs: int = Field(60_000, ge=0, description="(module, perturbed module) pairs")
    perturb: PerturbParams = PerturbParams()

    @model_validator(mode="after")
    def _some_pairs(self) -> "LabelParams":
        if self.random_pairs + self.perturbed_pairs == 0:
            raise ValueError("random_pairs + perturbed_pairs must be > 0")
        return self


class EmdCnnParams(Strict):
    """EMD-CNN architecture and training (defaults: the published architecture)."""

    arrangement: Literal["4x4x3", "8x8"] = "4x4x3"
    filters: int = Field(32, ge=1, le=512)
    kernel: int = Field(5, ge=1, le=9)
    n_conv: int = Field(3, ge=1, le=8)
    dense: int = Field(256, ge=1, le=4096)
    output: Literal["linear", "log", "mass"] = Field(
        "mass", description="linear: published; log: predict log EMD; mass: moved mass x mean distance")
    difference_channel: bool = Field(True, description="feed a - b beside a and b")
    inputs: Literal["pair", "difference"] = Field(
        "pair", description="pair: images of a and b (published); difference: only (a - b) / moved mass")
    symmetrize: Literal["mean", "canonical"] = Field(
        "mean", description="mean: of the network on both orders (published, two passes); "
        "canonical: the pair in a canonical order, one pass")
    epochs: int = Field(30, ge=1, le=1000)
    batch_size: int = Field(256, ge=8, le=65536)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau", description="plateau: halve on a validation plateau; cosine: decay to 1% over the epochs")
    patience: int = Field(5, ge=1, description="early stopping on validation loss")
    one_way_training: bool = Field(
        False, description="train f(a, b) on randomly swapped pairs (half the compute); the symmetrized model is saved")
    augment_rotations: bool = Field(True, description="also train on the pairs rotated by 120 and 240 degrees")

    @model_validator(mode="after")
    def _difference_needs_mass(self) -> "EmdCnnParams":
        if self.inputs == "difference" and self.output != "mass":
            raise ValueError("inputs 'difference' needs output 'mass'")
        return self

    def arch(self):
        from models.emd_cnn import EmdCnnArch

        return EmdCnnArch(self.arrangement, self.filters, self.kernel, self.n_conv, self.dense,
                          self.output, self.difference_channel, self.inputs, self.symmetrize)


LossName = Literal["emd_cnn", "mse", "wmse", "telescope", "sinkhorn"]


class EncoderParams(Strict):
    """The quantized ECON-T encoder, its training and the loss comparison."""

    elinks: int = Field(5, ge=2, le=5, description="output eLinks; sets the latent bits preset")
    latent_bits: Optional[int] = Field(None, ge=1, le=16, description="default: the eLink preset")
    latent_integer: int = Field(1, ge=0, le=8)
    input_bits: int = Field(10, ge=2, le=24)
    input_integer: int = Field(3, ge=1, le=8, description="must hold the sumlog2 range [0, 2)")
    weight_bits: int = Field(5, ge=2, le=16)
    weight_integer: int = Field(1, ge=0, le=8)
    conv_act_bits: int = Field(11, ge=2, le=24)
    conv_act_integer: int = Field(3, ge=0, le=12)
    quantized: bool = True
    loss: LossName = "emd_cnn"
    compare_losses: list[LossName] = Field(
        default_factory=lambda: ["emd_cnn", "telescope", "wmse", "mse", "sinkhorn"])
    compare_float: bool = Field(True, description="compare-losses also trains the float twin (main loss)")
    epochs: int = Field(20, ge=1, le=1000)
    batch_size: int = Field(256, ge=8, le=65536)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    patience: int = Field(4, ge=1)
    max_train_modules: Optional[int] = Field(None, ge=10, description="cap on training modules")
    max_eval_modules: Optional[int] = Field(None, ge=10, description="cap on test modules evaluated")
    sinkhorn_epsilon: float = Field(0.3, gt=0, description="entropic regularization (distance units)")
    sinkhorn_iter: int = Field(30, ge=1, le=1000)

    @model_validator(mode="after")
    def _budget(self) -> "EncoderParams":
        from models.elinks import ElinkBudgetError, check_elink_budget

        try:
            check_elink_budget(self.elinks, self.bits())
        except ElinkBudgetError as exc:
            raise ValueError(str(exc)) from None
        return self

    def bits(self) -> int:
        from models.elinks import elink_preset

        return self.latent_bits if self.latent_bits is not None else elink_preset(self.elinks)

    def arch(self, quantized: Optional[bool] = None):
        from models.econt import EncoderArch

        return EncoderArch(self.input_bits, self.input_integer, self.weight_bits, self.weight_integer,
                           self.conv_act_bits, self.conv_act_integer, self.bits(), self.latent_integer,
                           quantized=self.quantized if quantized is None else quantized)


class NeemoFitConfig(Strict):
    """The NEEMo geometric fit (training.neemo.FitParams)."""

    shape: Literal["point", "circle", "ring"] = "point"
    k: int = Field(3, ge=1, le=50, description="number of shapes")
    learn_fractions: bool = Field(True, description="fractions = energy nearest each shape, after every shape step")
    init: Literal["energy", "kmeans"] = Field("kmeans", description="start from k-means centres or energy draws")
    warmup_steps: int = Field(500, ge=0)
    shape_steps: int = Field(200, ge=0)
    inner_steps: int = Field(20, ge=1, description="potential steps per shape step")
    potential_learning_rate: float = Field(3e-3, gt=0)
    shape_learning_rate: float = Field(0.01, gt=0, description="in units of the event's extent; decays 10x")
    samples_per_shape: int = Field(64, ge=4, le=4096)
    track_every: int = Field(25, ge=1)


class NeemoConfig(Strict):
    """NEEMo: the Lipschitz potential and its optimization (training.neemo)."""

    width: int = Field(128, ge=8, le=4096)
    n_linear: int = Field(5, ge=2, le=20)
    group_size: int = Field(8, ge=1)
    steps: int = Field(3000, ge=1, description="potential steps of an estimate")
    learning_rate: float = Field(1e-2, gt=0)
    final_learning_rate: float = Field(1e-4, gt=0)
    random_pairs: int = Field(200, ge=1, description="`neemo estimate` without files: random module pairs")
    fit: NeemoFitConfig = NeemoFitConfig()

    @model_validator(mode="after")
    def _groups_divide_width(self):
        if self.width % self.group_size:
            raise ValueError(f"width {self.width} is not a multiple of group_size {self.group_size}")
        return self

    def optimizer(self, seed: int):
        from .neemo import NeemoParams as Opt

        return Opt(self.width, self.n_linear, self.group_size, self.steps, self.learning_rate,
                   self.final_learning_rate, seed)

    def fit_params(self, **overrides):
        from .neemo import FitParams

        return FitParams(**{**self.fit.model_dump(), **overrides})
