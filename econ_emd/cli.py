"""`econ-emd`: one command, a subcommand per stage, and `pipeline` for all of them.

Exit codes: 0 success; 1 a check failed; 2 a usage, config or input-data error (the
message names the file, key, row or column); 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__

log = logging.getLogger("econ_emd")

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PIPELINE_ORDER = ("data", "label", "emd_cnn", "encoder", "compare", "firmware", "csim", "rtl", "report")
#: CLI command of each stage
COMMANDS = {"data": "data", "label": "label", "emd_cnn": "train-emd-cnn", "encoder": "train-encoder",
            "compare": "compare-losses", "firmware": "firmware", "csim": "csim", "rtl": "rtl", "report": "report"}

STAGE_HELP = {
    "data": "generate or load the modules and write the train/val/test split",
    "label": "exact EMD labels for random and perturbed module pairs",
    "emd_cnn": "train, freeze and evaluate the EMD-CNN on the exact labels",
    "encoder": "quantization-aware training of the ECON-T encoder, judged by exact EMD",
    "compare": "train the encoder with every loss on the same split and compare by exact EMD",
    "firmware": "convert the encoder with hls4ml into an HLS project (vendor build when found)",
    "csim": "C simulation of the HLS project with g++: bit-accuracy against QKeras",
    "rtl": "vendor-free RTL: da4ml Verilog, Verilator bit-accuracy and latency, Yosys resources",
    "report": "resource/latency report (vendor, Yosys, exact counts) and budget checks",
}


_NEVER_CHATTY = ("numba", "matplotlib", "PIL", "fsspec", "asyncio")


def _quiet_libraries() -> None:
    """No TensorFlow/Keras chatter (start-up banners, retracing notes, HDF5 format
    warnings) unless --verbose."""
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("tensorflow", "absl", "h5py", "matplotlib", "distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="YAML", default=None,
                   help="run configuration (default: configs/default.yaml)")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="override the config's run_dir")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set data.n_modules=5000 (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--verbose", "-v", action="store_true", help="debug logging, library logs")
    g.add_argument("--quiet", "-q", action="store_true", help="errors only, no progress bars (bars show on a terminal only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="econ-emd",
        description="HGCAL ECON-T compression trained with a differentiable Earth Mover's Distance.")
    parser.add_argument("--version", action="version", version=f"econ-emd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in PIPELINE_ORDER:
        p = sub.add_parser(COMMANDS[name], help=STAGE_HELP[name], description=STAGE_HELP[name])
        _common(p)
        if name in ("firmware", "csim", "rtl", "report"):
            p.add_argument("--encoder", metavar="H5", help="a QKeras encoder .h5 instead of the run's")
        if name == "encoder":
            p.add_argument("--loss", choices=("emd_cnn", "mse", "wmse", "telescope", "sinkhorn"),
                           help="training loss (default: the config's encoder.loss)")
    p = sub.add_parser("pipeline", help="run every stage in order, skipping up-to-date ones",
                       description="Run every stage in order; stages whose outputs match the "
                                   "config are skipped. --force reruns them all.")
    _common(p)
    p.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    from .neemo_cmd import add_parser as add_neemo

    add_neemo(sub)
    p = sub.add_parser("show-config", help="print the validated config with all defaults")
    _common(p)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # our messages at `level`; other libraries' (QKeras logs on the root logger) at INFO only when
    # verbose, and never the compilers' internals (numba's debug log is thousands of lines of IR
    # per traced function; matplotlib's scores every font)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)  # basicConfig keeps an existing root
    log.setLevel(level)
    for name in _NEVER_CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not args.verbose:
        _quiet_libraries()


def _run(args: argparse.Namespace) -> int:
    from .config import dump_config, load_config
    from .stages import is_current, run_stage

    overrides = list(args.overrides)
    if getattr(args, "loss", None):
        overrides.append(f"encoder.loss={args.loss}")
    if getattr(args, "encoder", None):
        overrides.append(f"firmware.encoder_path={args.encoder}")
    cfg = load_config(args.config, overrides)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.command == "show-config":
        print(dump_config(cfg), end="")
        return EXIT_OK
    run_dir = Path(cfg.run_dir)
    # bars on a terminal only: in a log file each refresh is another carriage-return run
    progress = not args.quiet and sys.stderr.isatty()
    if args.command == "neemo":
        from .neemo_cmd import run_estimate, run_fit

        (run_estimate if args.neemo_command == "estimate" else run_fit)(cfg, args, progress)
        return EXIT_OK
    if args.command == "pipeline":
        from firmware import rtl_warmup

        if cfg.rtl.enabled and (args.force or not is_current(cfg, run_dir, "rtl")):
            rtl_warmup.start()      # da4ml's first-use JIT compile, beside the training stages
        try:
            for name in PIPELINE_ORDER:
                if name == "rtl" and not cfg.rtl.enabled:
                    log.info("rtl: disabled (rtl.enabled: false), skipped")
                    continue
                if not args.force and is_current(cfg, run_dir, name):
                    log.info("%s: up to date, skipped", name)
                    continue
                run_stage(cfg, run_dir, name, progress)
        finally:
            rtl_warmup.stop()
        from . import run_report

        log.info("pipeline done: read %s", run_report.write(run_dir))
    else:
        stage = next(k for k, v in COMMANDS.items() if v == args.command)
        run_stage(cfg, run_dir, stage, progress)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    from training.loaders import DataError

    from training.artifacts import ModelFileError

    from firmware.rtl_sim import RtlToolError

    from .config import ConfigError
    from .stages import CheckFailed, StageOrderError

    try:
        return _run(args)
    except (ConfigError, DataError, StageOrderError, ModelFileError, RtlToolError) as exc:
        print(f"econ-emd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CheckFailed as exc:
        print(f"econ-emd: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        print("econ-emd: interrupted; completed stages are kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
