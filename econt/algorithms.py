"""The ECON-T front end (MUX, float-to-fix, calibration) and its conventional algorithms.

All functions take (n_bx, 48) integer arrays and work on every crossing at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from econ_emd.econt.codes import E4M3, E5M3, E5M4, FloatCode, decode, encode
from econ_emd.econt.registers import AsicConfig
from econ_emd.geometry import N_TC

#: best choice: TCs kept for 1..13 output links (front-end table; index = links)
BC_TCS_PER_LINKS = (0, 1, 4, 6, 9, 14, 18, 23, 28, 32, 37, 41, 46, 48)
#: the sorter's input saturates at 18 bits
BC_SORT_MAX = (1 << 18) - 1
@dataclass(frozen=True)
class StcFormat:
    """One super-trigger-cell format (the stc_type register)."""
    size: int                # TCs per group: 4 consecutive TCs after the MUX, or 16
    address_bits: int        # index of the group's largest TC; 0: none sent (CTC types)
    code: FloatCode          # the group sum's float code
    drop_lsb: bool           # DropLSB applies to the sum (the 4E3M formats)

    @property
    def bits(self) -> int:
        return self.address_bits + self.code.width


STC_FORMATS = {0: StcFormat(4, 2, E5M4, False),     # STC4B
               1: StcFormat(16, 4, E5M4, False),    # STC16
               2: StcFormat(4, 0, E4M3, True),      # CTC4A
               3: StcFormat(4, 2, E4M3, True),      # STC4A
               4: StcFormat(4, 0, E5M4, False)}     # CTC4B
STC_HEADER_BITS = 4


def stc_groups_per_links(stc_type: int) -> tuple[int, ...]:
    """Groups sent at 1, 2, ... links: as many as fit the 32 N bits after the 4-bit
    header, up to all of them; links beyond the first count that carries every group are
    not used (the packet is empty). Gives the CMS emulator's tables for types 0-3
    (2, 5, 8, 11, 12 / 2, 3 / 4, 8, 12 / 3, 6, 10, 12) and 3, 6, 10, 12 for type 4."""
    f = STC_FORMATS[stc_type]
    total = N_TC // f.size
    counts = []
    while not counts or counts[-1] < total:
        n_links = len(counts) + 1
        counts.append(min((32 * n_links - STC_HEADER_BITS) // f.bits, total))
    return tuple(counts)


#: super trigger cells sent for 1, 2, ... links, per stc_type (see `stc_groups_per_links`)
STC_GROUPS_PER_LINKS = {t: stc_groups_per_links(t) for t in STC_FORMATS}


def calq(input_codes: np.ndarray, cfg: AsicConfig) -> np.ndarray:
    """CALQ of every TC: TC i = input[Mux[i]], decoded (1 bit left for low density, 3 for
    high density, bin centre added), times the 12-bit CAL (2048 = 1.0), >> 11."""
    muxed = np.asarray(input_codes, dtype=np.int64)[:, list(cfg.mux)]
    f2f = decode(muxed, E4M3, 3 if cfg.high_density else 1)
    return (f2f * np.asarray(cfg.cal, dtype=np.int64)) >> 11


@lru_cache(maxsize=None)
def _batcher_passes(n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The compare-exchange passes of Batcher's merge-exchange sort (Knuth 5.2.2 M), the
    network of the ASIC's sorter; each pass is a set of disjoint (i, i + d) pairs."""
    t = int(np.ceil(np.log2(n)))
    passes = []
    p = 1 << (t - 1)
    while p >= 1:
        q, r, d = 1 << (t - 1), 0, p
        while q >= p:
            lo = np.array([i for i in range(n - d) if i & p == r], dtype=np.intp)
            if len(lo):
                hi = lo + d
                assert len(set(lo) | set(hi)) == 2 * len(lo), "comparators of a pass overlap"
                passes.append((lo, hi))
            d, q, r = q - p, q // 2, p
        p //= 2
    return tuple(passes)


#: crossings sorted at once: the network's working array (48 x chunk int32) stays in the
#: CPU cache, about twice as fast as one pass over a large array
_SORT_CHUNK = 2048


