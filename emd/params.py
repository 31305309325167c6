"""Typed parameters of the exact-EMD runner (solver, workers, cache)."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from econ_emd.base.schema import PathName, Strict

from .exact import SOLVERS

#: a Dask scheduler address: host:port, or <protocol>://host:port (distributed's protocols)
SCHEDULER_ADDRESS = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss)://)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")


class EmdParams(Strict):
    solver: Literal[("auto", *SOLVERS)] = Field(
        "auto", description="auto: the compiled simplex if numba is importable, else the C++ "
                            "wasserstein package if importable, else POT")
    n_jobs: int = Field(-1, ge=-1, le=4096, description="worker processes (-1: all cores)")
    chunk_size: int = Field(4000, ge=1, le=10_000_000, description="pairs per task (and per cache entry)")
    dask_scheduler: Optional[str] = Field(None, description="address of a running Dask scheduler "
                                                            "(host:port or tcp://host:port)")
    cache: bool = Field(True, description="cache results on disk, keyed by content")
    cache_dir: Optional[PathName] = Field(None, description="default: <run_dir>/cache/emd")

    @field_validator("dask_scheduler")
    @classmethod
    def _address(cls, v: Optional[str]) -> Optional[str]:
        m = SCHEDULER_ADDRESS.fullmatch(v.strip()) if v is not None else None
        if v is not None and (m is None or not 0 < int(m.group(1)) < 65536):
            raise ValueError(f"{v!r} is not a scheduler address: host:port or tcp://host:port "
                             "(e.g. tcp://10.0.0.5:8786)")
        return v.strip() if v is not None else None

    @model_validator(mode="after")
    def _n_jobs(self) -> "EmdParams":
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be -1 (all cores) or >= 1")
        return self
