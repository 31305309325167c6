"""What each stage will need in memory and disk, estimated from the config and the inputs'
declared sizes, checked before work starts (`check`).

The figures per module or pair are measured peaks of the stages (`econ_emd <stage>` under
`ru_maxrss`, at two sizes, the difference over the difference in size; rounded up), so a
refusal names a real need: `data.n_modules=50000000: needs about 40 GB of memory, 19 GB
available`. Each estimate names the setting or file that sets its size. The number of
modules a later stage sees is the data stage's record when it is current, else what the
config asks for (synthetic modules, or the rows a data file declares).
"""
from __future__ import annotations

from pathlib import Path

from econ_emd.base.limits import Need, require
from econ_emd.data.loaders import BYTES_PER_READ_VALUE, declared_rows
from econ_emd.geometry import N_TC

from .config import RunConfig
from .stages.result import read_summary

#: more modules than the simulated crossings hold (3,564 crossings of one module)
SIMULATED_CROSSINGS_BOUND = 4_000
#: bytes of one module as the stages hold it (48 float64 charges)
MODULE_BYTES = N_TC * 8
#: measured peak bytes per unit of work (see the module docstring)
DATA_BYTES_PER_MODULE = 800            # generated charges, the split copies, the summary (760 measured)
LABEL_BYTES_PER_PAIR = 1_400           # both modules, the perturbation's arrays, the EMD (1,310 measured)
EMD_CNN_BYTES_PER_PAIR = 1_700         # the labels and the training tensors, per rotation trained (1,570)
TRAINING_BYTES_PER_MODULE = 1_500      # the split, the encoder's images and targets, evaluation (1,400)
CHECK_BYTES_PER_MODULE = 4_000         # held-out inputs and outputs of the C/RTL simulation, as arrays
#: bytes written per unit: modules.h5 (stored uncompressed at worst), labels.h5 and the EMD
#: cache per pair, the testbench's text files per held-out module
DATA_DISK_PER_MODULE = MODULE_BYTES
LABEL_DISK_PER_PAIR = 2 * MODULE_BYTES + 16 + 8
CHECK_DISK_PER_MODULE = 3_000


def neemo_bytes_per_pair(width: int, n_linear: int) -> int:
    """One pair's potential network in the batched estimate: its weights with gradients and
    Adam's two moments (4 copies), and the activations of its 48 points through every layer
    (forward, backward, gradient: 3), float32 (0.9 MB measured at the defaults, 1.2 MB here)."""
    weights = width * width * (n_linear - 2) + width * (n_linear + 3)
    return 4 * (4 * weights + 3 * N_TC * width * n_linear)


def _modules(cfg: RunConfig, run_dir: Path) -> tuple[int, str]:
    """How many modules the run holds (or will hold), and the setting or file that says so."""
    recorded = read_summary(run_dir / "data")
    counts = recorded.get("n_modules") if recorded else None
    if isinstance(counts, dict) and all(isinstance(v, int) for v in counts.values()):
        return sum(counts.values()), f"the run's {sum(counts.values()):,} modules ({run_dir / 'data'})"
    d = cfg.data
    if d.source in ("synthetic", "detector"):
        return d.n_modules, f"data.n_modules={d.n_modules}"
    if d.source == "simulated_crossings":
        return SIMULATED_CROSSINGS_BOUND, "the simulated crossings"
    rows = declared_rows(d.source, d.path, d.hdf5_key) or 0
    if d.max_modules is not None:
        rows = min(rows, d.max_modules)
    return rows, f"data.path {d.path} (about {rows:,} modules)"


def _training_bytes(cfg: RunConfig, n: int) -> float:
    """An encoder training: the whole data set loaded (and a copy), and the modules it trains
    and judges on (`encoder.max_train_modules`, `max_eval_modules`: all when null)."""
    e = cfg.encoder
    used = min(n, e.max_train_modules or n) + min(n, e.max_eval_modules or n)
    return 2 * n * MODULE_BYTES + min(used, n) * TRAINING_BYTES_PER_MODULE


def stage_needs(cfg: RunConfig, run_dir: Path, name: str) -> list[Need]:
    """The memory and disk stage `name` needs, each naming its setting or file."""
    run = str(run_dir)
    n, what_n = _modules(cfg, run_dir)
    pairs = cfg.label.random_pairs + cfg.label.perturbed_pairs
    what_pairs = f"label.random_pairs={cfg.label.random_pairs} + label.perturbed_pairs={cfg.label.perturbed_pairs}"
    check = cfg.firmware.n_check
    if name == "data":
        if cfg.data.source in ("synthetic", "detector", "simulated_crossings"):
            return [Need(what_n, memory=n * DATA_BYTES_PER_MODULE, disk=n * DATA_DISK_PER_MODULE, disk_folder=run)]
        return [Need(what_n, memory=n * (DATA_BYTES_PER_MODULE + N_TC * BYTES_PER_READ_VALUE),
                     disk=n * DATA_DISK_PER_MODULE, disk_folder=run)]
    if name == "label":
        return [Need(what_pairs, memory=pairs * LABEL_BYTES_PER_PAIR + n * MODULE_BYTES,
                     disk=pairs * LABEL_DISK_PER_PAIR, disk_folder=run)]
    if name == "emd_cnn":
        rotations = 3 if cfg.emd_cnn.augment_rotations else 1
        return [Need(what_pairs, memory=pairs * EMD_CNN_BYTES_PER_PAIR * rotations)]
    if name in ("encoder", "compare_losses", "compare_econt"):
        return [Need(what_n, memory=_training_bytes(cfg, n))]
    if name in ("firmware", "csim", "rtl", "decoder", "export"):
        return [Need(f"firmware.n_check={check}", memory=check * CHECK_BYTES_PER_MODULE,
                     disk=check * CHECK_DISK_PER_MODULE if name in ("firmware", "decoder") else 0, disk_folder=run)]
    return []


def scan_needs(cfg: RunConfig, run_dir: Path) -> list[Need]:
    """A scan point trains like the encoder stage and checks `scan.n_check` modules."""
    n, what_n = _modules(cfg, run_dir)
    return [Need(what_n, memory=_training_bytes(cfg, n)),
            Need(f"scan.n_check={cfg.scan.n_check}", memory=cfg.scan.n_check * CHECK_BYTES_PER_MODULE,
                 disk=cfg.scan.n_check * CHECK_DISK_PER_MODULE, disk_folder=str(run_dir))]


def neemo_needs(cfg: RunConfig, pairs: int, what: str) -> list[Need]:
    """`neemo estimate` on `pairs` pairs (batched: every pair's network at once)."""
    per_pair = neemo_bytes_per_pair(cfg.neemo.width, cfg.neemo.n_linear) + 4 * MODULE_BYTES
    return [Need(what, memory=pairs * per_pair)]


def check(cfg: RunConfig, run_dir: Path, stages: list[str]) -> None:
    """Refuse, before the first of them starts, stages this machine cannot hold (one line
    naming the setting or file)."""
    require([need for name in stages for need in stage_needs(cfg, run_dir, name)])
