"""One pipeline stage in a child process beside the parent's (`registry.run_pipeline`,
`Stage.beside`): `python -m econ_emd.beside` reads its request as JSON on stdin (the
validated config, the run folder, the stage, the parent's log levels, the file for its
error), runs the stage exactly as the parent would (its own work folder, landing whole or
not at all) and leaves its error, if any, in that file for the parent to raise.
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

from econ_emd.base.artifacts import atomic_write_json
from econ_emd.base.errors import error_record

from .config import RunConfig
from .registry import run_stage


def main() -> int:
    request = json.loads(sys.stdin.read())
    name = request["stage"]
    # the parent's levels; each line names the stage it comes from (the parent's interleave)
    logging.basicConfig(level=request["root_level"], format=f"{name} | %(message)s", stream=sys.stderr)
    logging.getLogger("econ_emd").setLevel(request["level"])
    if request["root_level"] >= logging.WARNING:
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for lib in ("tensorflow", "absl", "h5py", "numba", "matplotlib"):
            logging.getLogger(lib).setLevel(logging.ERROR)
    try:
        run_stage(RunConfig.model_validate(request["config"]), Path(request["run_dir"]), name, progress=False)
    except BaseException as exc:            # Ctrl-C included: the parent decides what it means
        atomic_write_json(Path(request["error_file"]), error_record(exc))
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
