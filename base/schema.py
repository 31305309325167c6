"""The base of every config section: unknown keys are errors, assignments are validated.

Each room defines the typed parameters of its own code next to that code (data/params.py,
emd/params.py, ...); the application composes them into the run configuration.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
