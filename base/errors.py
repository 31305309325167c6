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


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def error_record(exc: BaseException) -> dict:
    """An error as plain JSON values, for a child process to hand its parent (`error_from_record`):
    its class, message and, for an OSError, errno and file; a bug keeps its traceback text."""
    import traceback

    record = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, OSError):
        record.update(errno=exc.errno, strerror=exc.strerror, filename=None if exc.filename is None else str(exc.filename))
    if not isinstance(exc, (UserError, CheckFailed, OSError, KeyboardInterrupt)):
        record["traceback"] = "".join(traceback.format_exception(exc))
    return record


def error_from_record(record: dict) -> BaseException:
    """The error a child process recorded, as the same kind of exception in this process
    (so the CLI gives it the same exit code and one-line message)."""
    name, message = record.get("type", ""), record.get("message", "")
    if name == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if record.get("errno") is not None:
        return OSError(record["errno"], record.get("strerror") or message, record.get("filename"))
    for cls in (*_subclasses(UserError), *_subclasses(CheckFailed)):
        if cls.__name__ == name:
            try:
                return cls(message)
            except Exception:
                return (CheckFailed if issubclass(cls, CheckFailed) else UserError)(message)
    return RuntimeError(f"{name}: {message}\n{record.get('traceback', '')}".rstrip())
