"""The base of every config section: unknown keys are errors, assignments are validated.

Each room defines the typed parameters of its own code next to that code (data/params.py,
emd/params.py, ...); the application composes them into the run configuration.
"""
from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, model_validator


def _is_numeric(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return bool({int, float} & set(args)) and bool not in args


class Strict(BaseModel):
    """Unknown keys are errors, values are validated on assignment too, and a boolean is
    never taken for a number (pydantic would read `n_modules: true` as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data):
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _is_numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, got {str(data[name]).lower()}")
        return data
