"""Word-for-word verification against golden ECON-T test vectors.

A vector folder holds `init.yaml` (the configuration) and `testOutput.csv[.gz]` (the
expected output words); its input `testInput.csv[.gz]` is in the folder itself or in the
nearest folder above it (the CMS vectors share one input among their configurations).

Row alignment: output row i is the crossing of input row i (the vectors show no latency
between a crossing and its words: the CMS emulator writes one output row per input row,
and a packet leaves in its own crossing when the buffer is empty). An input longer than
its output (an alignment pattern: rows before the orbit starts, then the BX0 header) is
emulated whole, so the buffer carries over from the rows before, and its words are
compared from the first BX0 header on (from row 0 when the input has no BX0 header).

Every folder ends as one result line, whatever happens in it: a configuration or input
the product cannot use is an "error" with its reason, and the rest of the tree still
runs (a failure of the emulator itself is reported the same way, as a bug to report).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from econ_emd.base.errors import UserError
from econ_emd.econt import algorithms as alg
from econ_emd.econt.emulator import emulate
from econ_emd.econt.link_budget import AE_HEADER_BITS, AE_SUM_BITS, ae_packet_bits
from econ_emd.econt.links import first_bc0_row, read_rx, read_tx
from econ_emd.econt.registers import AsicConfig, load_config

CONFIG_NAME = "init.yaml"
INPUT_NAMES = ("testInput.csv", "testInput.csv.gz")
OUTPUT_NAMES = ("testOutput.csv", "testOutput.csv.gz")


@dataclass(frozen=True)
class FieldDiff:
    name: str
    expected: int
    produced: int
    width: int


@dataclass(frozen=True)
class Mismatch:
    row: int                 # 0-based data row of the CSV
    bx: int                  # the crossing's BX counter
    links: tuple[tuple[int, int, int], ...]   # (link, expected word, produced word)
    fields: tuple[FieldDiff, ...]


@dataclass(frozen=True)
class VectorResult:
    name: str
    status: str              # "match", "mismatch", "skipped" (no expected output), "error"
                             # (bad configuration or input)
    n_bx: int = 0
    bx_equal: int = 0
    words_equal: int = 0
    words: int = 0
    algorithm: str = ""
    message: str = ""
    first: Mismatch | None = None

    @property
    def agreement(self) -> float:
        return self.words_equal / self.words if self.words else 0.0


@dataclass(frozen=True)
class VerifyReport:
    root: str
    results: tuple[VectorResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        compared = [r for r in self.results if r.status != "skipped"]
        return bool(compared) and all(r.status == "match" for r in compared)

    @property
    def input_errors(self) -> int:
        """Configurations whose configuration or input files are unusable (exit 2)."""
        return sum(r.status == "error" for r in self.results)


def find_vectors(root: Path) -> list[Path]:
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if (root / CONFIG_NAME).is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob(CONFIG_NAME) if p.is_file())
    if not found:
        raise UserError(f"{root}: no test vectors (folders holding {CONFIG_NAME}) found")
    return found


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` present in `folder`, whatever it is: a folder or a pipe of that
    name is then reported as what it is by the reader, not as a missing file."""
    return next((folder / n for n in names if (folder / n).exists() or (folder / n).is_symlink()), None)


def find_input(folder: Path, root: Path) -> Path | None:
    """The folder's own input, else the nearest one above it up to the root's parent."""
    stop = root.resolve().parent
    here = folder.resolve()
    while True:
        found = _first_file(here, INPUT_NAMES)
        if found is not None or here == stop or here == here.parent:
            return found
        here = here.parent


def packet_fields(cfg: AsicConfig) -> list[tuple[str, int]]:
    """(name, width) of the fixed packet layout of `cfg`, in link order, or [] when the
    layout varies from crossing to crossing (threshold sum)."""
    a = cfg.algorithm
    if a == 2:
        n_tc = alg.BC_TCS_PER_LINKS[cfg.n_etx]
        addr = [(f"address[{i}]", 6) for i in range(n_tc)] if n_tc < 8 else [("tc_map", 48)]
        return [("header", 4), ("module_sum", 8), *addr, *[(f"energy[{i}]", 7) for i in range(n_tc)]]
    if a == 1:
        table = alg.STC_GROUPS_PER_LINKS[cfg.stc_type]
        if cfg.n_etx > len(table):
            return []
        f, n = alg.STC_FORMATS[cfg.stc_type], table[cfg.n_etx - 1]
        addr = [(f"address[{i}]", f.address_bits) for i in range(n)] if f.address_bits else []
        return [("header", alg.STC_HEADER_BITS), *addr, *[(f"sum[{i}]", f.code.width) for i in range(n)]]
    if a == 3:
        return [("header", 5), *[(f"energy[{i}]", 7) for i in range(48)]]
    if a == 4:
        return [("header", AE_HEADER_BITS), ("module_sum", AE_SUM_BITS), ("latent_bits", ae_packet_bits(cfg.n_etx))]
    return []


