"""Exact-EMD throughput on the default synthetic label pairs, measured in one run.

Prints pairs/s/core of
  (a) a naive loop of POT `ot.emd2` on the full 48x48 problem (unit-sum inputs),
  (b) the project's exact EMD (`econ_emd.emd.exact.exact_emd`) on one core,
  (c) the same on all cores (the solver compiled before timing; workers are forked per
      call, as in the product, so their start is part of (c)),
the ratios b/a and c/b, and the largest |a - b| on the pairs both computed.
Goals (issue 2): b/a >= 20, c/b >= 1.8 on 2 cores, max diff <= 1e-9.

POT is imported with its TensorFlow backend disabled in every measurement (the product
does so; with it enabled, POT's per-call overhead is higher and (a) slower), so (a) is
the fastest plain POT loop, not a handicapped one.

    .venv/bin/python bench/emd_throughput.py [--config configs/default.yaml] [--naive-pairs 4000]

(a), (b) and (c) are timed --repeats times, interleaved, and the best time of each is kept,
so the ratios compare the three at their best on this noisy machine.

It also prints this machine's ceiling for c/b: the same work split in `cores` independent
processes started together (no pool, no data transfer: each has its own copy of the pairs),
(b)'s time over the slowest one's. On a machine whose cores slow each other down (shared
caches or memory of a virtual machine's host) no pool can beat it.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from econ_emd.config import load_config
from econ_emd.data.dataset import build_dataset
from econ_emd.emd.exact import exact_emd, resolve_solver
from econ_emd.geometry import distance_matrix
from econ_emd.data.labels import make_pairs


def default_pairs(config: str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    cfg = load_config(config)
    ds = build_dataset(cfg.data, cfg.seed)
    pairs = make_pairs(ds, cfg.label, cfg.seed)
    a = np.concatenate([p.a for p in pairs.values()])
    b = np.concatenate([p.b for p in pairs.values()])
    order = np.random.default_rng(0).permutation(len(a))  # mix kinds in every slice
    counts = {f"{k}/{s}": len(p.a) for (k, s), p in pairs.items()}
    return a[order], b[order], counts


def naive_pot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import ot

    m = distance_matrix()
    return np.array([ot.emd2(x / x.sum(), y / y.sum(), m) for x, y in zip(a, b)])


def _half_worker(a, b, barrier, out):
    from econ_emd.emd.exact import emd_chunk

    solver = resolve_solver("auto")
    emd_chunk(a[:1000], b[:1000], solver)  # warm: imports and first calls outside the timing
    barrier.wait()
    t = time.perf_counter()
    for s in range(0, len(a), 4000):
        emd_chunk(a[s:s + 4000], b[s:s + 4000], solver)
    out.put(time.perf_counter() - t)


def independent_processes(a: np.ndarray, b: np.ndarray, cores: int) -> float:
    """Wall time of the slowest of `cores` fresh processes, each solving its share alone."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(cores), ctx.Queue()
    shares = np.array_split(np.arange(len(a)), cores)
    procs = [ctx.Process(target=_half_worker, args=(a[i], b[i], barrier, out)) for i in shares]
    for p in procs:
        p.start()
    times = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--naive-pairs", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3, help="timings of (b) and (c); best is kept")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    a, b, counts = default_pairs(args.config)
    n = len(a)
    print(f"pairs: {n:,} ({', '.join(f'{k} {v:,}' for k, v in counts.items())}); "
          f"cores: {cores}; solver: {resolve_solver('auto')}")
    k = min(args.naive_pairs, n)
    naive_pot(a[:20], b[:20])  # import POT and make its first calls outside the timing
    exact_emd(a[:2 * cores * 4000], b[:2 * cores * 4000], n_jobs=cores)  # compile, warm up
    times = []
    for _ in range(args.repeats):  # interleaved; best of each (noisy shared machines)
        ref, t_0 = timed(naive_pot, a[:k], b[:k])
        fast, t_1 = timed(exact_emd, a, b, n_jobs=1)
        par, t_n = timed(exact_emd, a, b, n_jobs=cores)
        times.append((t_0, t_1, t_n, independent_processes(a, b, cores)))
    t_a, t_b, t_c, t_ind = np.min(times, axis=0)
    per_repeat = np.median([(t0 / k * n / t1, t1 / tn, t1 / ti) for t0, t1, tn, ti in times], axis=0)
    ra, rb, rc = k / t_a, n / t_b, n / t_c
    diff = float(np.abs(ref - fast[:k]).max())
    print(f"(a) naive POT loop, 48x48      : {ra:10,.0f} pairs/s/core  ({k:,} pairs, {t_a:.2f} s)")
    print(f"(b) exact_emd, 1 core          : {rb:10,.0f} pairs/s/core  ({n:,} pairs, {t_b:.2f} s)")
    print(f"(c) exact_emd, {cores} cores         : {rc / cores:10,.0f} pairs/s/core  "
          f"({rc:,.0f} pairs/s, {t_c:.2f} s)")
    print(f"b/a = {rb / ra:.1f}   (goal >= 20)   {'PASS' if rb / ra >= 20 else 'FAIL'}")
    print(f"c/b = {rc / rb:.2f}  (goal >= 1.8 on 2 cores)   {'PASS' if rc / rb >= 1.8 else 'FAIL'}")
    print(f"     ceiling of this machine: {cores} independent processes, each its share alone: "
          f"(b) time / slowest = {t_b / t_ind:.2f}")
    print(f"     median over the {args.repeats} interleaved repeats: b/a {per_repeat[0]:.1f}, "
          f"c/b {per_repeat[1]:.2f}, ceiling {per_repeat[2]:.2f}")
    print(f"max |a - b| = {diff:.2e}   (goal <= 1e-9)   {'PASS' if diff <= 1e-9 else 'FAIL'}")
    assert np.array_equal(fast, par), "parallel and serial results differ"


if __name__ == "__main__":
    main()
