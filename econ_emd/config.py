"""The run configuration: YAML in, one validated typed object out.

Validation happens here, once, at the edge: an unknown key, a wrong type or an
out-of-range value becomes a `ConfigError` whose one-line message names the file and the
key (`data.n_modules: must be >= 10 (got 5)`). Everything below receives typed values.
Relative paths in a config are relative to the current working directory.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from econ_emd.base.errors import ConfigError
from econ_emd.base.schema import Strict
from econ_emd.base.seeds import MAX_RUN_SEED
from econ_emd.base.yamlload import YamlTooLarge, safe_load
from econ_emd.data.params import DataParams, LabelParams
from econ_emd.emd.params import EmdParams
from econ_emd.firmware.params import FirmwareParams, RtlParams
from econ_emd.neemo.params import NeemoConfig
from econ_emd.training.params import CompareEcontParams, CompareLossesParams, EmdCnnParams, EncoderParams, ScanParams

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG", "ConfigError", "RunConfig", "dump_config", "load_config"]

#: the repository's configs/ directory (a wheel install has none: the schema's defaults,
#: which equal configs/default.yaml (a test checks), stand in for it)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class RunConfig(Strict):
    """A run's configuration: one section per room (`data`, `label`, `emd`, `emd_cnn`,
    `encoder`, `compare_losses`, `compare_econt`, `firmware`, `rtl`, `neemo`, `scan`),
    validated once when it is loaded; every stage reads its declared keys from it."""

    run_dir: str = Field("runs/default", min_length=1, description="where every stage writes")
    seed: int = Field(1234, ge=0, le=MAX_RUN_SEED, description="seed of data generation, splits and pairs "
                                                              "(every stream's seed stays below 2^32)")
    data: DataParams = DataParams()
    label: LabelParams = LabelParams()
    emd: EmdParams = EmdParams()
    emd_cnn: EmdCnnParams = EmdCnnParams()
    encoder: EncoderParams = EncoderParams()
    compare_losses: CompareLossesParams = CompareLossesParams()
    compare_econt: CompareEcontParams = CompareEcontParams()
    firmware: FirmwareParams = FirmwareParams()
    rtl: RtlParams = RtlParams()
    neemo: NeemoConfig = NeemoConfig()
    scan: ScanParams = ScanParams()

    @field_validator("run_dir")
    @classmethod
    def _run_dir_named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a folder (it is blank)")
        return v


#: keys of earlier versions -> their name now (a config that still uses one gets a one-line
#: error naming the new key instead of "unknown key")
RENAMED = {"labels": "label", "compare": "compare_losses", "bandwidth": "compare_econt",
           "encoder.elinks": "encoder.links", "compare_econt.simulated_crossings": "compare_econt.heldout_crossings"}


def _renamed(data: dict) -> list[str]:
    found = []
    for old, new in RENAMED.items():
        *parents, last = old.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            found.append(f"{old}: renamed {new}")
    return found


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if "input" in err and not isinstance(err["input"], dict) and kind != "value_error":
        got = repr(err["input"])
        msg += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
    return f"{key}: {msg}"


def _apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. data.n_modules=1000")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(f"--set {assignment!r}: KEY must name a config key, e.g. data.n_modules=1000")
    try:
        value = safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config; raise ConfigError with one line per problem.

    Without a path: configs/default.yaml of the checkout, or the schema's defaults (the same
    values) where the package was installed without the repository."""
    if path is None and not DEFAULT_CONFIG.exists():
        return _validate(Path("(defaults)"), "", overrides)
    path = Path(path) if path is not None else DEFAULT_CONFIG
    return _validate(path, _read(path), overrides)


def _read(path: Path) -> str:
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None


def _validate(path: Path, text: str, overrides: list[str] | None) -> RunConfig:
    try:
        data = safe_load(text)
    except YamlTooLarge as exc:
        raise ConfigError(f"{path}: the YAML {exc}; a run configuration holds a few hundred") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        if str(path) != "(defaults)":
            raise ConfigError(f"{path}: the config file is empty (omit -c to run the defaults)")
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for assignment in overrides or []:
        _apply_override(data, assignment)
    renamed = _renamed(data)
    if renamed:
        raise ConfigError("\n".join(f"{path}: {r}" for r in renamed))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{path}: {_describe(e)}" for e in exc.errors())) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
