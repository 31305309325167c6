"""Emulation speed of ECON-T best choice and super trigger cells, against a per-row
Python reference, in one run (issue 18 goal: >= 100,000 module-crossings per second per
core for the vectorized emulator).

Input: the CMS golden input words (../shared/data/econt_test_vectors/mc_ttbar, 3,564
crossings), tiled to --crossings rows. Each configuration is run end to end (link words
-> front end -> algorithm -> packet -> buffer -> output words) by `econt.emulator.emulate`
on one core (BLAS threads pinned to 1), and by a per-row reference written here the plain
way (Python integers and bit strings, one crossing at a time) on a sample; both must give
identical words. Prints crossings/s of each and the ratio. "per core" is measured in the
process's CPU time (`time.process_time`), which a shared, busy machine does not dilute as
it does wall time; the wall-clock rate is printed beside it.

    .venv/bin/python bench/econt_speed.py [--crossings 200000] [--reference-rows 2000]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from econ_emd.econt import algorithms as alg  # noqa: E402
from econ_emd.econt.emulator import emulate  # noqa: E402
from econ_emd.econt.links import bx_counter, read_rx  # noqa: E402
from econ_emd.econt.registers import load_config  # noqa: E402

VECTORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "econt_test_vectors" / "mc_ttbar"
CONFIGS = ("BC_2eTx", "BC_5eTx", "BC_13eTx", "STC_type0_eTx5", "STC_type1_eTx2", "STC_type3_eTx4")


def _enc(v: int, e: int, m: int, drop: int = 0) -> int:
    n = v.bit_length()
    if n <= m + drop:
        return v >> drop
    ex = n - m - drop
    if ex >= 1 << e:
        return (1 << (e + m)) - 1
    return (ex << m) | ((v >> (n - 1 - m)) & ((1 << m) - 1))


def _dec(c: int, drop: int) -> int:
    ex, mant = c >> 3, c & 7
    shift = max(ex - 1, 0)
    v = ((mant << shift) + (1 << (ex + 2)) if ex else mant) << drop
    return v + (1 << (drop + shift - 1)) if drop + shift else v


def _row_calq(words, cfg) -> list[int]:
    shifts = [21, 14, 7, 0] if cfg.erx_msb_first else [0, 7, 14, 21]
    inputs = [(w >> s) & 0x7F for w in words for s in shifts]
    drop = 3 if cfg.high_density else 1
    return [(_dec(inputs[cfg.mux[i]], drop) * cfg.cal[i]) >> 11 for i in range(48)]


def _sorted_addresses(values: list[int]) -> list[int]:
    a, adr = list(values), list(range(48))
    t = 6
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while q >= p:
            for i in range(48 - d):
                if i & p == r and a[i] < a[i + d]:
                    a[i], a[i + d] = a[i + d], a[i]
                    adr[i], adr[i + d] = adr[i + d], adr[i]
            d, q, r = q - p, q // 2, p
        p //= 2
    return adr


def _words(bits: str, align: int, n_etx: int) -> list[int]:
    bits += "0" * (-len(bits) % align)
    bits = (bits + "0" * 32 * n_etx)[:32 * n_etx]
    return [int(bits[32 * i:32 * i + 32], 2) for i in range(n_etx)]


def reference_row(words, bx: int, cfg) -> list[int]:
    """One crossing the plain way (BC and STC: their packets fill the links every crossing)."""
    q = _row_calq(words, cfg)
    h5 = 31 if bx == 0 else bx % 16
    head = f"{h5 >> 4:b}{h5 & 7:03b}"
    drop = cfg.drop_lsb if cfg.drop_lsb <= 4 else 0
    if cfg.algorithm == 2:
        n_tc = alg.BC_TCS_PER_LINKS[cfg.n_etx]
        vals = [min(v >> drop, 2**18 - 1) for v in q]
        kept = sorted(_sorted_addresses(vals)[:n_tc])
        total = sum(vals)
        rest = total - sum(vals[i] for i in kept)
        bits = head + f"{_enc(total if cfg.use_sum else rest, 5, 3):08b}"
        bits += "".join(f"{i:06b}" for i in kept) if n_tc < 8 else "".join("1" if i in kept else "0" for i in range(48))
        bits += "".join(f"{_enc(vals[i], 4, 3):07b}" for i in kept)
        out = _words(bits, 16, cfg.n_etx)
    else:
        t, size = cfg.stc_type, 16 if cfg.stc_type == 1 else 4
        n = alg.STC_GROUPS_PER_LINKS[t][cfg.n_etx - 1]
        groups = [q[g * size:(g + 1) * size] for g in range(48 // size)][:n]
        addr = [max(range(size), key=lambda k: (g[k], k)) for g in groups]
        bits = head + ("" if t == 2 else "".join(f"{a:0{4 if t == 1 else 2}b}" for a in addr))
        sums = [sum(g) for g in groups]
        bits += "".join(f"{_enc(s, 5, 4):09b}" if t in (0, 1) else f"{_enc(s >> drop, 4, 3):07b}" for s in sums)
        out = _words(bits, 32, cfg.n_etx)
    return out + [0] * (13 - cfg.n_etx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crossings", type=int, default=200_000)
    ap.add_argument("--reference-rows", type=int, default=2000)
    args = ap.parse_args()
    base = read_rx(VECTORS / "testInput.csv.gz")
    rx = np.tile(base, (-(-args.crossings // len(base)), 1))[:args.crossings]
    print(f"{len(rx)} crossings (the golden input tiled), one core")
    print(f"{'configuration':18s} {'vectorized/s':>13s} {'(wall)/s':>10s} {'per-row/s':>10s} "
          f"{'ratio':>7s}  identical")
    for name in CONFIGS:
        cfg = load_config(VECTORS / name / "init.yaml")
        emulate(cfg, rx[:1000])                     # warm the caches (sorting network)
        t0, c0 = time.perf_counter(), time.process_time()
        out = emulate(cfg, rx).tx
        wall = len(rx) / (time.perf_counter() - t0)
        fast = len(rx) / (time.process_time() - c0)
        n_ref = min(args.reference_rows, len(rx))
        bx = bx_counter(rx)
        c0 = time.process_time()
        ref = [reference_row([int(w) for w in rx[i]], int(bx[i]), cfg) for i in range(n_ref)]
        slow = n_ref / (time.process_time() - c0)
        same = bool((np.array(ref) == out[:n_ref]).all())
        print(f"{name:18s} {fast:13,.0f} {wall:10,.0f} {slow:10,.0f} {fast / slow:7.1f}  {same}")


if __name__ == "__main__":
    main()
