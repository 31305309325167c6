"""The pipeline's one stage registry: what each stage is called, reads, needs and writes.

Each `Stage` declares its CLI command and help, the config keys its outputs depend on
(`reads`), the stages whose outputs it reads (`inputs`), files outside the run it reads
(`external`), its outputs, its body and its result type. Everything else derives from it:
the CLI's subcommands, the order of `pipeline`, the run report, and a stage's hash.

A stage's hash is made of exactly the config values it reads and the digests of the files
it reads: the recorded output digests of its input stages (which `is_current` re-verifies),
and the digest of each external file. So a stage reruns when, and only when, something it
reads changed; a repaired or rewritten input reruns everything downstream of it. Settings
that change how a stage runs but not what it writes (workers, chunk size, cache, progress)
are not part of any hash.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from econ_emd.base.artifacts import atomic_write_json, read_json, replace_tree
from econ_emd.base.errors import CheckFailed, StageOrderError
from econ_emd.base.testhooks import pause_for_test

from econ_emd.firmware.reports import VENDOR_OUTPUTS
from econ_emd.training.losses import LOSSES, NEEDS_EMD_CNN

from .config import RunConfig
from .stages import bandwidth as bandwidth_stages
from .stages import data as data_stages
from .stages import firmware as firmware_stages
from .stages import training as training_stages
from .stages.result import StageContext, StageResult

log = logging.getLogger("econ_emd")

Keys = Callable[[RunConfig], tuple[str, ...]]


@dataclass(frozen=True)
class CliOption:
    """A stage-specific CLI flag that sets one config key."""

    flag: str
    key: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Stage:
    name: str                       # key and folder name under the run directory
    command: str                    # CLI subcommand
    help: str
    reads: Keys                     # config keys (dotted; a section means all its keys; "-key" excludes)
    inputs: Keys                    # stages whose outputs it reads (they must be current)
    outputs: tuple[str, ...]        # files (or trees, ending in "/") relative to the stage folder
    run: Callable[[StageContext], StageResult]
    result: type[StageResult]
    external: Callable[[RunConfig], tuple[str, ...]] = lambda cfg: ()   # files outside the run it reads
    enabled: Callable[[RunConfig], bool] = lambda cfg: True             # part of `pipeline`
    options: tuple[CliOption, ...] = ()


def _keys(*keys: str) -> Keys:
    return lambda cfg: keys


def _encoder_reads(cfg: RunConfig) -> tuple[str, ...]:
    keys = ["seed", "encoder", "emd.solver"]
    if cfg.encoder.loss != "sinkhorn":
        keys += ["-encoder.sinkhorn_epsilon", "-encoder.sinkhorn_iter"]
    return tuple(keys)


def _compare_reads(cfg: RunConfig) -> tuple[str, ...]:
    keys = ["seed", "encoder", "compare", "emd.solver"]
    if "sinkhorn" not in (*cfg.compare.losses, cfg.encoder.loss):
        keys += ["-encoder.sinkhorn_epsilon", "-encoder.sinkhorn_iter"]
    return tuple(keys)


def _needs_emd_cnn(cfg: RunConfig, losses) -> tuple[str, ...]:
    """The run's emd_cnn stage, when a loss needs an EMD-CNN and no file stands in for it."""
    return ("emd_cnn",) if NEEDS_EMD_CNN & set(losses) and not cfg.encoder.emd_cnn_path else ()


def _emd_cnn_files(cfg: RunConfig, losses) -> tuple[str, ...]:
    return (cfg.encoder.emd_cnn_path,) if NEEDS_EMD_CNN & set(losses) and cfg.encoder.emd_cnn_path else ()


def _encoder_inputs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", *_needs_emd_cnn(cfg, [cfg.encoder.loss]))


def _compare_losses(cfg: RunConfig) -> list[str]:
    return [*cfg.compare.losses, *([cfg.encoder.loss] if cfg.compare.float_twin else [])]


def _compare_inputs(cfg: RunConfig) -> tuple[str, ...]:
    reuse = ("encoder",) if training_stages.compare_reuses_encoder(cfg) else ()
    return ("data", *_needs_emd_cnn(cfg, _compare_losses(cfg)), *reuse)


def _compare_external(cfg: RunConfig) -> tuple[str, ...]:
    return (*_emd_cnn_files(cfg, _compare_losses(cfg)), *cfg.compare.emd_cnn_files)


def _bandwidth_reads(cfg: RunConfig) -> tuple[str, ...]:
    """Its own section and the EMD solver; training encoders at other link counts also reads
    what the encoder stage reads."""
    keys = ["seed", "bandwidth", "emd.solver"]
    if cfg.bandwidth.train_encoders:
        keys += [k for k in _encoder_reads(cfg) if k not in ("seed", "emd.solver")]
    return tuple(keys)


