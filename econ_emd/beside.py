"""Pipeline stages in a child process beside the parent's (`registry.run_pipeline`,
`Stage.beside`): `python -m econ_emd.beside` reads its request as JSON on stdin (the
validated config, the run folder, the stages in order, the parent's log settings, the file
for its error), runs each stage exactly as the parent would (its own work folder, landing
whole or not at all), stops at the first error and leaves it in that file for the parent
to raise.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from econ_emd.base.artifacts import atomic_write_json
from econ_emd.base.errors import error_record

from .cli import configure_logging
from .config import RunConfig
from .registry import run_stage


def main() -> int:
    request = json.loads(sys.stdin.read())
    # the parent's settings; each line names the stage it comes from (the parent's interleave)
    configure_logging(request["level"], verbose=request["verbose"])
    cfg, run_dir = RunConfig.model_validate(request["config"]), Path(request["run_dir"])
    try:
        for name in request["stages"]:
            for handler in logging.getLogger().handlers:
                handler.setFormatter(logging.Formatter(f"{name} | %(message)s"))
            run_stage(cfg, run_dir, name, progress=False)
    except BaseException as exc:            # Ctrl-C included: the parent decides what it means
        atomic_write_json(Path(request["error_file"]), error_record(exc))
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
