"""What a stage body receives (`StageContext`) and returns (`StageResult`).

A result is a small typed object: the fields other code reads are typed attributes; the
rest of what the stage measured (timings, options, figures for people) travels in
`details` and is written beside them. `to_json()` is what `summary.json` holds,
`from_json()` reads it back, and `report_markdown()` / `report_json()` are the stage's
part of the run report, so the run report only composes them.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from econ_emd.base.artifacts import read_json
from econ_emd.base.integrity import SIGNATURE_FIELD, document_verifies
from econ_emd.config import RunConfig

log = logging.getLogger("econ_emd")

#: keys the registry adds to every summary.json (not part of any result)
BOOKKEEPING = ("stage_hash", "output_digests", "input_digests", SIGNATURE_FIELD)
SUMMARY_FILE = "summary.json"
#: the run directory's folders that are not stages: the exact-EMD cache (its `emd/`, by
#: default), the scan's points, NEEMo's results, `econt firmware`'s reports
CACHE_DIR = "cache"
SCAN_DIR = "scan"
NEEMO_DIR = "neemo"
ECONT_FIRMWARE_DIR = "econt_firmware"
_WARNED: set[Path] = set()      # summaries already reported as untrusted (once per process)


def read_summary(folder: Path) -> dict | None:
    """The summary of a unit built in `folder`, if the product signed it
    (`base.integrity`); None if there is none, it is unreadable, or its signature does not
    verify (edited by hand, or written under another user's or machine's key): such a
    summary is never trusted, so its unit is not current and the report leaves it out."""
    path = Path(folder) / SUMMARY_FILE
    try:
        summary = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s): not trusted", path, exc)
        return None
    if not document_verifies(summary):
        if path not in _WARNED:
            _WARNED.add(path)
            log.warning("%s: not signed by this product (edited, or written by another user or machine): "
                        "not trusted, the stage is rebuilt when it runs", path)
        return None
    return summary


def _encode(v: Any) -> Any:
    if hasattr(v, "to_json"):
        return v.to_json()
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


@dataclass(kw_only=True)
class StageResult:
    """Base of every stage's result."""

    details: dict = field(default_factory=dict)
    #: field name -> function turning its JSON back into the typed value
    DECODE: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def to_json(self) -> dict:
        typed = {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "details"}
        return {**self.details, **typed}

    @classmethod
    def from_json(cls, d: dict) -> "StageResult":
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        kw = {k: cls.DECODE.get(k, lambda x: x)(d[k]) for k in names if k in d}
        return cls(**kw, details={k: v for k, v in d.items() if k not in names and k not in BOOKKEEPING})

    @classmethod
    def load(cls, folder: Path) -> "StageResult | None":
        """The result stored in a stage folder, or None if there is none (or it is unreadable,
        or not signed by the product: `read_summary`)."""
        summary = read_summary(folder)
        if summary is None:
            return None
        try:
            return cls.from_json(summary)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    @property
    def check_passed(self) -> bool | None:
        """False when a check the stage performs failed (exit code 1); None: no check."""
        return None

    def report_json(self, others: dict[str, "StageResult"]) -> dict:
        """This stage's entries of report.json (`others`: the results of the other stages present)."""
        return {}

    def report_markdown(self, others: dict[str, "StageResult"]) -> list[str]:
        """This stage's section of report.md (`others`: the results of the other stages present)."""
        return []


@dataclass(kw_only=True)
class CheckedResult(StageResult):
    """A stage that performs a check: `passed` is stored as summary.json's `check_passed`."""

    passed: bool

    @property
    def check_passed(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        d = super().to_json()
        d["check_passed"] = d.pop("passed")
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CheckedResult":
        rest = {k: v for k, v in d.items() if k != "check_passed"}
        rest.setdefault("passed", d.get("check_passed"))
        return super().from_json(rest)


@dataclass
class StageContext:
    """Everything a stage body may use: the config, its own (work) folder and the run
    directory, to read the folders of the stages it declared as inputs, and the tools every
    stage shares (the exact-EMD runner, the frozen EMD-CNN a loss trains against)."""

    cfg: RunConfig
    run_dir: Path
    out: Path
    progress: bool

    def folder(self, stage: str) -> Path:
        return self.run_dir / stage

    def emd_runner(self):
        """The exact-EMD runner of the config (workers, cache under the run directory)."""
        return emd_runner(self.cfg, self.run_dir, self.progress)

    def frozen_emd_cnn(self, losses, path: str | None = None):
        """The frozen EMD-CNN the given losses train against (None if none needs one): `path`
        (a file named in the config), else encoder.emd_cnn_path, else the run's emd_cnn stage."""
        from econ_emd.training.losses import NEEDS_EMD_CNN

        if not NEEDS_EMD_CNN & set(losses):
            return None
        from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

        return load_frozen_emd_cnn(path or self.cfg.encoder.emd_cnn_path or self.folder("emd_cnn"))


def emd_runner(cfg: RunConfig, run_dir: Path, progress: bool):
    """The exact-EMD runner of the config (workers, cache under the run directory)."""
    import os

    from econ_emd.emd.exact import EmdRunner

    from econ_emd.base.errors import ConfigError

    e = cfg.emd
    n_jobs = len(os.sched_getaffinity(0)) if e.n_jobs == -1 else e.n_jobs
    cache = (e.cache_dir or str(run_dir / CACHE_DIR / "emd")) if e.cache else None
    if cache is not None:
        existing = next(p for p in (Path(cache), *Path(cache).absolute().parents) if p.exists())
        if not existing.is_dir():
            where = "" if existing == Path(cache) else f" ({existing} is a file)"
            raise ConfigError(f"emd.cache_dir {cache}: not a folder{where}; name a folder for the exact-EMD "
                              "cache, or set emd.cache: false")
    return EmdRunner(solver=e.solver, n_jobs=n_jobs, chunk_size=e.chunk_size,
                     dask_scheduler=e.dask_scheduler, cache_dir=cache, progress=progress)


def training_seeds(cfg: RunConfig, n: int) -> list[int]:
    """The training seeds a multi-seed study uses: seed 0 is the encoder stage's, so its
    training can stand for the first seed (the loss comparison's and compare-econt's)."""
    from econ_emd.base.seeds import as_int, derive_seed, seed_int

    return [seed_int(cfg.seed, "encoder_training"), *(as_int(derive_seed(cfg.seed, "encoder_seed", k)) for k in range(1, n))]


def encoder_request(cfg: RunConfig, seed: int | None = None, **changes):
    """The training request of the run's encoder stage (`changes`: encoder settings that
    differ, e.g. another link count; `seed`: another training seed), the one a comparison
    row or a scan point compares its own request with before it reuses the encoder stage's
    result."""
    from econ_emd.training.encoder_run import TrainRequest

    params = cfg.encoder.model_copy(update=changes) if changes else cfg.encoder
    return TrainRequest(params=params, loss=params.loss, seed=training_seeds(cfg, 1)[0] if seed is None else seed)
