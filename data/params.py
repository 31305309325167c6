"""Typed parameters of the data room: the synthetic generator, file sources, the split,
and the label pairs (validated once, when the run config is loaded)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from econ_emd.base.schema import PathName, Strict
from econ_emd.base.units import ADC_PER_MIP_T

from econ_emd.econt.links import N_ETX

from .allocation import N_LAYERS
from .loaders import BUILTIN_SOURCES, FILE_SOURCES
from .ntuples import CHARGE_BRANCHES

#: the largest charge, noise or threshold a setting may give in ADC counts: far above the
#: 22-bit ECON-T charge, and small enough that every module sum stays a finite float
ADC_LIMIT = 2**31 - 1
#: the largest count of pairs (and modules read from files) a setting may ask for; the
#: size check (econ_emd.sizes) refuses what this machine cannot hold long before that
MAX_COUNT = 1_000_000_000


class SyntheticParams(Strict):
    """The synthetic HGCAL-like generator (see training/synthetic.py for the model).

    Energies are in MIP_T (1 MIP_T = `adc_per_mip` ADC counts); lengths are in units of
    half the TC pitch (adjacent TCs are 2.0 apart, a TC is ~2.4 cm across).
    """

    shower_probability: float = Field(0.55, ge=0, le=1, description="P(module holds >= 1 shower)")
    extra_showers_mean: float = Field(0.35, ge=0, le=10, description="Poisson mean of further showers")
    em_fraction: float = Field(0.5, ge=0, le=1, description="fraction of showers that are EM-like")
    energy_min_mip: float = Field(3.0, gt=0, le=1e6, description="lower edge of the shower energy spectrum")
    energy_max_mip: float = Field(3000.0, gt=0, le=1e7, description="upper cut of the spectrum")
    spectrum_index: float = Field(2.0, gt=1, le=6, description="dN/dE ~ E^-index")
    em_core_radius: float = Field(0.7, gt=0, le=100, description="EM core exponential radius")
    em_halo_radius: float = Field(2.5, gt=0, le=100, description="EM halo exponential radius")
    em_core_fraction: float = Field(0.8, ge=0, le=1, description="energy share of the EM core")
    had_radius: float = Field(2.0, gt=0, le=100, description="hadronic sub-cluster exponential radius")
    had_subclusters_max: int = Field(4, ge=1, le=16, description="hadronic sub-clusters: 1..max")
    had_subcluster_spread: float = Field(3.0, ge=0, le=100, description="sub-cluster offset scale")
    centre_spread: float = Field(2.5, ge=0, le=100, description="shower centre: random TC + disc of this radius")
    hits_per_mip: float = Field(3.0, gt=0, le=1000, description="sampled energy hits per MIP_T (fluctuations)")
    hits_min: int = Field(12, ge=1, le=100_000)
    hits_max: int = Field(400, ge=1, le=100_000)
    pileup_mu_min: float = Field(0.002, ge=0, le=100, description="pile-up hits per TC: log-uniform lower edge")
    pileup_mu_max: float = Field(1.5, ge=0, le=100, description="pile-up hits per TC: log-uniform upper edge")
    pileup_hit_mip: float = Field(0.8, gt=0, le=1e4, description="mean energy of one pile-up hit (exponential)")
    noise_sigma_adc: float = Field(3.0, ge=0, le=ADC_LIMIT, description="Gaussian electronics noise per TC")
    zero_suppression_adc: float = Field(18.0, ge=0, le=ADC_LIMIT, description="charges below this are zeroed (~0.5 MIP_T)")
    adc_per_mip: float = Field(ADC_PER_MIP_T, gt=0, le=ADC_LIMIT, description="ADC counts per MIP_T")
    adc_max: int = Field(2**22 - 1, gt=0, le=ADC_LIMIT, description="charge saturation (22-bit)")

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


#: data.detector.placement choices: the calibrated module's place, or places drawn from the
#: detector's link allocation (data/detector.py, data/allocation.py)
PLACEMENTS = ("reference", "allocation")


class DetectorParams(Strict):
    """The detector generator (source `detector`; model and calibration in data/detector.py)."""

    placement: Literal[PLACEMENTS] = Field(
        "reference", description="reference: every module at the calibrated module's place; allocation: places "
                                 "drawn from the detector's modules (each module equally likely)")
    allocation_path: Optional[PathName] = Field(
        None, description="per-module allocation CSV (Layer, ModU, ModV, ECONT_eTX, HD_LD, as the CMS "
                          "ModuleLinkSummary.csv); default: the embedded per-ring summary")
    links: Optional[list[int]] = Field(None, description="allocation: only modules with these ECON-T link counts")
    layers: Optional[list[int]] = Field(None, description="allocation: only modules of these layers")
    pileup: float = Field(200.0, gt=0, le=1000,
                          description="mean interactions per crossing (the minimum bias's rate scales with it)")

    @model_validator(mode="after")
    def _choices(self) -> "DetectorParams":
        if self.placement == "reference" and (self.allocation_path or self.links or self.layers):
            raise ValueError("allocation_path, links and layers select places from the allocation: "
                             "set placement: allocation")
        if self.links is not None and (not self.links or not all(1 <= k <= N_ETX for k in self.links)):
            raise ValueError(f"links must list link counts 1-{N_ETX} (modules with 0 links send no data)")
        if self.layers is not None and (not self.layers or not all(1 <= k <= N_LAYERS for k in self.layers)):
            raise ValueError(f"layers must list HGCAL layers 1-{N_LAYERS}")
        return self


class NtupleParams(Strict):
    """CMS HGCAL trigger ntuples (source `ntuple`, data/ntuples.py)."""

    charge: Literal[tuple(CHARGE_BRANCHES)] = Field(
        "uncompressedCharge", description="tc_uncompressedCharge (the ECON-T's input charge), tc_data, or tc_mipPt "
                                          "(x ADC_PER_MIP_T: transverse MIPs in the product's units)")
    layers: Optional[list[int]] = Field(None, description="only modules of these layers")

    @model_validator(mode="after")
    def _layers(self) -> "NtupleParams":
        if self.layers is not None and (not self.layers or not all(1 <= k <= N_LAYERS for k in self.layers)):
            raise ValueError(f"layers must list HGCAL layers 1-{N_LAYERS}")
        return self


class DataParams(Strict):
    source: Literal[(*BUILTIN_SOURCES, *FILE_SOURCES)] = "detector"
    path: Optional[PathName] = Field(None, description="csv/hdf5 file or directory of files")
    hdf5_key: Optional[PathName] = Field(None, description="dataset inside the HDF5 file")
    econt_config: Optional[PathName] = Field(None, description="ASIC init.yaml decoding econt_links words")
    n_modules: int = Field(100_000, ge=10, le=50_000_000, description="synthetic or detector modules")
    max_modules: Optional[int] = Field(None, ge=10, le=MAX_COUNT, description="cap on modules read from files")
    split: SplitParams = SplitParams()
    synthetic: SyntheticParams = SyntheticParams()
    detector: DetectorParams = DetectorParams()
    ntuple: NtupleParams = NtupleParams()

    @model_validator(mode="after")
    def _path_for_files(self) -> "DataParams":
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"source '{self.source}' needs data.path")
        if self.source == "econt_links" and not self.econt_config:
            raise ValueError("source 'econt_links' needs data.econt_config (the ASIC's init.yaml: "
                             "MUX, calibration and density decode the link words)")
        return self


class PerturbParams(Strict):
    """Reconstruction-like perturbations of a module (the (module, perturbed) label pairs)."""

    smear_sigma_max: float = Field(0.3, ge=0, le=2, description="relative Gaussian smearing, per pair U(0, max)")
    dropout_max: float = Field(0.25, ge=0, lt=1, description="TC drop-out probability, per pair U(0, max)")
    shift_max: float = Field(0.4, ge=0, le=1, description="fraction of charge moved to a neighbour, per pair U(0, max)")
    spill_max: float = Field(0.05, ge=0, lt=1, description="share of the sum spread over empty TCs, per pair U(0, max)")


class LabelParams(Strict):
    random_pairs: int = Field(60_000, ge=0, le=MAX_COUNT, description="random module pairs, split like the data")
    perturbed_pairs: int = Field(60_000, ge=0, le=MAX_COUNT, description="(module, perturbed module) pairs")
    perturb: PerturbParams = PerturbParams()

    @model_validator(mode="after")
    def _some_pairs(self) -> "LabelParams":
        if self.random_pairs + self.perturbed_pairs == 0:
            raise ValueError("random_pairs + perturbed_pairs must be > 0")
        return self
