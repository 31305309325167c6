"""The pipeline's one stage registry: what each stage is called, reads, needs and writes,
and the one way any work of the product is built and checked.

Each `Stage` declares its CLI command and help, the config keys its outputs depend on
(`reads`), the stages whose outputs it reads (`inputs`), files outside the run it reads
(`external`), its outputs, its body, its result type and a preparation to run beside the
stages before it (`prepare`). Everything else derives from it: the CLI's subcommands, the
order of `pipeline`, the run report, a stage's hash and its currency.

A stage's hash is made of exactly the config values it reads and the digests of the files
it reads: the recorded output digests of its input stages (which `is_current` re-verifies),
and the digest of each external file. So a stage reruns when, and only when, something it
reads changed; a repaired or rewritten input reruns everything downstream of it. Settings
that change how a stage runs but not what it writes (workers, chunk size, cache, progress)
are not part of any hash.

Work that is not a pipeline stage is built the same way: a scan point is a `Stage`
(`SCAN_POINT`) hashed from its own config (the run's, with the point's encoder) and
built in a folder of its own (`build_unit`, `unit_current`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

from econ_emd.base.artifacts import atomic_write_json, building, json_text, work_folder
from econ_emd.base.digests import file_digest, tree_digest
from econ_emd.base.errors import CheckFailed, ConfigError, StageOrderError
from econ_emd.base.integrity import sign_document
from econ_emd.firmware.reports import VENDOR_OUTPUTS
from econ_emd.training.losses import LOSS_SETTINGS, LOSSES, NEEDS_EMD_CNN, loss_settings

from .config import RunConfig
from .stages import asic, compare_econt, compare_losses, data, firmware, training
from .stages.result import (CACHE_DIR, ECONT_FIRMWARE_DIR, NEEMO_DIR, SCAN_DIR, SUMMARY_FILE, StageContext,
                            StageResult, read_summary)

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
    #: started before the pipeline's first stage when this stage will run, ended after the
    #: last (e.g. a background compile the stage would otherwise wait for)
    prepare: Callable[[RunConfig], ContextManager] | None = None
    #: `pipeline` may run it in a child process beside the main sequence as soon as its
    #: inputs are done (firmware work: single-threaded tools, da4ml, compilers, Yosys, on
    #: the core the trainings leave idle: a training keeps about one of two busy)
    beside: bool = False
    #: whether a child process may start it now (the rtl stages: da4ml's solver compiled)
    ready: Callable[[], bool] = lambda: True


def _keys(*keys: str) -> Keys:
    return lambda cfg: keys


def _loss_exclusions(losses) -> list[str]:
    """The encoder settings only other losses read: not part of the hash of these."""
    used = set(loss_settings(losses))
    return [f"-encoder.{k}" for k in LOSS_SETTINGS if k not in used]


def _encoder_reads(cfg: RunConfig) -> tuple[str, ...]:
    return ("seed", "encoder", "emd.solver", *_loss_exclusions([cfg.encoder.loss]))


def _compare_losses_reads(cfg: RunConfig) -> tuple[str, ...]:
    return ("seed", "encoder", "compare_losses", "emd.solver",
            *_loss_exclusions(compare_losses.losses_trained(cfg)))


def _needs_emd_cnn(cfg: RunConfig, losses) -> tuple[str, ...]:
    """The run's emd_cnn stage, when a loss needs an EMD-CNN and no file stands in for it."""
    return ("emd_cnn",) if NEEDS_EMD_CNN & set(losses) and not cfg.encoder.emd_cnn_path else ()


def _emd_cnn_files(cfg: RunConfig, losses) -> tuple[str, ...]:
    return (cfg.encoder.emd_cnn_path,) if NEEDS_EMD_CNN & set(losses) and cfg.encoder.emd_cnn_path else ()


def _encoder_inputs(cfg: RunConfig) -> tuple[str, ...]:
    return ("data", *_needs_emd_cnn(cfg, [cfg.encoder.loss]))


