"""What the training benches share: a finished run's data, frozen EMD-CNN and an exact-EMD
runner, loaded the same way (benches run as scripts, so this folder is on sys.path)."""
from __future__ import annotations

import os
from pathlib import Path


def training_material(config: str | None, run_dir: str, overrides: list[str] | None = None):
    """(the config, the run's data set, its frozen EMD-CNN, an exact-EMD runner on every
    core of this process); exits with one line when the run has no data/ or emd_cnn/."""
    from econ_emd.config import load_config
    from econ_emd.data.dataset import load_dataset
    from econ_emd.emd.exact import EmdRunner
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    cfg = load_config(config, overrides or [])
    run = Path(run_dir)
    if not (run / "data").is_dir() or not (run / "emd_cnn").is_dir():
        raise SystemExit(f"{run}: needs data/ and emd_cnn/ from `econ-emd pipeline` first")
    runner = EmdRunner(solver=cfg.emd.solver, n_jobs=len(os.sched_getaffinity(0)), progress=False)
    return cfg, load_dataset(run / "data"), load_frozen_emd_cnn(run / "emd_cnn"), runner
