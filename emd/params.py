"""Typed parameters of the exact-EMD runner (solver, workers, cache)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from econ_emd.base.schema import Strict

from .exact import SOLVERS


class EmdParams(Strict):
    solver: Literal[("auto", *SOLVERS)] = Field(
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