def _stream(words: np.ndarray, n_etx: int) -> int:
    value = 0
    for w in words[:n_etx]:
        value = (value << 32) | (int(w) & 0xFFFFFFFF)
    return value


def _mismatch(cfg: AsicConfig, row: int, bx: int, expected: np.ndarray, produced: np.ndarray) -> Mismatch:
    links = tuple((i, int(e), int(p)) for i, (e, p) in enumerate(zip(expected, produced)) if e != p)
    total = 32 * cfg.n_etx
    exp_bits, got_bits = _stream(expected, cfg.n_etx), _stream(produced, cfg.n_etx)
    diffs, start = [], 0
    for name, width in packet_fields(cfg):
        shift = total - start - width
        if shift < 0:
            break
        e, p = (exp_bits >> shift) & ((1 << width) - 1), (got_bits >> shift) & ((1 << width) - 1)
        if e != p:
            diffs.append(FieldDiff(name, e, p, width))
        start += width
    return Mismatch(row=row, bx=bx, links=links, fields=tuple(diffs))


def aligned_start(rx: np.ndarray, n_expected: int) -> int:
    """The input row whose crossing output row 0 holds (module doc); `UserError` when the
    input cannot cover the output."""
    n = len(rx)
    if n < n_expected:
        raise UserError(f"the expected output has {n_expected} rows, the input only {n}")
    if n == n_expected:
        return 0
    start = first_bc0_row(rx)
    start = 0 if start is None else start
    if n - start < n_expected:
        raise UserError(f"the expected output has {n_expected} rows, the input {n - start} "
                        f"from its first BX0 header (row {start + 1}): the rows cannot be "
                        "aligned")
    return start


def verify_folder(folder: Path, root: Path) -> VectorResult:
    """One folder's result; never raises (module doc)."""
    name = str(folder.relative_to(root)) if folder != root else folder.name
    try:
        return _verify_folder(folder, root, name)
    except UserError as exc:
        return VectorResult(name, "error", message=str(exc))
    except Exception as exc:    # noqa: BLE001 - one folder's bug must not stop the tree
        return VectorResult(name, "error", message=f"the emulator failed ({type(exc).__name__}: "
                                                   f"{' '.join(str(exc).split())}); please report it")


def _verify_folder(folder: Path, root: Path, name: str) -> VectorResult:
    try:
        cfg = load_config(folder / CONFIG_NAME)
    except UserError as exc:
        return VectorResult(name, "error", message=str(exc))
    expected_path = _first_file(folder, OUTPUT_NAMES)
    if expected_path is None:
        return VectorResult(name, "skipped", algorithm=cfg.algorithm_name,
                            message="no expected output (testOutput.csv) to compare with")
    input_path = find_input(folder, root)
    if input_path is None:
        return VectorResult(name, "error", algorithm=cfg.algorithm_name,
                            message=f"no input ({INPUT_NAMES[0]}[.gz]) in the folder or above it")
    try:
        rx, expected = read_rx(input_path), read_tx(expected_path)
    except UserError as exc:
        return VectorResult(name, "error", algorithm=cfg.algorithm_name, message=str(exc))
    try:
        start = aligned_start(rx, len(expected))
    except UserError as exc:
        return VectorResult(name, "error", algorithm=cfg.algorithm_name,
                            message=f"{expected_path.name}: {exc}")
    out = emulate(cfg, rx)
    produced = out.tx[start:start + len(expected)]
    equal = produced == expected
    rows_ok = equal.all(axis=1)
    bad = np.flatnonzero(~rows_ok)
    first = None
    if len(bad):
        r = int(bad[0])
        first = _mismatch(cfg, r, int(out.bx[start + r]), expected[r], produced[r])
    return VectorResult(name, "match" if not len(bad) else "mismatch", n_bx=len(expected),
                        bx_equal=int(rows_ok.sum()), words_equal=int(equal.sum()),
                        words=int(equal.size), algorithm=cfg.algorithm_name, first=first)


def verify_tree(root: str | Path, progress=None) -> VerifyReport:
    root = Path(root)
    folders = find_vectors(root)
    results = []
    for folder in folders:
        results.append(verify_folder(folder, root))
        if progress is not None:
            progress(results[-1])
    return VerifyReport(root=str(root), results=tuple(results))