def _bandwidth_inputs(cfg: RunConfig) -> tuple[str, ...]:
    extra = _needs_emd_cnn(cfg, [cfg.encoder.loss]) if cfg.bandwidth.train_encoders else ()
    return ("data", "encoder", *extra)


def _run_encoder(cfg: RunConfig) -> tuple[str, ...]:
    """The run's own encoder stage, unless --encoder / firmware.encoder_path names a file."""
    return () if cfg.firmware.encoder_path else ("encoder",)


def _external_encoder(cfg: RunConfig) -> tuple[str, ...]:
    return (cfg.firmware.encoder_path,) if cfg.firmware.encoder_path else ()


def _vendor_reports(cfg: RunConfig) -> tuple[str, ...]:
    project = Path(cfg.run_dir) / "firmware" / "hls_project"   # cfg.run_dir: --run-dir applied
    return tuple(str(project / p.rstrip("/")) for p in VENDOR_OUTPUTS)


#: the firmware keys that shape the HLS project and its check data (the budget and the
#: tolerance are read by later stages)
FIRMWARE_PROJECT_KEYS = ("firmware", "-firmware.budget", "-firmware.tolerance_lsb")
ENCODER_OPTION = CliOption("--encoder", "firmware.encoder_path", "a QKeras encoder .h5 instead of the run's", "H5")
EMD_CNN_OPTION = CliOption("--emd-cnn", "encoder.emd_cnn_path",
                           "a frozen EMD-CNN (.h5: ours, or the published two-input format) as the emd_cnn loss", "H5")

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", "data", "generate or load the modules and write the train/val/test split",
          _keys("seed", "data"), _keys(), ("modules.h5",), data_stages.run_data, data_stages.DataResult,
          external=lambda cfg: tuple(p for p in (cfg.data.path, cfg.data.econt_config)
                                     if p and Path(p).is_file())),
    Stage("label", "label", "exact EMD labels for random and perturbed module pairs",
          _keys("seed", "labels", "emd.solver"), _keys("data"), ("labels.h5",),
          data_stages.run_label, data_stages.LabelResult),
    Stage("emd_cnn", "train-emd-cnn", "train, freeze and evaluate the EMD-CNN on the exact labels",
          _keys("seed", "emd_cnn"), _keys("label"), ("emd_cnn.h5", "emd_cnn.json", "emd_cnn_pred_vs_exact.png"),
          training_stages.run_emd_cnn, training_stages.EmdCnnResult),
    Stage("encoder", "train-encoder", "quantization-aware training of the ECON-T encoder, judged by exact EMD",
          _encoder_reads, _encoder_inputs, ("encoder.h5", "decoder.h5", "emd.npy", "run.json", "settings.json", "emd_vs_occupancy.png"),
          training_stages.run_encoder, training_stages.EncoderResult,
          external=lambda cfg: _emd_cnn_files(cfg, [cfg.encoder.loss]),
          options=(CliOption("--loss", "encoder.loss", "training loss (default: the config's encoder.loss)",
                             choices=tuple(LOSSES)), EMD_CNN_OPTION)),
    Stage("compare", "compare-losses",
          "train the encoder with every loss, on the same split and seeds, and compare by exact EMD",
          _compare_reads, _compare_inputs, ("compare.md", "emd_vs_occupancy.png"),
          training_stages.run_compare, training_stages.CompareResult, external=_compare_external,
          options=(EMD_CNN_OPTION,)),
    Stage("bandwidth", "compare-econt",
          "the encoder against ECON-T's best choice, STC and threshold sum at equal output bandwidth",
          _bandwidth_reads, _bandwidth_inputs, ("bandwidth.md", "bandwidth.png"),
          bandwidth_stages.run_bandwidth, bandwidth_stages.BandwidthResult,
          enabled=lambda cfg: cfg.bandwidth.enabled),
    Stage("firmware", "firmware", "convert the encoder with hls4ml into an HLS project (vendor build when found)",
          # seed and data.synthetic: the synthetic modules that top up a short test split
          _keys("seed", "data.synthetic", *FIRMWARE_PROJECT_KEYS),
          lambda cfg: ("data", "encoder") if not cfg.firmware.encoder_path else (),
          ("hls_project/", "tb_inputs.npy", "tb_expected.npy"),
          firmware_stages.run_firmware, firmware_stages.FirmwareResult,
          external=lambda cfg: (*_external_encoder(cfg),
                                *((str(Path(cfg.run_dir) / "data" / "modules.h5"),) if cfg.firmware.encoder_path else ())),
          options=(ENCODER_OPTION,)),
    Stage("csim", "csim", "C simulation of the HLS project with g++: bit-accuracy against QKeras",
          _keys("firmware.tolerance_lsb"), _keys("firmware"), ("csim.md",),
          firmware_stages.run_csim, firmware_stages.CsimResult, options=(ENCODER_OPTION,)),
    Stage("rtl", "rtl", "vendor-free RTL: da4ml Verilog, Verilator bit-accuracy and latency, Yosys resources",
          _keys("firmware.part", "firmware.clock_period_ns", "firmware.tolerance_lsb", "rtl", "-rtl.enabled"),
          lambda cfg: ("firmware", *_run_encoder(cfg)), ("verilog/", "rtl.md"),
          firmware_stages.run_rtl, firmware_stages.RtlResult, external=_external_encoder,
          enabled=lambda cfg: cfg.rtl.enabled, options=(ENCODER_OPTION,)),
    Stage("report", "report", "resource/latency report (vendor, Yosys, exact counts) and budget checks",
          _keys("firmware.budget", "firmware.clock_period_ns", "rtl.enabled"),
          lambda cfg: ("firmware", *(("rtl",) if cfg.rtl.enabled else ()), *_run_encoder(cfg)), ("report.md",),
          firmware_stages.run_report, firmware_stages.ReportResult,
          external=lambda cfg: (*_external_encoder(cfg), *_vendor_reports(cfg)),
          options=(ENCODER_OPTION,)),
)}

