"""`econ-emd`: one command, a subcommand per stage (from the registry), `pipeline` for all
of them, `report`, `scan`, `neemo estimate|fit`, `econt run|verify|firmware|export` and
`show-config`. This module only parses and dispatches.

Options mean one thing everywhere: `-c/--config` is the run configuration (YAML),
`--run-dir` the run directory every default output goes under, `-o/--output` an output
file or folder, `-i/--input` an input file.

Exit codes: 0 success; 1 a check failed; 2 a usage, config, input-data or tool error (the
message names the file, key, row or column), or the run directory is in use; 3 the machine
refused a write (disk full, read-only or not permitted; the message names the path); 130
interrupted.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from econ_emd.base.rundir import ADOPT_FLAG

from . import __version__

log = logging.getLogger("econ_emd")

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: errno values of a write the machine refused (exit 3)
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

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
    p.add_argument(ADOPT_FLAG, action="store_true",
                   help="use a non-empty folder the product did not make as the run directory (marks it as one); "
                        "its stage folders (data/, label/, ...) are then the product's to replace")
    _verbosity(p)


def _verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--verbose", "-v", action="store_true", help="debug logging, library logs")
    g.add_argument("--quiet", "-q", action="store_true", help="errors only, no progress bars (bars show on a terminal only)")


def _add_neemo(sub) -> None:
    from econ_emd.neemo.params import SHAPES

    p = sub.add_parser("neemo", help="NEEMo: Lipschitz-network EMD estimates and geometric fits",
                       description="NEEMo: EMD through the Kantorovich-Rubinstein dual with a Lipschitz network.")
    nsub = p.add_subparsers(dest="neemo_command", metavar="ACTION", required=True)
    e = nsub.add_parser("estimate", help="EMD between two modules or two files of modules (row by row)",
                        description="NEEMo estimate vs exact EMD for module pairs: the rows of --modules-a and "
                                    "--modules-b (CSV/HDF5, ECON-T columns; one row is paired with every row of "
                                    "the other), or random synthetic module pairs.")
    _common(e)
    e.add_argument("--modules-a", metavar="FILE", help="modules (CSV or HDF5), paired row by row with --modules-b")
    e.add_argument("--modules-b", metavar="FILE", help="modules (CSV or HDF5)")
    e.add_argument("--pairs", type=int, metavar="N", help="random synthetic pairs (default: neemo.random_pairs)")
    f = nsub.add_parser("fit", help="fit K points/circles/rings to an energy map",
                        description="Fit K shapes to a synthetic multi-cluster event or to a module's TC "
                                    "deposits; compare with energy-weighted k-means by exact EMD.")
    _common(f)
    f.add_argument("--shape", choices=SHAPES, help="default: neemo.fit.shape")
    f.add_argument("--n-shapes", type=int, metavar="K", help="number of shapes (default: neemo.fit.k)")
    f.add_argument("--clusters", type=int, default=3, help="clusters of the synthetic event (default 3)")
    f.add_argument("--event-seed", type=int, default=0, help="seed of the synthetic event")
    f.add_argument("--modules", metavar="FILE", help="fit a module's deposits instead (CSV or HDF5)")
    f.add_argument("--index", type=int, default=0, help="row of --modules to fit (default 0)")


def _add_econt(sub) -> None:
    from .econt_export import CHECK_MODULES

    p = sub.add_parser("econt", help="the ECON-T ASIC emulator: link words in, link words out",
                       description="Emulate the ECON-T on input link words (CMS test-vector CSV "
                                   "format) and verify it against golden test vectors.")
    esub = p.add_subparsers(dest="econt_command", metavar="ACTION", required=True)
    r = esub.add_parser("run", help="input link words + ASIC configuration -> output link words",
                        description="Emulate one configuration on input link words.")
    r.add_argument("--input", "-i", required=True, metavar="CSV",
                   help="input words: RX_DATA_0..11 hex columns (.csv or .csv.gz)")
    r.add_argument("--asic", required=True, metavar="YAML",
                   help="the ASIC's configuration (registers) in the test vectors' init.yaml format")
    r.add_argument("--output", "-o", metavar="CSV", default=None,
                   help="output words TX_DATA_0..12 (default: standard output)")
    v = esub.add_parser("verify", help="compare with golden test vectors, word for word",
                        description="Verify every configuration under DIR (folders holding "
                                    "init.yaml and testOutput.csv[.gz]; the input "
                                    "testInput.csv[.gz] in the folder or above it). Exit 1 on "
                                    "any mismatch.")
    v.add_argument("folder", metavar="DIR", help="one vector folder or a tree of them")
    f = esub.add_parser("firmware", help="the vector's autoencoder through hls4ml C simulation and the RTL",
                        description="Load the autoencoder of a vector folder (init.yaml with "
                                    "algorithm 4) into the product's encoder, convert it with "
                                    "hls4ml, run the C simulation and the Verilog (da4ml, "
                                    "Verilator) on every crossing and compare the latents with "
                                    "the vector's words. Exit 1 unless all are identical.")
    f.add_argument("folder", metavar="DIR", help="a vector folder (init.yaml, testOutput.csv[.gz])")
    _common(f)
    f.add_argument("--output", "-o", metavar="DIR", default=None,
                   help="where the HLS project, Verilog and report go (default <run_dir>/econt_firmware/<DIR name>); "
                        "firmware and rtl options come from the run configuration")
    f.add_argument("--no-rtl", action="store_true", help="C simulation only")
    x = esub.add_parser("export", help="an encoder trained in the ASIC's arithmetic -> its init.yaml",
                        description="Write the ECON-T configuration that runs an encoder trained with "
                                    "encoder.kind asic: its weights' register image, the mask of the "
                                    "latent bits its link count sends, algorithm 4, the output links, "
                                    "and the module's MUX and calibration, in the vectors' init.yaml "
                                    "format. Written only after the emulator's packets on the check "
                                    "modules' link words equal the model's latents, every bit (exit 1 "
                                    "otherwise).")
    x.add_argument("encoder", metavar="ENCODER", help="the encoder: a folder holding encoder.h5, or the .h5")
    x.add_argument("--output", "-o", required=True, metavar="YAML", help="the init.yaml to write")
    x.add_argument("--links", type=int, metavar="N", default=None,
                   help="output links (default: those the encoder was trained for; must agree)")
    x.add_argument("--module", metavar="YAML", default=None,
                   help="the module's MUX, calibration and density from an autoencoder init.yaml (default: "
                        "input links in CALQ order, CAL 2048, low density)")
    x.add_argument("--check", type=int, metavar="N", default=CHECK_MODULES,
                   help=f"synthetic modules checked beside the 3,564 simulated crossings (default {CHECK_MODULES})")
    for q in (r, v, x):
        _verbosity(q)


def build_parser() -> argparse.ArgumentParser:
    from .registry import STAGES

    parser = argparse.ArgumentParser(
        prog="econ-emd",
        description="HGCAL ECON-T compression trained with a differentiable Earth Mover's Distance.")
    parser.add_argument("--version", action="version", version=f"econ-emd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for stage in STAGES.values():
        p = sub.add_parser(stage.command, help=stage.help, description=stage.help)
        _common(p)
        for opt in stage.options:
            p.add_argument(opt.flag, dest=opt.key, metavar=opt.metavar, choices=opt.choices, help=opt.help)
    p = sub.add_parser("pipeline", help="run every stage in order, skipping up-to-date ones",
                       description="Run every stage in order; stages whose outputs match the "
                                   "config and their inputs are skipped. --force reruns them all.")
    _common(p)
    p.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    p = sub.add_parser("report", help="rebuild the run's report.md and report.json from the stages present",
                       description="Compose <run_dir>/report.md and report.json from the summaries of the stages "
                                   "present in the run directory (`pipeline` does this at its end).")
    _common(p)
    p = sub.add_parser("scan", help="exact EMD against resources: link counts x quantization choices",
                       description="Train, judge and synthesize the encoder at every link count of scan.link_counts "
                                   "and every choice of scan.kinds (QKeras, the resource-aware HGQ encoder) and "
                                   "scan.weight_bits; write scan/scan.md and scan/pareto.png. Resumes: finished "
                                   "points are kept.")
    _common(p)
    _add_neemo(sub)
    _add_econt(sub)
    p = sub.add_parser("show-config", help="print the validated config with all defaults")
    _common(p)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                      verbose=args.verbose)


def configure_logging(level: int, verbose: bool) -> None:
    """Our messages at `level`; other libraries' (QKeras logs on the root logger) at INFO only
    when verbose, and never the compilers' internals (numba's debug log is thousands of lines
    of IR per traced function; matplotlib's scores every font). The CLI's, and a pipeline's
    child process's with its parent's settings (econ_emd.beside)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)  # basicConfig keeps an existing root
    log.setLevel(level)
    for name in _NEVER_CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not verbose:
        _quiet_libraries()


