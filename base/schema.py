"""The base of every config section: unknown keys are errors, assignments are validated.

Each room defines the typed parameters of its own code next to that code (data/params.py,
emd/params.py, ...); the application composes them into the run configuration.
"""
from __future__ import annotations

import typing

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank: name a file or folder, or leave the key out")
    return value


#: a file or folder name in a config: a blank one is refused at once (it would mean the
#: current folder, or a file named by spaces, far from where the user looks)
PathName = typing.Annotated[str, AfterValidator(_not_blank)]


def _is_numeric(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return bool({int, float} & set(args)) and bool not in args


class Strict(BaseModel):
    """Unknown keys are errors, values are validated on assignment too, a boolean is never
    taken for a number (pydantic would read `n_modules: true` as 1), and every float, in
    lists and maps too, is finite (`.nan` or `.inf` would pass a bound like `gt=0` or
    `ge=0` unnoticed, or crash the code that takes it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data):
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _is_numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, got {str(data[name]).lower()}")
        return data