#: files a later step writes into a stage's tree, not part of that tree's digest (entries
#: ending in "/" are folders): the C simulation's binary and log live in the HLS project it
#: simulates, and a vendor build (run by the firmware stage, or elsewhere and copied in)
#: writes its reports there; the report stage reads those as its own inputs
TREE_IGNORE = {"hls_project/": ("csim_tb", "tb_data/csim_results.log", *VENDOR_OUTPUTS)}


def _lookup(dump: dict, key: str):
    node = dump
    for part in key.split("."):
        node = node[part]
    return node


def _drop(dump: dict, key: str) -> None:
    *parents, last = key.split(".")
    node = dump
    for part in parents:
        node = node[part]
    node.pop(last, None)


def config_values(cfg: RunConfig, name: str) -> dict:
    """The config values stage `name` reads: {key: value}, exclusions applied."""
    keys = STAGES[name].reads(cfg)
    dump = cfg.model_dump(mode="json")
    chosen = {k: json.loads(json.dumps(_lookup(dump, k))) for k in keys if not k.startswith("-")}
    for k in keys:
        if k.startswith("-"):
            key = k[1:]
            section = next((s for s in chosen if key.startswith(s + ".")), None)
            if section is None:
                raise KeyError(f"stage {name}: exclusion {key} is not inside a section it reads")
            _drop(chosen[section], key[len(section) + 1:])
    return chosen


def file_digest(path: Path) -> str:
    """sha256 of a file (or of a tree: its files' relative paths and digests, sorted)."""
    path = Path(path)
    if path.is_dir():
        return tree_digest(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path, ignore: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() or q.is_symlink()):
        rel = p.relative_to(root).as_posix()
        if any(rel == i or (i.endswith("/") and rel.startswith(i)) for i in ignore):
            continue
        h.update(rel.encode() + b"\0" + file_digest(p).encode() + b"\n")
    return h.hexdigest()


def output_digest(folder: Path, output: str) -> str:
    path = folder / output
    if output.endswith("/"):
        return tree_digest(path, TREE_IGNORE.get(output, ()))
    return file_digest(path)


def input_digests(cfg: RunConfig, run_dir: Path, name: str) -> dict[str, str]:
    """Digests of everything stage `name` reads from files: its input stages' recorded
    output digests, and each external file's own digest ('absent' if it does not exist)."""
    out = {}
    for up in STAGES[name].inputs(cfg):
        try:
            recorded = read_json(run_dir / up / "summary.json").get("output_digests", {})
        except (OSError, ValueError):
            recorded = {}
        for f in STAGES[up].outputs:
            out[f"{up}/{f}"] = recorded.get(f, "missing")
    for f in STAGES[name].external(cfg):
        p = Path(f)
        try:        # files inside the run by their place in it: a moved run stays current
            key = "run:" + p.relative_to(run_dir).as_posix()
        except ValueError:
            key = str(p)
        out[key] = file_digest(p) if p.exists() else "absent"
    return out


