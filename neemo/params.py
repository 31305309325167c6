"""Typed parameters of NEEMo: the Lipschitz potential's optimization and the geometric fit.

These are the objects the NEEMo code takes (no second set of defaults elsewhere); the run
configuration's `neemo` section is a `NeemoConfig`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from econ_emd.base.schema import Strict

SHAPES = ("point", "circle", "ring")
INITS = ("energy", "kmeans")


class FitParams(Strict):
    """The min-max game: `warmup_steps` potential steps on the initial shapes, then
    `inner_steps` potential steps per shape step (enough that the estimate tracks the exact
    EMD). The final estimate of the fitted configuration is a fresh `kr_estimate` with the
    estimator's own settings."""

    shape: Literal[SHAPES] = "point"
    k: int = Field(3, ge=1, le=50, description="number of shapes")
    learn_fractions: bool = Field(True, description="fractions = energy nearest each shape, after every shape step")
    init: Literal[INITS] = Field("kmeans", description="start from k-means centres (a warm start) or K deposits drawn by energy")
    warmup_steps: int = Field(500, ge=0, le=1_000_000, description="potential steps on the initial configuration")
    shape_steps: int = Field(200, ge=0, le=1_000_000)
    inner_steps: int = Field(20, ge=1, le=10_000, description="potential steps per shape step")
    potential_learning_rate: float = Field(3e-3, gt=0, le=10)
    shape_learning_rate: float = Field(0.01, gt=0, le=10, description="in units of the event's extent; decays 10x")
    samples_per_shape: int = Field(64, ge=4, le=4096, description="circle/ring sampling (angles; rings x 4 radii)")
    track_every: int = Field(25, ge=1, le=1_000_000, description="exact EMD (POT) of the configuration every N shape steps")


class PotentialParams(Strict):
    """The Lipschitz potential (models.lipschitz.PotentialArch) and its optimization."""

    width: int = Field(128, ge=8, le=4096)
    n_linear: int = Field(5, ge=2, le=20)
    group_size: int = Field(8, ge=1, le=4096)
    steps: int = Field(3000, ge=1, le=10_000_000, description="potential steps of an estimate")
    learning_rate: float = Field(1e-2, gt=0, le=10)
    final_learning_rate: float = Field(1e-4, gt=0, le=10)

    @model_validator(mode="after")
    def _groups_divide_width(self):
        if self.width % self.group_size:
            raise ValueError(f"width {self.width} is not a multiple of group_size {self.group_size}")
        return self


class NeemoConfig(PotentialParams):
    """The run configuration's `neemo` section: the potential, the random pairs of `neemo
    estimate` without files, and the fit."""

    random_pairs: int = Field(200, ge=1, le=1_000_000_000, description="`neemo estimate` without files: random module pairs")
    fit: FitParams = FitParams()

    def potential(self) -> PotentialParams:
        return PotentialParams(**self.model_dump(include=set(PotentialParams.model_fields)))
