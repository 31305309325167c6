"""The few things a notebook or script needs, with the signatures the product keeps stable.

Everything here is re-exported by `econ_emd` itself (``import econ_emd as ee;
ee.exact_emd(a, b)``); the rest of the package is the product's inside and may change.
TensorFlow is imported only by the functions that load a network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import RunConfig
from .config import load_config as _load_config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read and validate a run configuration.

    Parameters
    ----------
    path
        A YAML file; None for `configs/default.yaml` (or the schema's defaults, the same
        values, where the package was installed without the repository).
    overrides
        ``KEY=VALUE`` assignments applied before validation, as ``--set`` on the command
        line (e.g. ``["data.n_modules=5000"]``).

    Returns
    -------
    RunConfig
        The validated configuration; a bad value raises `ConfigError` naming the key.
    """
    return _load_config(path, overrides)


def run_stage(name: str, config: RunConfig, run_dir: str | Path | None = None, progress: bool = False,
              adopt_run_dir: bool = False):
    """Run one pipeline stage into the run directory, as ``econ-emd <command>`` does.

    Parameters
    ----------
    name
        The stage's name (its folder: ``data``, ``label``, ``emd_cnn``, ``encoder``,
        ``compare_losses``, ``compare_econt``, ``firmware``, ``csim``, ``rtl``,
        ``resources``).
    config
        The run configuration (`load_config`).
    run_dir
        Where the run lives; None for the configuration's `run_dir`.
    progress
        Show progress bars.
    adopt_run_dir
        Use a non-empty folder the product did not make as the run directory (as
        ``--adopt-run-dir``); without it such a folder raises `UserError`.

    Returns
    -------
    StageResult
        The stage's typed result (also written to ``<run_dir>/<name>/summary.json``). The
        stages it reads must be current, else `StageOrderError`; another process holding
        the run directory raises `RunDirBusy`.
    """
    from econ_emd.base.rundir import holding_run_dir

    from .registry import RUN_FILES, STAGES, product_folders, unit_folders
    from .registry import run_stage as _run_stage

    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    folder = Path(run_dir if run_dir is not None else config.run_dir)
    with holding_run_dir(folder, f"econ_emd.run_stage({name!r})", product_folders(), unit_folders(), RUN_FILES,
                         adopt_run_dir):
        return _run_stage(config, folder, name, progress)


def run_pipeline(config: RunConfig, run_dir: str | Path | None = None, force: bool = False,
                 progress: bool = False, adopt_run_dir: bool = False) -> Path:
    """Run every enabled stage in order, skipping the current ones, and write the run report.

    Parameters
    ----------
    config
        The run configuration (`load_config`).
    run_dir
        Where the run lives; None for the configuration's `run_dir`.
    force
        Rerun every stage even when current.
    progress
        Show progress bars.
    adopt_run_dir
        Use a non-empty folder the product did not make as the run directory (as
        ``--adopt-run-dir``).

    Returns
    -------
    Path
        The run report, ``<run_dir>/report.md`` (``report.json`` beside it).
    """
    from econ_emd.base.rundir import holding_run_dir

    from . import report
    from .registry import RUN_FILES, product_folders, unit_folders
    from .registry import run_pipeline as _run_pipeline

    folder = Path(run_dir if run_dir is not None else config.run_dir)
    with holding_run_dir(folder, "econ_emd.run_pipeline", product_folders(), unit_folders(), RUN_FILES,
                         adopt_run_dir):
        _run_pipeline(config, folder, force, progress)
        return report.write(folder, config)


def exact_emd(a: np.ndarray, b: np.ndarray, solver: str = "auto", n_jobs: int = 1) -> np.ndarray:
    """The exact Earth Mover's Distance of each pair of modules, on the hexagonal geometry.

    Parameters
    ----------
    a, b
        (n, 48) charges in CALQ order (one module per row, non-negative, each with a
        positive sum); row i of `a` is compared with row i of `b`. Each module is
        normalized to unit sum; the ground distance is between trigger-cell centres,
        adjacent cells 2 apart (`econ_emd.geometry`).
    solver
        ``auto``, ``simplex``, ``wasserstein`` or ``pot`` (all exact; they agree).
    n_jobs
        Worker processes (-1: all cores).

    Returns
    -------
    numpy.ndarray
        (n,) float64 distances.
    """
    from econ_emd.emd.exact import exact_emd as _exact_emd

    return _exact_emd(a, b, solver=solver, n_jobs=n_jobs)