def _compare_losses_inputs(cfg: RunConfig) -> tuple[str, ...]:
    reuse = ("encoder",) if compare_losses.reuses_encoder_stage(cfg) else ()
    return ("data", *_needs_emd_cnn(cfg, compare_losses.losses_trained(cfg)), *reuse)


def _compare_losses_external(cfg: RunConfig) -> tuple[str, ...]:
    return (*_emd_cnn_files(cfg, compare_losses.losses_trained(cfg)), *cfg.compare_losses.emd_cnn_files)


def _compare_econt_reads(cfg: RunConfig) -> tuple[str, ...]:
    """Its own section and the EMD solver; training encoders at other link counts also reads
    what the encoder stage reads."""
    keys = ["seed", "compare_econt", "emd.solver"]
    if cfg.compare_econt.train_encoders:
        keys += [k for k in _encoder_reads(cfg) if k not in ("seed", "emd.solver")]
    return tuple(keys)


def _compare_econt_inputs(cfg: RunConfig) -> tuple[str, ...]:
    extra = _needs_emd_cnn(cfg, [cfg.encoder.loss]) if cfg.compare_econt.train_encoders else ()
    return ("data", "encoder", *extra)


def _run_encoder(cfg: RunConfig) -> tuple[str, ...]:
    """The run's own encoder stage, unless --encoder / firmware.encoder_path names a file."""
    return () if cfg.firmware.encoder_path else ("encoder",)


def _external_encoder(cfg: RunConfig) -> tuple[str, ...]:
    return (cfg.firmware.encoder_path,) if cfg.firmware.encoder_path else ()


def _vendor_reports(cfg: RunConfig) -> tuple[str, ...]:
    project = Path(cfg.run_dir) / "firmware" / "hls_project"   # cfg.run_dir: --run-dir applied
    return tuple(str(project / p.rstrip("/")) for p in VENDOR_OUTPUTS)


def _rtl_warmup(cfg: RunConfig) -> ContextManager:
    from econ_emd.firmware import rtl_warmup

    return rtl_warmup.warming()


def _rtl_warmed() -> bool:
    from econ_emd.firmware import rtl_warmup

    return rtl_warmup.finished()


#: the firmware keys that shape an HLS project (the firmware stage also reads the size of
#: its check data and the encoder file; the budget and the tolerance are later stages')
HLS_KEYS = ("firmware.backend", "firmware.io_type", "firmware.strategy", "firmware.reuse_factor",
            "firmware.part", "firmware.clock_period_ns")
