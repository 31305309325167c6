"""Link words in and out of the ECON-T, in the CSV format of the CMS test vectors.

Input (`testInput.csv[.gz]`): one row per bunch crossing, columns `RX_DATA_0..11`, one
32-bit hex word per input link (eRx): a 4-bit header and four 7-bit 4E3M trigger-cell
codes, TC 4l+k of link l in bits 7k..7k+6. Output (`testOutput.csv[.gz]`): columns
`TX_DATA_0..12`, one 32-bit hex word per output link (eTx); disabled links are 0. The
CMS emulator writes an output word as Python formats the integer it computed, so two
corner cases of its buffer (`econt.formatter`) give words no 32-bit field holds: a
negative one (`-0010001`) and one above 32 bits; output files are read and written with
them as the emulator has them.

The bunch-crossing counter the output headers carry: an orbit has 3,564 crossings; the
counter restarts at 0 on every row whose link-0 header is 0x9 (the BC0 marker), or counts
rows from 0 when the input carries no headers at all (all zero), as the ASIC's front end.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from econ_emd.base.errors import DataError

N_ERX = 12
N_ETX = 13
ORBIT_BX = 3564
BC0_HEADER = 0x9
RX_COLUMNS = [f"RX_DATA_{i}" for i in range(N_ERX)]
TX_COLUMNS = [f"TX_DATA_{i}" for i in range(N_ETX)]


#: the longest line a link-word file may hold: 13 words and a few metadata columns take a
#: few hundred bytes; a longer line is refused as soon as it is seen, never held
MAX_LINE_BYTES = 1 << 20
#: what a row holds (for the message refusing an overlong one)
ROW = "the 12 input link words RX_DATA_0..11 and a few other columns"
#: bytes of memory per row read: the text, its lines and the words (870 measured with
#: tracemalloc on 12,000 rows; rounded up)
ROW_BYTES = 1_000
#: rows between checks of the memory the rows read so far take
_CHECK_EVERY = 1 << 16


def _read_lines(path: Path) -> list[str]:
    """The file's lines (gzip or plain), read line by line: a line longer than
    `MAX_LINE_BYTES` is refused without being held, and the rows read are checked against
    the memory left as they come (`base.limits`), so no file can exhaust memory."""
    from econ_emd.base.limits import Need, require

    if path.exists() and not (path.is_file() or path.is_dir()):
        raise DataError(f"{path}: not a regular file (a pipe or device cannot be read as link words)")
    lines: list[str] = []
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            fh = gzip.GzipFile(fileobj=raw) if gz else raw
            while True:
                line = fh.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise DataError(f"{path}: row {len(lines) + 1} is longer than {MAX_LINE_BYTES:,} bytes "
                                    f"(a row holds {ROW})")
                lines.append(line.decode("utf-8-sig" if not lines else "utf-8").rstrip("\r\n"))
                if len(lines) % _CHECK_EVERY == 0:
                    require(Need(f"{path} (more than {len(lines):,} rows of link words)",
                                 memory=len(lines) * ROW_BYTES))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a link-word CSV") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) CSV file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise DataError(f"{path}: gzip data is truncated or corrupt") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return lines


#: the widest output word the CMS emulator can write: two 16-bit cells, the second up to
#: 17 bits wide (an idle word with a 16-bit sync word), added
_WIDE_LIMIT = 1 << 34


def read_words(path: str | Path, columns: list[str], as_written: bool = False) -> np.ndarray:
    """(n_bx, len(columns)) int64 words from a hex-word CSV; errors name row and column.
    `as_written`: also the negative and wider-than-32-bit words the CMS emulator writes
    (module doc), for output files."""
    path = Path(path)
    lines = _read_lines(path)
    header_at = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_at is None:
        raise DataError(f"{path}: empty file (expected a header row {columns[0]},...)")
    header = [c.strip() for c in lines[header_at].split(",")]
    for c in columns:
        if header.count(c) != 1:
            what = "lacks" if c not in header else "repeats"
            raise DataError(f"{path}: header {what} column {c}")
    index = [header.index(c) for c in columns]
    rows = []
    for lineno, line in enumerate(lines[header_at + 1:], start=header_at + 2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header):
            raise DataError(f"{path}: line {lineno} has {len(cells)} cells, the header "
                            f"{len(header)}")
        row = []
        for c, j in zip(columns, index):
            cell = cells[j].strip()
            try:
                word = int(cell, 16)
            except ValueError:
                raise DataError(f"{path}: line {lineno}, column {c}: {cell!r} is not a hex "
                                "word") from None
            if as_written:
                if cell.startswith("+") or not -_WIDE_LIMIT < word < _WIDE_LIMIT:
                    raise DataError(f"{path}: line {lineno}, column {c}: {cell!r} is not an "
                                    "output word")
            elif cell.startswith(("-", "+")) or not 0 <= word < (1 << 32):
                raise DataError(f"{path}: line {lineno}, column {c}: {cell!r} is not a "
                                "32-bit word")
            row.append(word)
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return np.array(rows, dtype=np.int64)


def read_rx(path: str | Path) -> np.ndarray:
    return read_words(path, RX_COLUMNS)


def read_tx(path: str | Path) -> np.ndarray:
    return read_words(path, TX_COLUMNS, as_written=True)


def format_tx(words: np.ndarray) -> str:
    """The vectors' output CSV text of (n_bx, 13) words (8 hex digits; a negative or wider
    word as the CMS emulator writes it, see the module doc)."""
    out = [",".join(TX_COLUMNS)]
    out += [",".join(f"{int(w):08x}" for w in row) for row in words]
    return "\n".join(out) + "\n"


def _tc_shifts(msb_first: bool) -> np.ndarray:
    shifts = 7 * np.arange(4)
    return shifts[::-1] if msb_first else shifts


def unpack_tc_codes(rx: np.ndarray, msb_first: bool = False) -> np.ndarray:
    """(n_bx, 48) 7-bit input TC codes: TC 4l+k of link l sits in bits 7k..7k+6, or in
    bits 7(3-k)..7(3-k)+6 with `msb_first` (see `econt.registers`)."""
    shifts = _tc_shifts(msb_first)
    codes = (rx[:, :, None] >> shifts[None, None, :]) & 0x7F
    return codes.reshape(len(rx), N_ERX * 4)


def pack_tc_codes(codes: np.ndarray, header: int | np.ndarray = 0xA,
                  msb_first: bool = False) -> np.ndarray:
    """Inverse of `unpack_tc_codes`: (n_bx, 12) input words with the given 4-bit header."""
    c = np.asarray(codes, dtype=np.int64).reshape(len(codes), N_ERX, 4)
    words = (c << _tc_shifts(msb_first)[None, None, :]).sum(axis=2)
    return words | (np.asarray(header, dtype=np.int64).reshape(-1, 1) << 28)


def bx_counter(rx: np.ndarray) -> np.ndarray:
    """Bunch-crossing number of each row: restarted by BC0 headers (see module doc)."""
    n = len(rx)
    bx = np.arange(n, dtype=np.int64) % ORBIT_BX
    headers = rx[:, 0] >> 28
    if not (headers == 0).all():
        resets = np.flatnonzero(headers == BC0_HEADER)
        if len(resets):
            # the rows since the latest reset, wrapping every orbit
            last = np.maximum.accumulate(np.where(headers == BC0_HEADER, np.arange(n), -1))
            since = np.where(last >= 0, np.arange(n) - last, np.arange(n))
            bx = since % ORBIT_BX
    return bx


def first_bc0_row(rx: np.ndarray) -> int | None:
    """The first row whose link-0 header is the BC0 marker, or None."""
    rows = np.flatnonzero((np.asarray(rx)[:, 0] >> 28) == BC0_HEADER)
    return int(rows[0]) if len(rows) else None


def bx_header(bx: np.ndarray) -> np.ndarray:
    """The 5-bit BX field of the output headers: BX mod 16, and 31 at BX 0 (orbit start)."""
    return np.where(bx == 0, 31, bx % 16)