def _overrides(args: argparse.Namespace) -> list[str]:
    """--set values, then the stage flags that set one config key each."""
    from .registry import STAGES

    out = list(args.overrides)
    for stage in STAGES.values():
        for opt in stage.options:
            value = getattr(args, opt.key, None)
            if value is not None:
                out.append(f"{opt.key}={value}")
    return out


def _run(args: argparse.Namespace) -> int:
    from .config import dump_config, load_config
    from .registry import command_stage, run_pipeline, run_stage

    from econ_emd.base.errors import ConfigError
    from econ_emd.base.rundir import holding_run_dir

    if args.command == "econt" and args.econt_command in ("run", "verify", "export"):
        from .econt_cmd import run_emulator, run_verify

        if args.econt_command == "run":
            run_emulator(args.input, args.asic, args.output)
        elif args.econt_command == "export":
            from .econt_export import run_export

            run_export(args.encoder, args.output, args.links, args.module, args.check)
        else:
            run_verify(args.folder)
        return EXIT_OK
    cfg = load_config(args.config, _overrides(args))
    if args.run_dir is not None:
        if not args.run_dir.strip():
            raise ConfigError("--run-dir: must not be empty")
        cfg.run_dir = args.run_dir
    if args.command == "show-config":
        print(dump_config(cfg), end="")
        return EXIT_OK
    run_dir = Path(cfg.run_dir)
    # bars on a terminal only: in a log file each refresh is another carriage-return run
    progress = not args.quiet and sys.stderr.isatty()
    sub = {"neemo": "neemo_command", "econt": "econt_command"}.get(args.command)
    what = " ".join(["econ-emd", args.command, *([getattr(args, sub)] if sub else [])])
    if args.command == "econt" and args.output:         # writes only where -o says, nothing in the run
        from .econt_firmware import run_ae_firmware

        run_ae_firmware(args.folder, cfg, args.output, rtl=not args.no_rtl)
        return EXIT_OK
    from .registry import RUN_FILES, product_folders, unit_folders

    with holding_run_dir(run_dir, what, product_folders(), unit_folders(), RUN_FILES, adopt=args.adopt_run_dir):
        if args.command == "neemo":
            from .neemo_cmd import run_estimate, run_fit

            (run_estimate if args.neemo_command == "estimate" else run_fit)(cfg, args, progress)
        elif args.command == "econt":
            from .econt_firmware import run_ae_firmware

            run_ae_firmware(args.folder, cfg, args.output, rtl=not args.no_rtl)
        elif args.command == "scan":
            from .scan import SCAN_DIR, run_scan

            run_scan(cfg, run_dir, progress)
            log.info("scan done: read %s", run_dir / SCAN_DIR / "scan.md")
        elif args.command == "report":
            from . import report

            log.info("report: %s", report.write(run_dir, cfg))
        elif args.command == "pipeline":
            from . import report

            run_pipeline(cfg, run_dir, args.force, progress)
            log.info("pipeline done: read %s", report.write(run_dir, cfg))
        else:
            run_stage(cfg, run_dir, command_stage(args.command), progress)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    from econ_emd.base.errors import CheckFailed, UserError

    try:
        return _run(args)
    except UserError as exc:
        print(f"econ-emd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CheckFailed as exc:
        print(f"econ-emd: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        hint = " (free some space and rerun: finished stages are kept)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        print(f"econ-emd: error: {where}{exc.strerror or exc}{hint}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        print("econ-emd: interrupted; completed stages are kept, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