#: the RTL keys that shape the Verilog, its simulation and synthesis
RTL_KEYS = ("firmware.part", "firmware.clock_period_ns", "rtl", "-rtl.enabled")
#: the key only the decoder stage reads (the encoder's RTL and the scan's points do not)
DECODER_SYNTHESIS = "rtl.synthesize_decoder"
ENCODER_OPTION = CliOption("--encoder", "firmware.encoder_path", "a QKeras encoder .h5 instead of the run's", "H5")
EMD_CNN_OPTION = CliOption("--emd-cnn", "encoder.emd_cnn_path",
                           "a frozen EMD-CNN (.h5: ours, or the published two-input format) as the emd_cnn loss", "H5")

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("data", "data", "generate or load the modules and write the train/val/test split",
          _keys("seed", "data"), _keys(), ("modules.h5",), data.run_data, data.DataResult,
          external=lambda cfg: tuple(p for p in (cfg.data.path, cfg.data.econt_config,
                                                 cfg.data.detector.allocation_path) if p and Path(p).is_file())),
    Stage("label", "label", "exact EMD labels for random and perturbed module pairs",
          _keys("seed", "label", "emd.solver"), _keys("data"), ("labels.h5",),
          data.run_label, data.LabelResult),
    Stage("emd_cnn", "train-emd-cnn", "train, freeze and evaluate the EMD-CNN on the exact labels",
          _keys("seed", "emd_cnn"), _keys("label"), ("emd_cnn.h5", "emd_cnn.json", "emd_cnn_pred_vs_exact.png"),
          training.run_emd_cnn, training.EmdCnnResult),
    Stage("encoder", "train-encoder", "quantization-aware training of the ECON-T encoder, judged by exact EMD",
          _encoder_reads, _encoder_inputs,
          ("encoder.h5", "decoder.h5", "emd.npy", "run.json", "settings.json", "emd_vs_occupancy.png"),
          training.run_encoder, training.EncoderResult,
          external=lambda cfg: _emd_cnn_files(cfg, [cfg.encoder.loss]),
          options=(CliOption("--loss", "encoder.loss", "training loss (default: the config's encoder.loss)",
                             choices=tuple(LOSSES)), EMD_CNN_OPTION)),
    Stage("compare_losses", "compare-losses",
          "train the encoder with every loss, on the same split and seeds, and compare by exact EMD",
          _compare_losses_reads, _compare_losses_inputs, ("compare_losses.md", "emd_vs_occupancy.png"),
          compare_losses.run_compare_losses, compare_losses.CompareLossesResult,
          external=_compare_losses_external, options=(EMD_CNN_OPTION,)),
    Stage("compare_econt", "compare-econt",
          "the encoder against ECON-T's best choice, STC and threshold sum at equal output bandwidth",
          _compare_econt_reads, _compare_econt_inputs, ("compare_econt.md", "compare_econt.png"),
          compare_econt.run_compare_econt, compare_econt.CompareEcontResult,
          enabled=lambda cfg: cfg.compare_econt.enabled),
    Stage("firmware", "firmware", "convert the encoder with hls4ml into an HLS project (vendor build when found)",
          # seed and data.synthetic: the synthetic modules that top up a short test split
          _keys("seed", "data.synthetic", "firmware", "-firmware.budget", "-firmware.tolerance_lsb"),
          lambda cfg: ("data", "encoder") if not cfg.firmware.encoder_path else (),
          ("hls_project/", "tb_inputs.npy", "tb_expected.npy"),
          firmware.run_firmware, firmware.FirmwareResult,
          external=lambda cfg: (*_external_encoder(cfg),
                                *((str(Path(cfg.run_dir) / "data" / "modules.h5"),) if cfg.firmware.encoder_path else ())),
          options=(ENCODER_OPTION,), beside=True),
    Stage("csim", "csim", "C simulation of the HLS project with g++: bit-accuracy against QKeras",
          _keys("firmware.tolerance_lsb"), _keys("firmware"), ("csim.md",),
          firmware.run_csim, firmware.CsimResult, options=(ENCODER_OPTION,), beside=True),
    Stage("rtl", "rtl", "vendor-free RTL: da4ml Verilog, Verilator bit-accuracy and latency, Yosys resources",
          _keys(*RTL_KEYS, f"-{DECODER_SYNTHESIS}", "firmware.tolerance_lsb"),
          lambda cfg: ("firmware", *_run_encoder(cfg)), ("verilog/", "rtl.md"),
          firmware.run_rtl, firmware.RtlResult, external=_external_encoder,
          enabled=lambda cfg: cfg.rtl.enabled, options=(ENCODER_OPTION,), prepare=_rtl_warmup, beside=True,
          ready=_rtl_warmed),
    Stage("export", "export",
          "the asic encoder's ECON-T configuration at every trained link count, proven on the emulator's packets",
          _keys("seed", "data.synthetic", "firmware.n_check"),
          lambda cfg: ("data", "encoder", *(("compare_econt",) if cfg.compare_econt.enabled
                                            and cfg.compare_econt.train_encoders else ())),
          (f"{asic.CONFIG_DIR}/",), asic.run_export, asic.ExportStageResult,
          enabled=lambda cfg: cfg.encoder.kind == "asic"),
    Stage("decoder", "decoder",
          "the asic encoder's decoder on the back-end FPGA: hls4ml, C simulation, RTL, Yosys, FPGA capacity",
          _keys("firmware.n_check", "firmware.tolerance_lsb", *HLS_KEYS, *RTL_KEYS), _keys("data", "encoder"),
          ("hls_project/", "verilog/", "decoder.md"), asic.run_decoder, asic.DecoderResult,
          enabled=lambda cfg: cfg.encoder.kind == "asic", prepare=_rtl_warmup, beside=True, ready=_rtl_warmed),
    Stage("resources", "resources", "resource and latency figures (vendor, Yosys, exact counts) and budget checks",
          _keys("firmware.budget", "firmware.clock_period_ns", "rtl.enabled"),
          lambda cfg: ("firmware", *(("rtl",) if cfg.rtl.enabled else ()), *_run_encoder(cfg)), ("resources.md",),
          firmware.run_resources, firmware.ResourcesResult,
          external=lambda cfg: (*_external_encoder(cfg), *_vendor_reports(cfg)),
          options=(ENCODER_OPTION,)),
)}


