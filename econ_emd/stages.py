"""The stages of a run, each writing into its own folder of the run directory.

A stage records in `<run_dir>/<stage>/summary.json` the hash of the config sections it
depends on and of its upstream stages. `pipeline` skips a stage whose summary carries the
current hash; stage commands run unconditionally. Artifacts are written to temporary
names and renamed, so a stage interrupted midway is simply run again.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from training.artifacts import read_json

from .config import RunConfig
from .firmware_stages import _run_csim, _run_firmware, _run_report, _run_rtl
from .training_stages import _run_compare, _run_data, _run_emd_cnn, _run_encoder, _run_label

log = logging.getLogger("econ_emd")


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]   # config sections the outputs depend on
    upstream: tuple[str, ...] | Callable[[RunConfig], tuple[str, ...]]  # stages it reads
    run: Callable[[RunConfig, Path, bool], dict]
    outputs: tuple[str, ...]    # files (relative to the stage folder) that must exist

    def upstream_of(self, cfg: RunConfig) -> tuple[str, ...]:
        return self.upstream(cfg) if callable(self.upstream) else self.upstream


class CheckFailed(RuntimeError):
    """A stage ran and wrote its outputs, but a check it performs failed (exit code 1)."""


STAGES: dict[str, Stage] = {
    "data": Stage("data", ("data",), (), _run_data, ("modules.h5",)),
    "label": Stage("label", ("labels",), ("data",), _run_label, ("labels.h5",)),
    "emd_cnn": Stage("emd_cnn", ("emd_cnn",), ("label",), _run_emd_cnn,
                     ("emd_cnn.h5", "emd_cnn.json", "emd_cnn_pred_vs_exact.png")),
    "encoder": Stage("encoder", ("encoder",),
                     lambda cfg: ("data", "emd_cnn") if cfg.encoder.loss == "emd_cnn" else ("data",),
                     _run_encoder, ("encoder.h5", "decoder.h5", "emd_vs_occupancy.png")),
    "compare": Stage("compare", ("encoder",),
                     lambda cfg: ("data", "emd_cnn") if "emd_cnn" in cfg.encoder.compare_losses
                     or cfg.encoder.loss == "emd_cnn" else ("data",),
                     _run_compare, ("compare.md", "emd_vs_occupancy.png")),
    "firmware": Stage("firmware", ("firmware",),
                      lambda cfg: () if cfg.firmware.encoder_path else ("encoder",),
                      _run_firmware, ("hls_project/myproject_test.cpp", "tb_inputs.npy", "tb_expected.npy")),
    "csim": Stage("csim", ("firmware",), ("firmware",), _run_csim, ("csim.md",)),
    "rtl": Stage("rtl", ("firmware", "rtl"), ("firmware",), _run_rtl,
                 ("verilog/src/econt_encoder.v", "rtl.md")),
    "report": Stage("report", ("firmware", "rtl"),
                    lambda cfg: ("firmware", "rtl") if cfg.rtl.enabled else ("firmware",),
                    _run_report, ("report.md",)),
}


def stage_hash(cfg: RunConfig, name: str) -> str:
    stage = STAGES[name]
    h = hashlib.sha256(cfg.section_hash(*stage.sections).encode())
    if "firmware" in stage.sections and cfg.firmware.encoder_path:
        try:
            h.update(hashlib.sha256(Path(cfg.firmware.encoder_path).read_bytes()).digest())
        except OSError:
            pass
    for up in stage.upstream_of(cfg):
        h.update(stage_hash(cfg, up).encode())
    return h.hexdigest()[:16]


def is_current(cfg: RunConfig, run_dir: Path, name: str) -> bool:
    """Outputs exist and were made from the current config and upstream stages."""
    folder = run_dir / name
    try:
        summary = read_json(folder / "summary.json")
    except (OSError, ValueError):
        return False
    if summary.get("stage_hash") != stage_hash(cfg, name) or summary.get("check_passed") is False:
        return False
    recorded = summary.get("output_digests", {})
    for f in STAGES[name].outputs:
        path = folder / f
        if not path.exists():
            return False
        if f in recorded and file_digest(path) != recorded[f]:
            log.warning("%s: %s differs from what the stage wrote (corrupted or replaced); rerunning", name, path)
            return False
    return True


def file_digest(path: Path) -> str:
    """sha256 of a file: a stage's outputs are checked against it before they are reused."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_stage(cfg: RunConfig, run_dir: Path, name: str, progress: bool = True) -> dict:
    from training.artifacts import atomic_write_json

    missing = [up for up in STAGES[name].upstream_of(cfg) if not is_current(cfg, run_dir, up)]
    if missing:
        from .cli import COMMANDS

        raise StageOrderError(f"stage '{name}' needs up-to-date outputs of: {', '.join(missing)} "
                              f"(run `econ-emd {COMMANDS[missing[0]]}` or `econ-emd pipeline`)")
    folder = run_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    summary = STAGES[name].run(cfg, folder, progress)
    summary["stage_hash"] = stage_hash(cfg, name)
    summary["output_digests"] = {f: file_digest(folder / f) for f in STAGES[name].outputs if (folder / f).exists()}
    atomic_write_json(folder / "summary.json", summary)
    if summary.get("check_passed") is False:
        raise CheckFailed(f"stage '{name}': check failed (see {folder})")
    return summary


class StageOrderError(RuntimeError):
    """A stage was asked for before the stages it reads from."""