def load_emd_cnn(path: str | Path):
    """A frozen EMD-CNN: the run's (``<run_dir>/emd_cnn`` or its ``emd_cnn.h5``) or a published
    two-input model. Use it with `predict_emd`.

    Parameters
    ----------
    path
        The model file or the emd_cnn stage's folder.

    Returns
    -------
    tf.keras.Model
        The frozen network taking two (batch, 48) modules; a missing or foreign file raises
        `ModelFileError`.
    """
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    return load_frozen_emd_cnn(path)


def predict_emd(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The EMD-CNN's estimate of the EMD of each pair of modules.

    Parameters
    ----------
    model
        A network from `load_emd_cnn`.
    a, b
        (n, 48) charges in CALQ order, as for `exact_emd`.

    Returns
    -------
    numpy.ndarray
        (n,) float64 estimates.
    """
    from econ_emd.training.emd_cnn_train import predict_emd as _predict_emd

    return _predict_emd(model, a, b)


def load_encoder(path: str | Path):
    """A trained encoder: QKeras, or a resource-aware encoder's frozen proxy.

    Parameters
    ----------
    path
        ``encoder.h5`` or the folder holding it (``<run_dir>/encoder``).

    Returns
    -------
    tf.keras.Model
        The encoder, taking `encoder_inputs` of modules and giving the 16 latents.
    """
    from econ_emd.training.encoder_train import load_encoder as _load_encoder

    return _load_encoder(path)


def load_decoder(path: str | Path):
    """The decoder trained with an encoder.

    Parameters
    ----------
    path
        ``decoder.h5`` or the folder holding it (``<run_dir>/encoder``).

    Returns
    -------
    tf.keras.Model
        The decoder: 16 latents -> the (8, 8, 1) unit-sum image of the module.
    """
    from econ_emd.training.encoder_train import DECODER_FILE, load_decoder as _load_decoder

    path = Path(path)
    return _load_decoder(path / DECODER_FILE if path.is_dir() else path)


def encoder_inputs(charges: np.ndarray, encoder=None) -> np.ndarray:
    """Modules as the encoder sees them.

    Parameters
    ----------
    charges
        (n, 48) charges in CALQ order, each module with a positive sum.
    encoder
        With an encoder, the images are quantized by its own input quantizer (exactly what
        its first layer outputs).

    Returns
    -------
    numpy.ndarray
        (n, 8, 8, 1) float32 images of each module divided by 2**floor(log2(sum)).
    """
    from econ_emd.training.encoder_train import encoder_inputs as _encoder_inputs

    return _encoder_inputs(charges, encoder)


def load_asic_config(path: str | Path):
    """An ECON-T configuration (its registers) from an ``init.yaml`` of the CMS test vectors.

    Parameters
    ----------
    path
        The YAML file (either spelling the CMS tools write).

    Returns
    -------
    econ_emd.econt.registers.AsicConfig
        The registers the data path reads; a bad one raises `ConfigError` naming it.
    """
    from econ_emd.econt.registers import load_config as _load_asic

    return _load_asic(path)


def read_link_words(path: str | Path) -> np.ndarray:
    """The ECON-T input link words of a CSV in the test vectors' format.

    Parameters
    ----------
    path
        ``testInput.csv`` or ``.csv.gz`` (columns ``RX_DATA_0..11``, 32-bit hex words).

    Returns
    -------
    numpy.ndarray
        (n_bx, 12) int64 words; a bad file raises `DataError` naming row and column.
    """
    from econ_emd.econt.links import read_rx

    return read_rx(path)


def emulate(asic_config, rx: np.ndarray):
    """The ECON-T's output link words for input link words, crossing by crossing.

    Parameters
    ----------
    asic_config
        The ASIC's registers (`load_asic_config`).
    rx
        (n_bx, 12) input words (`read_link_words`).

    Returns
    -------
    econ_emd.econt.emulator.EmulatorOutput
        ``tx`` (n_bx, 13) output words, ``calq`` (n_bx, 48) the calibrated charges the
        algorithms saw, ``bx`` the bunch-crossing counter, ``truncated`` the buffer flags.
    """
    from econ_emd.econt.emulator import emulate as _emulate

    return _emulate(asic_config, rx)
