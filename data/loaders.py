"""Readers for module data in the public ECON-T conventions (CSV and HDF5).

CSV: one row per module and bunch crossing. With a header row, the 48 charges are the
columns `CALQ_0..CALQ_47` wherever they stand (metadata columns such as entry, zside,
layer, waferu, waferv, SimEnergy*, subdet, tc_eta, tc_phi are ignored). Without a header,
the first 48 columns are the charges (as the public training scripts read them).

HDF5: a 2D dataset whose first 48 columns are the charges (`hdf5_key`, or the only 2D
dataset of the file), or a group holding one 1D dataset per `CALQ_<i>` column.

Every defect of the input is reported as a `DataError` naming the file, the row (1-based
line of the file for CSV, 0-based module index for HDF5) and the column. Zero-sum modules
are not errors: `clean_modules` drops and counts them.

Size is judged before anything is read whole: a CSV file is first streamed in blocks (a
line longer than `MAX_CSV_LINE_BYTES`, e.g. a row of millions of fields, is refused at
once, without being held), which also counts its rows; an HDF5 dataset declares its shape.
Either way the memory the read needs is checked against what the machine has
(`base.limits`) before the read starts.
"""
from __future__ import annotations

import csv
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econ_emd.base.errors import ConfigError, DataError
from econ_emd.base.limits import Need, require
from econ_emd.geometry import N_TC

CALQ_COLUMNS = [f"CALQ_{i}" for i in range(N_TC)]
CSV_SUFFIXES = (".csv", ".txt", ".gz")   # .csv.gz: gzip-compressed CSV (as the ECON-T vectors)
#: data sources read from files (data.path); ntuple: CMS HGCAL trigger ntuples (data/ntuples.py)
FILE_SOURCES = ("csv", "hdf5", "econt_links", "ntuple")
#: data sources the package makes itself: the sparse synthetic generator, the detector
#: generator (data/detector.py), the training part of the simulated crossings (data/crossings.py)
BUILTIN_SOURCES = ("synthetic", "detector", "simulated_crossings")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
#: the longest line of a CSV file read as modules: 48 charges and an ECON-T file's metadata
#: columns take a few hundred bytes; a longer line is refused without being held in memory
MAX_CSV_LINE_BYTES = 1 << 20
#: the most columns a header may name (ECON-T files have tens)
MAX_CSV_COLUMNS = 10_000
#: bytes of memory per value of a file read into modules: the parsed frame or dataset, its
#: float64 copy, and the charges split and stored by the data stage (measured peak, rounded up)
BYTES_PER_READ_VALUE = 24


@dataclass(frozen=True)
class LoadedModules:
    charges: np.ndarray  # (n, 48) float64, all finite, non-negative, positive sum
    n_read: int          # rows read before cleaning
    n_zero_sum: int      # rows dropped because all 48 charges were zero
    files: tuple[str, ...]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header_and_columns(path: Path, first_row: list[str]) -> tuple[bool, list[int]]:
    """Does the file have a header? And which 0-based columns hold CALQ_0..47."""
    cells = [c.strip() for c in first_row]
    if all(_is_number(c) for c in cells if c != ""):
        if len(cells) < N_TC:
            raise DataError(f"{path}: row 1 has {len(cells)} columns; a file without a header "
                            f"needs the {N_TC} charges in its first {N_TC} columns")
        return False, list(range(N_TC))
    where: dict[str, int] = {}
    for i, name in enumerate(cells):
        if name in where and name in CALQ_COLUMNS:
            raise DataError(f"{path}: the header names {name} twice (columns {where[name] + 1} and {i + 1})")
        where.setdefault(name, i)
    missing = [c for c in CALQ_COLUMNS if c not in where]
    if missing:
        shown = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise DataError(f"{path}: header lacks {len(missing)} charge column(s): {shown} "
                        f"(expected CALQ_0..CALQ_47)")
    return True, [where[c] for c in CALQ_COLUMNS]