def _scan_point_reads(cfg: RunConfig) -> tuple[str, ...]:
    """A scan point is the encoder stage's training at the point's settings, then the
    firmware flow: it reads what those read, and the scan's own check settings."""
    return (*_encoder_reads(cfg), *HLS_KEYS, *RTL_KEYS, f"-{DECODER_SYNTHESIS}", "scan.n_check", "scan.synthesize")


#: a point of `econ-emd scan` (econ_emd/scan.py): not a pipeline stage, built and checked
#: like one, from the run's config with the point's encoder settings
SCAN_POINT = Stage("scan_point", "scan", "one point of the design-space scan", _scan_point_reads, _encoder_inputs,
                   ("encoder/", "verilog/"), run=lambda ctx: None, result=StageResult,
                   external=lambda cfg: _emd_cnn_files(cfg, [cfg.encoder.loss]))

#: files a later step writes into a stage's tree, not part of that tree's digest (entries
#: ending in "/" are folders): the C simulation's binary and log live in the HLS project it
#: simulates, and a vendor build (run by the firmware stage, or elsewhere and copied in)
#: writes its reports there; the resources stage reads those as its own inputs
TREE_IGNORE = {"hls_project/": ("csim_tb", "tb_data/csim_results.log", *VENDOR_OUTPUTS)}


def _stage(stage: Stage | str) -> Stage:
    return stage if isinstance(stage, Stage) else STAGES[stage]


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


def config_values(cfg: RunConfig, stage: Stage | str) -> dict:
    """The config values a stage reads: {key: value}, exclusions applied (a key inside a
    section already read is not repeated)."""
    s = _stage(stage)
    keys = s.reads(cfg)
    dump = cfg.model_dump(mode="json")
    chosen: dict = {}
    for k in keys:
        if k.startswith("-") or any(k.startswith(c + ".") for c in chosen):
            continue
        chosen[k] = json.loads(json.dumps(_lookup(dump, k)))
    for k in keys:
        if k.startswith("-"):
            key = k[1:]
            section = next((c for c in chosen if key.startswith(c + ".")), None)
            if section is None:
                raise KeyError(f"stage {s.name}: exclusion {key} is not inside a section it reads")
            _drop(chosen[section], key[len(section) + 1:])
    return chosen


def output_digest(folder: Path, output: str) -> str:
    path = folder / output
    if output.endswith("/"):
        return tree_digest(path, TREE_IGNORE.get(output, ()))
    return file_digest(path)


def input_digests(cfg: RunConfig, run_dir: Path, stage: Stage | str) -> dict[str, str]:
    """Digests of everything a stage reads from files: its input stages' recorded output
    digests, and each external file's own digest ('absent' if it does not exist)."""
    s = _stage(stage)
    out = {}
    for up in s.inputs(cfg):
        recorded = (read_summary(run_dir / up) or {}).get("output_digests")
        if not isinstance(recorded, dict):
            recorded = {}
        for f in STAGES[up].outputs:
            out[f"{up}/{f}"] = recorded.get(f, "missing")
    for f in s.external(cfg):
        p = Path(f)
        try:        # files inside the run by their place in it: a moved run stays current
            key = "run:" + p.relative_to(run_dir).as_posix()
        except ValueError:
            key = str(p)
        out[key] = file_digest(p) if p.exists() else "absent"
    return out


