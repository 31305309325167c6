"""The errors a user can meet, in one place, so the CLI maps them to exit codes once.

`UserError` and its subclasses are mistakes in what the user gave (a config key, a data
file, a model file, a missing tool): the CLI prints their one-line message and exits 2.
`CheckFailed` is a check that ran and failed (exit 1). Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or environment named by a one-line message (exit code 2)."""


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message is one line per problem."""


class DataError(UserError, ValueError):
    """An input data file cannot be used; the message names file, row and column."""


class ModelFileError(UserError, ValueError):
    """A model file given by the user is missing or is not the kind of model expected."""


class ToolError(UserError, RuntimeError):
    """An external tool (compiler, simulator, synthesizer) is missing or failed."""


class StageOrderError(UserError, RuntimeError):
    """A stage was asked for before the stages it reads from."""


class CheckFailed(RuntimeError):
    """A stage ran and wrote its outputs, but a check it performs failed (exit code 1)."""