def config_hash(cfg: RunConfig, name: str) -> str:
    return hashlib.sha256(json.dumps(config_values(cfg, name), sort_keys=True).encode()).hexdigest()


def stage_hash(cfg: RunConfig, run_dir: Path, name: str) -> str:
    h = hashlib.sha256(config_hash(cfg, name).encode())
    h.update(json.dumps(input_digests(cfg, run_dir, name), sort_keys=True).encode())
    return h.hexdigest()[:16]


def is_current(cfg: RunConfig, run_dir: Path, name: str) -> bool:
    """Outputs exist, are what the stage wrote, and were made from the current config and
    the current versions of everything the stage reads."""
    folder = run_dir / name
    stage = STAGES[name]
    if any(not is_current(cfg, run_dir, up) for up in stage.inputs(cfg)):
        return False
    try:
        summary = read_json(folder / "summary.json")
        result = stage.result.from_json(summary)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if summary.get("stage_hash") != stage_hash(cfg, run_dir, name) or result.check_passed is False:
        return False
    recorded = summary.get("output_digests", {})
    for f in stage.outputs:
        path = folder / f
        if not path.exists():
            return False
        if f not in recorded or output_digest(folder, f) != recorded[f]:
            log.warning("%s: %s differs from what the stage wrote (corrupted or replaced): the stage is not current", name, path)
            return False
    return True


#: marks a stage's work folder with the hash it is being built for
WORK_MARKER = ".building"


def work_folder(run_dir: Path, name: str) -> Path:
    """Where stage `name` builds its outputs before they take the stage's name."""
    return run_dir / f".{name}.partial"


def _open_work_folder(run_dir: Path, name: str, h: str) -> Path:
    """The work folder of this stage hash: kept from a killed run of the same configuration
    (its checkpoints let training resume), wiped when it was begun for another one."""
    work = work_folder(run_dir, name)
    marker = work / WORK_MARKER
    if work.exists() and (not marker.is_file() or marker.read_text() != h):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(h)
    return work


def run_stage(cfg: RunConfig, run_dir: Path, name: str, progress: bool = True) -> StageResult:
    """Run one stage (its input stages must be current) and record its result and digests.

    The body writes into the stage's work folder; the summary (stage hash, input and output
    digests) is written last, then the folder is renamed into place."""
    stage = STAGES[name]
    missing = [up for up in stage.inputs(cfg) if not is_current(cfg, run_dir, up)]
    if missing:
        raise StageOrderError(f"stage '{name}' needs up-to-date outputs of: {', '.join(missing)} "
                              f"(run `econ-emd {STAGES[missing[0]].command}` or `econ-emd pipeline`)")
    h = stage_hash(cfg, run_dir, name)
    inputs = input_digests(cfg, run_dir, name)
    work = _open_work_folder(run_dir, name, h)
    ctx = StageContext(cfg, run_dir, work, progress)
    result = stage.run(ctx)
    summary = result.to_json()
    summary["stage_hash"] = h
    summary["input_digests"] = inputs
    summary["output_digests"] = {f: output_digest(work, f) for f in stage.outputs if (work / f).exists()}
    (work / WORK_MARKER).unlink()
    atomic_write_json(work / "summary.json", summary)
    pause_for_test(f"before-swap:{name}")     # the last moment before the outputs get their name
    final = run_dir / name
    replace_tree(work, final)
    if result.check_passed is False:
        raise CheckFailed(f"stage '{name}': check failed (see {final})")
    return result


def run_pipeline(cfg: RunConfig, run_dir: Path, force: bool = False, progress: bool = True) -> None:
    """Every enabled stage in order, skipping up-to-date ones unless `force`."""
    from econ_emd.firmware import rtl_warmup

    if STAGES["rtl"].enabled(cfg) and (force or not is_current(cfg, run_dir, "rtl")):
        rtl_warmup.start()      # da4ml's first-use JIT compile, beside the training stages
    try:
        for name, stage in STAGES.items():
            if not stage.enabled(cfg):
                log.info("%s: disabled in the config, skipped", name)
                continue
            if not force and is_current(cfg, run_dir, name):
                log.info("%s: up to date, skipped", name)
                continue
            run_stage(cfg, run_dir, name, progress)
    finally:
        rtl_warmup.stop()


def load_results(run_dir: Path) -> dict[str, StageResult]:
    """The result of every stage present in a run directory."""
    results = {}
    for name, stage in STAGES.items():
        r = stage.result.load(run_dir / name)
        if r is not None:
            results[name] = r
    return results


def command_stage(command: str) -> str:
    return next(name for name, s in STAGES.items() if s.command == command)