def config_hash(cfg: RunConfig, stage: Stage | str) -> str:
    return hashlib.sha256(json.dumps(config_values(cfg, stage), sort_keys=True).encode()).hexdigest()


def stage_hash(cfg: RunConfig, run_dir: Path, stage: Stage | str) -> str:
    h = hashlib.sha256(config_hash(cfg, stage).encode())
    h.update(json.dumps(input_digests(cfg, run_dir, stage), sort_keys=True).encode())
    return h.hexdigest()[:16]


def unit_current(cfg: RunConfig, run_dir: Path, stage: Stage | str, folder: Path) -> bool:
    """The unit built in `folder` is there, is what was written (the digest of every output
    matches its summary), and was made from the current config values and inputs; its
    input stages are current too."""
    s = _stage(stage)
    if any(not is_current(cfg, run_dir, up) for up in s.inputs(cfg)):
        return False
    summary = read_summary(folder)           # signed by the product, or not trusted at all
    if summary is None:
        return False
    try:
        result = s.result.from_json(summary)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if summary.get("stage_hash") != stage_hash(cfg, run_dir, s) or result.check_passed is False:
        return False
    recorded = summary.get("output_digests")
    if not isinstance(recorded, dict):
        return False
    for f in s.outputs:
        path = folder / f
        if not path.exists():
            return False
        if f not in recorded or output_digest(folder, f) != recorded[f]:
            log.warning("%s: %s differs from what was written (corrupted or replaced): not current", s.name, path)
            return False
    return True


def is_current(cfg: RunConfig, run_dir: Path, name: str) -> bool:
    """Stage `name`'s outputs exist, are what the stage wrote, and were made from the current
    config and the current versions of everything the stage reads."""
    return unit_current(cfg, run_dir, name, run_dir / name)


def build_unit(cfg: RunConfig, run_dir: Path, stage: Stage | str, folder: Path,
               body: Callable[[Path], StageResult]) -> StageResult:
    """Build a unit (a stage, a scan point) into `folder`: its input stages must be current;
    the body writes into the work folder (`base.artifacts.building`: kept from a killed run
    of the same hash, so training resumes; wiped when begun for another); the summary
    (hash, input and output digests) is written last, then the folder takes its name."""
    s = _stage(stage)
    missing = [up for up in s.inputs(cfg) if not is_current(cfg, run_dir, up)]
    if missing:
        raise StageOrderError(f"stage '{s.name}' needs up-to-date outputs of: {', '.join(missing)} "
                              f"(run `econ-emd {STAGES[missing[0]].command}` or `econ-emd pipeline`)")
    refuse_inputs_inside(cfg, {s.name: folder})
    h = stage_hash(cfg, run_dir, s)
    inputs = input_digests(cfg, run_dir, s)
    with building(folder, h, pause=f"before-swap:{s.name}") as work:
        try:
            result = body(work)
        except OSError as exc:    # a write refused where no file was named (a library's write): name the unit
            if exc.filename is None and exc.errno is not None:
                raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from None
            raise
        summary = result.to_json()
        summary["stage_hash"] = h
        summary["input_digests"] = inputs
        summary["output_digests"] = {f: output_digest(work, f) for f in s.outputs if (work / f).exists()}
        # signed in the form a reader gets back (plain JSON values: numpy numbers converted)
        atomic_write_json(work / SUMMARY_FILE, sign_document(json.loads(json_text(summary))))
    return result