def _locate_bad_cell(path: Path, has_header: bool, cols: list[int], width: int) -> str | None:
    """Slow pass with the csv module naming the first malformed row and column, if any."""
    with _open_text(path) as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if (line_no == 1 and has_header) or not any(c.strip() for c in row):
                continue
            if len(row) != width:
                return f"row {line_no} has {len(row)} columns, expected {width}"
            for k, c in enumerate(cols):
                if not _is_number(row[c].strip()):
                    return (f"row {line_no}, column {CALQ_COLUMNS[k]} (column {c + 1}): "
                            f"not a number: {row[c]!r}")
    return None


GZIP_MAGIC = b"\x1f\x8b"


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _open_text(path: Path):
    """The file as UTF-8 text (a byte-order mark dropped), gunzipped if it is gzip."""
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _data_line(path: Path, has_header: bool, index: int) -> int:
    """The line number (1-based) of data row `index` (0-based, blank lines skipped)."""
    seen = -1
    with _open_text(path) as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if (line_no == 1 and has_header) or not any(c.strip() for c in row):
                continue
            seen += 1
            if seen == index:
                return line_no
    return index + (2 if has_header else 1)


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


#: what a row of a module CSV file holds (for the message refusing an overlong one)
MODULE_ROW = f"the {N_TC} charges and a few metadata columns"


def scan_csv_lines(path: Path, max_lines: int | None = None, limit: int = MAX_CSV_LINE_BYTES,
                   row: str = MODULE_ROW) -> int:
    """Stream the file in blocks and count its lines (the first `max_lines`, if given),
    refusing at once a line longer than `limit` bytes (`row`: what a row should hold, for
    the message): nothing larger than one block is ever held, whatever the file holds."""
    lines, current = 0, 0
    try:
        with _open_bytes(path) as fh:
            while max_lines is None or lines < max_lines:
                block = fh.read(1 << 20)
                if not block:
                    break
                ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
                if len(ends):
                    lengths = np.diff(ends, prepend=-1)
                    lengths[0] += current
                    too_long = np.flatnonzero(lengths - 1 > limit)
                    if len(too_long):
                        _refuse_long_line(path, lines + int(too_long[0]) + 1, limit, row)
                    lines += len(ends)
                    current = len(block) - int(ends[-1]) - 1
                else:
                    current += len(block)
                if current > limit:
                    _refuse_long_line(path, lines + 1, limit, row)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: the gzip-compressed file is damaged or truncated ({exc})") from None
    return lines + (current > 0)


def _refuse_long_line(path: Path, line_no: int, limit: int, row: str = MODULE_ROW) -> None:
    raise DataError(f"{path}: row {line_no} is longer than {limit:,} bytes (a row holds {row}); refused unread")