def sort_descending(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, their TC addresses), each row in descending order, ties resolved
    exactly as the ASIC's sorting network resolves them (an exchange only on <).

    Values (below 2**24) and addresses travel packed in one integer, value above the
    6 address bits, and the network runs on the transposed array (one contiguous row per
    TC): each exchange decides on the value bits alone, so ties keep their order."""
    vals = np.asarray(values, dtype=np.int64)
    n, width = vals.shape
    if vals.size and (vals.min() < 0 or vals.max() >= 1 << 24):
        raise ValueError("the sorter takes values in 0..2**24-1")
    sorted_vals = np.empty((n, width), dtype=np.int64)
    addresses = np.empty((n, width), dtype=np.int64)
    passes = _batcher_passes(width)
    for lo_row in range(0, n, _SORT_CHUNK):
        part = vals[lo_row:lo_row + _SORT_CHUNK]
        packed = np.ascontiguousarray(((part << 6) | np.arange(width)).T.astype(np.int32))
        for lo, hi in passes:
            a, b = packed[lo], packed[hi]
            swap = a < (b & ~63)            # a's value below b's: (a >> 6) < (b >> 6)
            top = np.where(swap, b, a)
            packed[hi] = a ^ b ^ top        # the other of the two
            packed[lo] = top
        sorted_vals[lo_row:lo_row + len(part)] = (packed >> 6).T
        addresses[lo_row:lo_row + len(part)] = (packed & 63).T
    return sorted_vals, addresses


@dataclass(frozen=True)
class BestChoice:
    kept: np.ndarray        # (n, 48) bool, in TC order
    kept_addresses: np.ndarray  # (n, n_tc) the kept TCs, ascending
    codes: np.ndarray       # (n, 48) 4E3M code of every TC (after DropLSB)
    sum_all: np.ndarray     # (n,) 5E3M code of the module sum
    sum_not_sent: np.ndarray  # (n,) 5E3M code of the TCs not kept
    values: np.ndarray      # (n, 48) the sorter's input (CALQ >> DropLSB, saturated)


def best_choice(calq_values: np.ndarray, drop_lsb: int, n_tc: int) -> BestChoice:
    """The n_tc largest TCs after DropLSB (ties as the sorter)."""
    values = np.minimum(np.asarray(calq_values, dtype=np.int64) >> drop_lsb, BC_SORT_MAX)
    sorted_vals, addr = sort_descending(values)
    kept = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(kept, addr[:, :n_tc], True, axis=1)
    return BestChoice(kept=kept, kept_addresses=np.sort(addr[:, :n_tc], axis=1),
                      codes=encode(values, E4M3), values=values,
                      sum_all=encode(sorted_vals.sum(axis=1), E5M3),
                      sum_not_sent=encode(sorted_vals[:, n_tc:].sum(axis=1), E5M3))


@dataclass(frozen=True)
class SuperTriggerCells:
    sums: np.ndarray        # (n, groups) group sums of CALQ
    address: np.ndarray     # (n, groups) index of the largest TC in its group (ties: higher)


def super_trigger_cells(calq_values: np.ndarray, size: int) -> SuperTriggerCells:
    """Groups of `size` consecutive TCs (after the MUX): sum and address of the maximum."""
    q = np.asarray(calq_values, dtype=np.int64).reshape(len(calq_values), N_TC // size, size)
    address = size - 1 - np.argmax(q[:, :, ::-1], axis=2)
    return SuperTriggerCells(sums=q.sum(axis=2), address=address)


@dataclass(frozen=True)
class ThresholdSum:
    kept: np.ndarray        # (n, 48) bool: CALQ >= threshold
    codes: np.ndarray       # (n, 48) 4E3M codes (DropLSB applied inside the code)
    sum_all: np.ndarray     # (n,) 5E3M of the module sum
    sum_not_sent: np.ndarray  # (n,) 5E3M of the TCs below threshold


def threshold_sum(calq_values: np.ndarray, thresholds, drop_lsb: int) -> ThresholdSum:
    q = np.asarray(calq_values, dtype=np.int64)
    kept = q >= np.asarray(thresholds, dtype=np.int64)
    return ThresholdSum(kept=kept, codes=encode(q, E4M3, drop_lsb),
                        sum_all=encode(q.sum(axis=1), E5M3),
                        sum_not_sent=encode((q * ~kept).sum(axis=1), E5M3))


def repeater(calq_values: np.ndarray, drop_lsb: int) -> np.ndarray:
    """(n, 48) 4E3M codes of CALQ >> DropLSB: every TC, for testing the links."""
    return encode(np.asarray(calq_values, dtype=np.int64) >> drop_lsb, E4M3)


def module_sum_5e4m(calq_values: np.ndarray) -> np.ndarray:
    """The autoencoder packet's 9-bit module sum."""
    return encode(np.asarray(calq_values, dtype=np.int64).sum(axis=1), E5M4)