def run_stage(cfg: RunConfig, run_dir: Path, name: str, progress: bool = True) -> StageResult:
    """Run one stage (its input stages must be current) and record its result and digests."""
    from . import sizes

    stage = STAGES[name]
    final = run_dir / name
    sizes.check(cfg, run_dir, [name])
    result = build_unit(cfg, run_dir, stage, final,
                        lambda work: stage.run(StageContext(cfg, run_dir, work, progress)))
    if result.check_passed is False:
        raise CheckFailed(f"stage '{name}': check failed (see {final})")
    return result


def stages_to_run(cfg: RunConfig, run_dir: Path, force: bool = False) -> list[str]:
    """The enabled stages `pipeline` would run, in order: all with `force`, else those not
    current (a stage after a rerun one is rerun too if it reads it: its inputs change)."""
    return [name for name, s in STAGES.items() if s.enabled(cfg) and (force or not is_current(cfg, run_dir, name))]


def run_pipeline(cfg: RunConfig, run_dir: Path, force: bool = False, progress: bool = True) -> None:
    """Every enabled stage in order, skipping up-to-date ones unless `force`; the stages
    that will run are prepared first (`Stage.prepare`), beside the earlier stages. Before
    the first, no input the user named may lie in a folder one of them replaces.

    The `beside` stages (the firmware work) run in one child process at a time, started as
    soon as their inputs are done, in order, beside the main sequence (on 2 cores the
    trainings keep about one busy); a stage that reads one waits for it, and so does the
    end of the pipeline, which raises its error if it failed. A beside stage not started
    by its turn runs in the main sequence. Each stage builds in its own work folder and
    lands whole or not at all, whichever process runs it."""
    from . import sizes

    order = stages_to_run(cfg, run_dir, force)
    todo = set(order)
    refuse_inputs_inside(cfg, {name: run_dir / name for name in todo})
    sizes.check(cfg, run_dir, order)
    pending = list(order)
    with contextlib.ExitStack() as preparations, _BesideStages(cfg, run_dir) as beside:
        for name in STAGES:
            if name in todo and STAGES[name].prepare is not None:
                preparations.enter_context(STAGES[name].prepare(cfg))
        for name, stage in STAGES.items():
            if not stage.enabled(cfg):
                log.info("%s: disabled in the config, skipped", name)
                continue
            if name not in todo:
                log.info("%s: up to date, skipped", name)
                continue
            beside.collect_finished()
            if not beside.running:
                group = _beside_group(cfg, pending, beside)
                if group:
                    beside.start(group)
            if name not in beside:
                beside.wait_for(set(stage.inputs(cfg)))
                run_stage(cfg, run_dir, name, progress)
            pending.remove(name)
        beside.wait_for(set(STAGES))


def _beside_group(cfg: RunConfig, pending: list[str], beside: "_BesideStages") -> list[str]:
    """The beside stages a child process can run now, in order: each ready, not started,
    and reading no stage still to run other than the group's earlier ones."""
    group: list[str] = []
    for n in pending:
        s = STAGES[n]
        if (s.beside and n not in beside and s.ready()
                and not set(s.inputs(cfg)) & (set(pending) - set(group))):
            group.append(n)
    return group