def read_csv(path: str | Path, max_rows: int | None = None) -> np.ndarray:
    """The validated (n, 48) float64 charges of one ECON-T style CSV file (or .csv.gz).

    Rows are numbered as lines of the file (a header is row 1; blank lines count). The file
    is streamed once first (`scan_csv_lines`): an overlong row is refused at once, and the
    memory of the read is checked before it starts."""
    import pandas as pd

    path = Path(path)
    try:
        with _open_text(path) as fh:
            first_line = fh.readline(MAX_CSV_LINE_BYTES + 1)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        why = f"byte {exc.start} is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc).splitlines()[0]
        raise DataError(f"{path}: not a UTF-8 text CSV file ({why})") from None
    if len(first_line) > MAX_CSV_LINE_BYTES:
        _refuse_long_line(path, 1, MAX_CSV_LINE_BYTES)
    try:
        first = next(csv.reader([first_line]), None)
    except csv.Error as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file ({exc})") from None
    if first is None or not any(c.strip() for c in first):
        raise DataError(f"{path}: the file is empty")
    if len(first) > MAX_CSV_COLUMNS:
        raise DataError(f"{path}: row 1 has {len(first):,} columns; a module CSV file has the {N_TC} charges "
                        f"and at most {MAX_CSV_COLUMNS:,} columns in all")
    has_header, cols = _header_and_columns(path, first)
    n_lines = scan_csv_lines(path, None if max_rows is None else max_rows + 1)
    rows = max(n_lines - has_header, 0) if max_rows is None else min(max(n_lines - has_header, 0), max_rows)
    require(Need(f"{path} ({rows:,} rows of {len(first)} columns)",
                 memory=rows * max(len(first), N_TC) * BYTES_PER_READ_VALUE))
    try:
        # All columns are read (so pandas checks every row's width); only the charges
        # must be numbers, metadata columns may hold anything.
        frame = pd.read_csv(path, header=0 if has_header else None, nrows=max_rows, encoding="utf-8-sig",
                            compression="gzip" if _is_gzip(path) else None,
                            dtype={first[c].strip() if has_header else c: np.float64 for c in cols})
        values = frame.iloc[:, cols].to_numpy(dtype=np.float64)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV file (byte {exc.start} of the data is not UTF-8)") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: the gzip-compressed file is damaged or truncated ({exc})") from None
    except (ValueError, pd.errors.ParserError) as exc:
        detail = _locate_bad_cell(path, has_header, cols, len(first))
        raise DataError(f"{path}: {detail or str(exc).splitlines()[0]}") from None
    if values.shape[0] == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    if np.isnan(values).any():  # pandas pads short rows with NaN: name those first
        detail = _locate_bad_cell(path, has_header, cols, len(first))
        if detail:
            raise DataError(f"{path}: {detail}")
    return _validated(values, path, lambda row: _data_line(path, has_header, row))


def read_hdf5(path: str | Path, key: str | None = None, max_rows: int | None = None) -> np.ndarray:
    """The validated (n, 48) float64 charges of an HDF5 file (rows numbered from 0)."""
    import h5py

    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with fh:
        if key is not None:
            if key not in fh:
                raise DataError(f"{path}: no dataset or group '{key}' (has: {', '.join(fh.keys())})")
            try:
                node = fh[key]
            except (KeyError, OSError) as exc:
                raise DataError(f"{path}: data.hdf5_key '{key}' is a link to nothing that can be opened "
                                f"({fh.get(key, getlink=True)}: {exc})") from None
        else:
            found: list[str] = []
            fh.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
            if all(c in fh for c in CALQ_COLUMNS):
                node = fh
            elif len(found) == 1:
                node = fh[found[0]]
            elif not found:
                raise DataError(f"{path}: no 2D dataset and no CALQ_0..CALQ_47 columns found")
            else:
                raise DataError(f"{path}: several 2D datasets ({', '.join(found)}): set data.hdf5_key")
        sl = slice(None, max_rows)
        if isinstance(node, h5py.Group):
            columns = {}
            for c in CALQ_COLUMNS:
                try:
                    columns[c] = node[c]
                except (KeyError, OSError):
                    raise DataError(f"{path}: group '{node.name}' lacks column {c}") from None
                if not isinstance(columns[c], h5py.Dataset):
                    raise DataError(f"{path}: '{columns[c].name}' is a group, not a column of charges")
            lengths = {c: columns[c].shape for c in CALQ_COLUMNS}
            odd = [c for c in CALQ_COLUMNS if lengths[c] != lengths[CALQ_COLUMNS[0]] or len(lengths[c]) != 1]
            if odd:
                raise DataError(f"{path}: column {odd[0]} has shape {lengths[odd[0]]} but {CALQ_COLUMNS[0]} "
                                f"has {lengths[CALQ_COLUMNS[0]]}: every column must be 1D and of one length")
            for c in CALQ_COLUMNS:
                _check_real(path, columns[c])
            _require_read(path, node.name, lengths[CALQ_COLUMNS[0]][0], max_rows)
            values = np.stack([np.asarray(columns[c][sl], dtype=np.float64) for c in CALQ_COLUMNS], 1)
        else:
            if node.ndim != 2 or node.shape[1] < N_TC:
                raise DataError(f"{path}: dataset '{node.name}' has shape {node.shape}; "
                                f"expected (n, >= {N_TC}) with the charges first")
            if node.shape[0] == N_TC and node.shape[1] > N_TC:
                raise DataError(f"{path}: dataset '{node.name}' has shape {node.shape}: it looks transposed "
                                f"(modules must be rows, the {N_TC} charges the first columns)")
            _check_real(path, node)
            _require_read(path, node.name, node.shape[0], max_rows)
            values = np.asarray(node[sl, :N_TC], dtype=np.float64)
    if values.shape[0] == 0:
        raise DataError(f"{path}: the dataset is empty")
    return _validated(values, path, lambda row: row)


def _check_real(path: Path, dataset) -> None:
    """Charges are real numbers: integers or floats (a complex dataset would lose its
    imaginary part in the float64 copy; strings and compound types are not charges)."""
    dtype = dataset.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        what = "complex" if np.issubdtype(dtype, np.complexfloating) else "not numeric"
        raise DataError(f"{path}: dataset '{dataset.name}' is {what} ({dtype}); charges are real numbers")


def _require_read(path: Path, name: str, rows: int, max_rows: int | None) -> None:
    """Refuse, before reading, a dataset whose declared rows this machine cannot hold (an
    HDF5 file of a few bytes may declare a dataset of any size: its chunks are never written)."""
    n = rows if max_rows is None else min(rows, max_rows)
    require(Need(f"{path}: dataset '{name}' ({rows:,} x {N_TC} charges" +
                 (f", {n:,} read)" if n != rows else ")"), memory=n * N_TC * BYTES_PER_READ_VALUE))


def declared_rows(source: str, path: str | Path, hdf5_key: str | None = None) -> int | None:
    """The number of modules a data file (or folder of files) declares, without reading
    them: an HDF5 dataset's shape; for CSV, the byte size over the first data line's
    (an estimate; the read itself checks exactly). None where it cannot tell (a file that
    is missing or damaged: its reader gives the precise error)."""
    import h5py

    try:
        files = _files_of(Path(path), CSV_SUFFIXES if source in ("csv", "econt_links") else HDF5_SUFFIXES)
    except DataError:
        return None
    total = 0
    for f in files:
        try:
            if source in ("csv", "econt_links"):
                if _is_gzip(f):
                    return None
                with open(f, "rb") as fh:
                    head = fh.read(2 * MAX_CSV_LINE_BYTES).split(b"\n")
                line = max(len(head[1]) if len(head) > 1 else len(head[0]), 1)
                total += f.stat().st_size // line
            else:
                with h5py.File(f, "r") as fh:
                    node = fh[hdf5_key] if hdf5_key else fh
                    shapes = []
                    node.visititems(lambda n, o: shapes.append(o.shape) if isinstance(o, h5py.Dataset) else None) \
                        if isinstance(node, h5py.Group) else shapes.append(node.shape)
                    total += max((s[0] for s in shapes if len(s) >= 1), default=0)
        except (OSError, KeyError, ValueError):
            return None
    return total


def _validated(values: np.ndarray, path: Path, row_name) -> np.ndarray:
    """`values` if every charge is valid, else a DataError naming the row as `row_name` gives it."""
    try:
        validate_charges(values)
    except _BadCharge as bad:
        raise DataError(f"{path}: row {row_name(bad.row)}, {bad.what}") from None
    return values


class _BadCharge(Exception):
    def __init__(self, row: int, what: str):
        super().__init__(what)
        self.row, self.what = row, what


def validate_charges(values: np.ndarray) -> None:
    """Raise at the first NaN/inf or negative charge, or a row whose sum overflows float64,
    naming its (0-based) row and column; the readers turn that into file rows."""
    bad_finite = ~np.isfinite(values)
    bad_sign = np.zeros_like(bad_finite)
    np.less(values, 0, out=bad_sign, where=~bad_finite)
    for mask, what in ((bad_finite, "is not finite"), (bad_sign, "is negative")):
        if mask.any():
            r, c = np.argwhere(mask)[0]
            raise _BadCharge(int(r), f"column {CALQ_COLUMNS[c]}: charge {values[r, c]!r} {what}")
    with np.errstate(over="ignore"):
        sums = values.sum(1)
    if not np.isfinite(sums).all():
        r = int(np.flatnonzero(~np.isfinite(sums))[0])
        raise _BadCharge(r, "the sum of its charges overflows float64")