class _BesideStages:
    """The stages `run_pipeline` runs in a child process (`python -m econ_emd.beside`: a
    fresh interpreter, no TensorFlow state shared, nothing of the caller's script run
    again), which leaves its error in a file for the parent to raise. The child dies with
    its parent (a SIGKILLed pipeline leaves no writer behind); on leaving (an error or
    Ctrl-C here) a child still running is stopped. Its work folders are swept or resumed
    by the next run."""

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        self.running: list[tuple] = []          # (process, its stages, its error file)
        self.started: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.started

    def __enter__(self) -> "_BesideStages":
        return self

    def start(self, stages: list[str]) -> None:
        import subprocess
        import sys
        import tempfile

        fd, error_file = tempfile.mkstemp(prefix="econ-emd-beside-", suffix=".json")
        os.close(fd)
        request = {"config": self.cfg.model_dump(mode="json"), "run_dir": str(self.run_dir), "stages": stages,
                   "level": logging.getLogger("econ_emd").getEffectiveLevel(),
                   "verbose": logging.getLogger().getEffectiveLevel() < logging.WARNING, "error_file": error_file}
        proc = subprocess.Popen([sys.executable, "-m", "econ_emd.beside"], stdin=subprocess.PIPE, text=True,
                                preexec_fn=_die_with_parent if os.name == "posix" else None)
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
        log.info("%s: running in a child process (pid %d) beside the next stages", ", ".join(stages), proc.pid)
        self.running.append((proc, set(stages), Path(error_file)))
        self.started.update(stages)

    def wait_for(self, names: set[str]) -> None:
        """Wait for the child running any of `names`; raise its error."""
        from econ_emd.base.errors import error_from_record

        for entry in [e for e in self.running if e[1] & names]:
            self.running.remove(entry)
            proc, stages, error_file = entry
            code = proc.wait()
            try:
                error = error_from_record(json.loads(error_file.read_text())) if error_file.stat().st_size else None
            except (OSError, ValueError):
                error = None
            error_file.unlink(missing_ok=True)
            if error is None and code != 0:
                error = RuntimeError(f"stages {', '.join(sorted(stages))}: their process ended with exit code {code}")
            if error is not None:
                raise error

    def collect_finished(self) -> None:
        """Take in (and raise the error of) a child that has ended."""
        for _, stages, _ in [e for e in self.running if e[0].poll() is not None]:
            self.wait_for(stages)

    def __exit__(self, *exc) -> None:
        for proc, _, error_file in self.running:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
            error_file.unlink(missing_ok=True)
        self.running.clear()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


#: the run directory's top-level files (the run report)
RUN_FILES = ("report.md", "report.json")


def unit_folders() -> tuple[str, ...]:
    """The folders of a run directory whose entries are units built with `building` (the
    scan's points, `econt firmware`'s reports): the only places, beside the top level, where
    a swap's `.<unit>.old` folder can be the product's."""
    return (SCAN_DIR, ECONT_FIRMWARE_DIR)


def product_folders() -> tuple[str, ...]:
    """Every folder of a run directory the product owns (`base.rundir.sweep_debris` looks
    nowhere else): the stages', the unit folders, NEEMo's results and the caches."""
    return (*STAGES, *unit_folders(), NEEMO_DIR, CACHE_DIR)


def user_paths(cfg: RunConfig) -> list[tuple[str, str]]:
    """(key, path) of every file or folder the config names that the product reads (or,
    for the cache, keeps) and never replaces."""
    out = [(k, v) for k, v in (("data.path", cfg.data.path), ("data.econt_config", cfg.data.econt_config),
                               ("data.detector.allocation_path", cfg.data.detector.allocation_path),
                               ("firmware.encoder_path", cfg.firmware.encoder_path),
                               ("encoder.emd_cnn_path", cfg.encoder.emd_cnn_path),
                               ("emd.cache_dir", cfg.emd.cache_dir)) if v]
    out += [(f"compare_losses.emd_cnn_files[{i}]", f) for i, f in enumerate(cfg.compare_losses.emd_cnn_files)]
    return out


def refuse_inputs_inside(cfg: RunConfig, folders: dict[str, Path]) -> None:
    """Refuse, before anything is replaced, a path the user named (`user_paths`) inside a
    folder the command is about to rebuild (`folders`: unit name -> folder; its work folder
    and swap folder count too): the rebuild would delete it."""
    for name, folder in folders.items():
        roots = [Path(os.path.realpath(p)) for p in (folder, work_folder(folder),
                                                     folder.with_name(f".{folder.name}.old"))]
        for key, value in user_paths(cfg):
            real = Path(os.path.realpath(value))
            if any(real == r or real.is_relative_to(r) for r in roots):
                raise ConfigError(f"{key} {value}: inside the folder of '{name}' ({folder}), which this command "
                                  "rebuilds and replaces; move it out of the run folder")


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