def _files_of(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if not (path.is_dir() or path.is_file()):
        raise DataError(f"{path}: not a regular file or directory (a pipe or device cannot be read as data)")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{path}: the directory holds no {'/'.join(suffixes)} files")
        return files
    return [path]


def read_econt_links(path: str | Path, econt_config: str | Path,
                     max_rows: int | None = None) -> np.ndarray:
    """CALQ (float64, CALQ order) of ECON-T input link words (`RX_DATA_0..11`, the CMS
    test-vector format): each crossing's words through the ASIC front end configured by
    `econt_config` (an init.yaml: density, word order, calibration), each cell read from
    the input TC it enters on (`econt.emulator.cells_in_calq_order`), whatever algorithm
    the configuration selects."""
    from econ_emd.econt.emulator import cells_in_calq_order
    from econ_emd.econt.links import read_rx
    from econ_emd.econt.registers import load_config

    cfg = load_config(econt_config)
    rx = read_rx(path)
    if max_rows is not None:
        rx = rx[:max_rows]
    try:
        return cells_in_calq_order(cfg, rx).astype(np.float64)
    except ConfigError as exc:
        raise DataError(f"data.econt_config {econt_config}: {exc}") from None


def load_modules(source: str, path: str | Path, hdf5_key: str | None = None,
                 max_rows: int | None = None, drop_zero_sum: bool = True,
                 econt_config: str | Path | None = None, ntuple_charge: str = "uncompressedCharge",
                 ntuple_layers: tuple[int, ...] | None = None) -> LoadedModules:
    """Read, validate and clean modules from a CSV/HDF5/link-word/ntuple file or a directory
    of them (`drop_zero_sum=False`: keep every row, for callers that pair rows of two files)."""
    path = Path(path)
    is_csv = source in ("csv", "econt_links")
    if source == "econt_links" and econt_config is None:
        raise DataError(f"{path}: ECON-T link words need an ASIC configuration (data.econt_config)")
    if source == "ntuple":
        from .ntuples import NTUPLE_SUFFIXES, read_ntuples

        files = _files_of(path, NTUPLE_SUFFIXES)
        charges = read_ntuples(files, ntuple_charge, ntuple_layers, max_rows).charges
        charges = _validated(charges, path, lambda row: f"{row} (module crossing, 0-based)")
        return _cleaned(charges, path, files, drop_zero_sum)
    files = _files_of(path, CSV_SUFFIXES if is_csv else HDF5_SUFFIXES)
    parts = []
    remaining = max_rows
    for f in files:
        if remaining is not None and remaining <= 0:
            break
        if source == "econt_links":
            values = read_econt_links(f, econt_config, remaining)
        elif is_csv:
            values = read_csv(f, remaining)
        else:
            values = read_hdf5(f, hdf5_key, remaining)
        parts.append(values)
        if remaining is not None:
            remaining -= values.shape[0]
    return _cleaned(np.concatenate(parts), path, files, drop_zero_sum)


def _cleaned(charges: np.ndarray, path: Path, files: list[Path], drop_zero_sum: bool) -> LoadedModules:
    if not drop_zero_sum:
        return LoadedModules(charges, charges.shape[0], 0, tuple(str(f) for f in files))
    kept, n_zero = clean_modules(charges)
    if kept.shape[0] == 0:
        raise DataError(f"{path}: every module has a zero charge sum; nothing to train on")
    return LoadedModules(kept, charges.shape[0], n_zero, tuple(str(f) for f in files))


def clean_modules(charges: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop modules whose 48 charges sum to zero; return the rest and how many were dropped."""
    keep = charges.sum(1) > 0
    return charges[keep], int((~keep).sum())
