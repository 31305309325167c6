"""Exact Earth Mover's Distance between modules on the hexagonal TC geometry.

The EMD of two modules is the 1-Wasserstein distance between their charge maps, each
divided by its own sum, with the scaled Euclidean TC distance as ground metric
(`geometry.distance_matrix`). POT's `ot.emd2` in float64 is the reference.

Speed without approximation comes from three exact reductions, applied per pair:
* only TCs carrying charge enter the transport problem;
* charge common to both modules stays in place: for W1 with a metric ground cost,
  EMD(a, b) = EMD(a - min(a, b), b - min(a, b)) (the Kantorovich-Rubinstein dual depends on
  a - b only), so the problem shrinks to the TCs where the two maps differ;
* when one side of the reduced problem is a single TC, every unit of charge travels from or
  to it, and the EMD is a dot product, computed for the whole batch at once.
What is left goes to the project's transportation simplex, compiled with numba, which
runs a whole chunk of pairs in one call (solver 'simplex', `transport_simplex`), to the
C++ network simplex of the `wasserstein` package (solver 'wasserstein'; one Python call per
pair), or to POT (solver 'pot'). All agree with dense POT to ~1e-14; dense POT stays the
reference the tests compare against.

Batches run in worker processes (forked on Linux before TensorFlow is loaded, else a
joblib/loky pool) or on a running Dask cluster; results are cached
on disk per chunk of pairs, keyed by the content of the chunk, so reruns and interrupted
runs do not recompute what is done.
"""
from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

# POT imports every array backend it can find; TensorFlow's costs seconds at import and
# time at every call. The product only gives POT numpy arrays.
for _backend in ("TENSORFLOW", "TORCH", "JAX", "CUPY"):
    os.environ.setdefault(f"POT_BACKEND_DISABLE_{_backend}", "1")

from econ_emd.base.artifacts import atomic_path  # noqa: E402
from econ_emd.base.errors import ToolError  # noqa: E402
from econ_emd.base.integrity import bytes_verify, sign_bytes  # noqa: E402
from econ_emd.geometry import N_TC, distance_matrix, tc_centres  # noqa: E402

log = logging.getLogger("econ_emd")

SOLVERS = ("simplex", "wasserstein", "pot")
CACHE_VERSION = "emd-v3"      # v3: entries signed with the product's key (base.integrity)
DASK_CONNECT_TIMEOUT = "20s"


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _fallback_solver() -> str:
    """The general solver for what 'simplex' hands back: 'wasserstein' when installed."""
    return "wasserstein" if _importable("wasserstein") else "pot"


def resolve_solver(name: str = "auto") -> str:
    """'auto' -> 'simplex' when numba is importable, else 'wasserstein', else 'pot'."""
    if name == "auto":
        return "simplex" if _importable("numba") else _fallback_solver()
    if name not in SOLVERS:
        raise ValueError(f"unknown EMD solver '{name}' (choose auto, {', '.join(SOLVERS)})")
    return name


def prepare_solver(solver: str = "auto") -> float:
    """Compile the 'simplex' solver, or load its compiled code from the on-disk cache,
    before any timing or forking, so that a throughput figure excludes the one-off compile;
    returns the seconds spent."""
    import time

    if resolve_solver(solver) != "simplex":
        return 0.0
    t = time.perf_counter()
    from .simplex import emd_rows

    emd_rows(np.eye(N_TC)[:1], np.eye(N_TC)[1:2], distance_matrix(), np.empty(1), np.zeros(1, np.int64))
    return time.perf_counter() - t


def unit_sum(x: np.ndarray) -> np.ndarray:
    """Each module divided by its own charge sum (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / x.sum(-1, keepdims=True)


def check_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two (n, 48) arrays of modules to be paired row by row."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != N_TC:
        raise ValueError(f"EMD pairs need two (n, {N_TC}) arrays of equal shape, got {a.shape} and {b.shape}")
    for name, x in (("first", a), ("second", b)):
        with np.errstate(over="ignore"):   # overflow is reported below, in words
            sums = x.sum(1)   # two passes (sums, min) instead of four: this part runs serially
        if not np.isfinite(sums).all():
            if not np.isfinite(x).all():
                raise ValueError(f"the {name} modules contain NaN or inf")
            raise ValueError(f"the {name} modules' charge sums overflow float64")
        if x.size and x.min() < 0:
            raise ValueError(f"the {name} modules contain negative charges")
        zero = np.flatnonzero(sums <= 0)
        if zero.size:
            raise ValueError(f"the {name} modules have a zero charge sum (row {zero[0]}): EMD is undefined")
    return a, b


def pot_dense_emd(a: np.ndarray, b: np.ndarray) -> float:
    """Reference: POT `ot.emd2` on the full 48x48 problem, unit-sum inputs, float64."""
    import ot

    return float(ot.emd2(unit_sum(a), unit_sum(b), distance_matrix()))


def _row_slices(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Non-zero weights and TC indices of all rows at once, with each row's bounds."""
    rows, cols = np.nonzero(x)
    bounds = np.searchsorted(rows, np.arange(x.shape[0] + 1)).tolist()
    return x[rows, cols], cols, bounds


def _solve_general(a_ex: np.ndarray, b_ex: np.ndarray, solver: str) -> np.ndarray:
    """EMD of reduced pairs (disjoint supports of >= 2 TCs each, equal mass per pair).

    Each pair is solved at unit mass and scaled back by its mass. The supports of the whole
    batch are extracted in one vectorized step: per-pair Python work is the solver call."""
    wa, ia, sa = _row_slices(a_ex)
    wb, ib, sb = _row_slices(b_ex)
    mass = a_ex.sum(1)
    out = np.empty(a_ex.shape[0])
    if solver == "wasserstein":
        import wasserstein

        emd = wasserstein.EMDFloat64(norm=True)  # normalizes each side to unit sum itself
        ca, cb = tc_centres()[ia], tc_centres()[ib]
        for i in range(out.size):
            out[i] = emd(wa[sa[i]:sa[i + 1]], ca[sa[i]:sa[i + 1]], wb[sb[i]:sb[i + 1]], cb[sb[i]:sb[i + 1]])
            if emd.status() != 0:
                raise RuntimeError(f"wasserstein EMD failed with status {emd.status()} on pair {i}")
    else:
        import ot

        d = distance_matrix()
        for i in range(out.size):
            pa, pb = wa[sa[i]:sa[i + 1]], wb[sb[i]:sb[i + 1]]
            out[i] = ot.emd2(pa / pa.sum(), pb / pb.sum(), d[np.ix_(ia[sa[i]:sa[i + 1]], ib[sb[i]:sb[i + 1]])])
    return out * mass


def emd_chunk(a: np.ndarray, b: np.ndarray, solver: str = "wasserstein") -> np.ndarray:
    """Exact EMD of each row pair of two validated (n, 48) arrays; the unit of parallel work.

    'simplex' does all of it per pair in one compiled call (`transport_simplex.emd_rows`);
    pairs it hands back, if any, take the vectorized path below with a general solver."""
    if solver == "simplex":
        from .simplex import emd_rows

        a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
        out = np.empty(a.shape[0])
        failed = np.zeros(a.shape[0], dtype=np.int64)
        emd_rows(a, b, distance_matrix(), out, failed)
        if failed.any():
            rest = np.flatnonzero(failed)
            out[rest] = emd_chunk(a[rest], b[rest], _fallback_solver())
        return out
    a, b = unit_sum(a), unit_sum(b)
    common = np.minimum(a, b)
    a_ex, b_ex = a - common, b - common
    na, nb = (a_ex > 0).sum(1), (b_ex > 0).sum(1)
    out = np.zeros(a.shape[0])  # na == 0 or nb == 0: identical up to rounding
    d = distance_matrix()
    # One source TC: all excess of b comes from it (and vice versa).
    one_a = (na == 1) & (nb > 0)
    if one_a.any():
        src = a_ex[one_a].argmax(1)
        out[one_a] = (b_ex[one_a] * d[src]).sum(1)
    one_b = (nb == 1) & (na > 1)
    if one_b.any():
        dst = b_ex[one_b].argmax(1)
        out[one_b] = (a_ex[one_b] * d[dst]).sum(1)
    general = (na > 1) & (nb > 1)
    if general.any():
        out[general] = _solve_general(a_ex[general], b_ex[general], solver)
    return out


@dataclass(frozen=True)
class EmdRunner:
    """How to run a batch: solver, parallelism, cache. Built from `EmdParams`."""

    solver: str = "auto"
    n_jobs: int = 1
    chunk_size: int = 4000
    dask_scheduler: str | None = None
    cache_dir: str | None = None
    progress: bool = True

    def __call__(self, a: np.ndarray, b: np.ndarray, desc: str = "exact EMD") -> np.ndarray:
        return exact_emd(a, b, solver=self.solver, n_jobs=self.n_jobs, chunk_size=self.chunk_size,
                         dask_scheduler=self.dask_scheduler, cache_dir=self.cache_dir,
                         progress=self.progress, desc=desc)


def _chunk_key(a: np.ndarray, b: np.ndarray, solver: str) -> str:
    h = hashlib.sha256()
    h.update(CACHE_VERSION.encode())
    h.update(solver.encode())
    h.update(np.ascontiguousarray(distance_matrix()).tobytes())
    h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(b, dtype=np.float64).tobytes())
    return h.hexdigest()


#: pairs of every cache hit that are solved again and must agree with the stored values
CACHE_SPOT_CHECKS = 4


def _cache_path(cache_dir: str, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.npz"


def _entry_bytes(key: str, values: np.ndarray) -> bytes:
    return key.encode() + np.ascontiguousarray(values, dtype=np.float64).tobytes()


def _cache_save(path: Path, key: str, values: np.ndarray) -> None:
    """An entry carries its key (the digest of its inputs) and the product's signature of
    key + values (`base.integrity`: a forger without the key cannot make one that verifies).
    A folder squatting on an entry's name is left alone: the chunk is just not cached."""
    if path.is_dir() or (path.exists() and not path.is_file()):
        log.warning("exact-EMD cache: %s is not a file; this chunk is not cached", path)
        return
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, emd=np.asarray(values, dtype=np.float64), key=np.array(key),
                 signature=np.array(sign_bytes(_entry_bytes(key, values))))


def _cache_load(path: Path, key: str, a: np.ndarray, b: np.ndarray, solver: str) -> np.ndarray | None:
    """The cached values of this chunk, or None (absent, damaged, or wrong: recompute).

    Never trusted on its word: the entry must name this key, carry the product's signature
    of key + values (an entry rewritten by anyone without the key, even self-consistently,
    fails here), and agree with a fresh solution of a few of its pairs."""
    try:
        with np.load(path, allow_pickle=False) as z:
            values, stored_key, signature = z["emd"], str(z["key"]), str(z["signature"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        log.warning("exact-EMD cache: %s is unreadable; recomputing it", path)
        return None
    n = a.shape[0]
    if (stored_key != key or values.shape != (n,) or values.dtype != np.float64
            or not bytes_verify(_entry_bytes(key, values), signature) or not np.isfinite(values).all()):
        log.warning("exact-EMD cache: %s does not match its key or the product's signature; recomputing it", path)
        return None
    probe = np.unique(np.linspace(0, n - 1, min(CACHE_SPOT_CHECKS, n)).astype(int))
    if not np.allclose(emd_chunk(a[probe], b[probe], solver), values[probe], rtol=1e-9, atol=1e-12):
        log.warning("exact-EMD cache: %s holds values that a fresh solution contradicts; recomputing it", path)
        return None
    return values


def _run_local(a: np.ndarray, b: np.ndarray, todo: list[tuple[int, int, int]], solver: str,
               n_jobs: int) -> Iterator[tuple[int, np.ndarray]]:
    if n_jobs < 0:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_jobs == 1 or len(todo) == 1:
        for idx, s, e in todo:
            yield idx, emd_chunk(a[s:e], b[s:e], solver)
        return
    runner = _run_forked if _fork_is_safe() else _run_loky
    yield from runner(a, b, todo, solver, n_jobs)


def _fork_is_safe() -> bool:
    """Forked workers inherit the pairs (no copy, no transfer) and run as fast as the parent
    (a spawned pool's workers are slower: bench/emd_throughput.py). Fork only
    where it is the platform's normal way (Linux) and before TensorFlow is loaded: forking a
    process whose runtime threads may hold locks is unsafe."""
    import multiprocessing as mp
    import sys

    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods() \
        and "tensorflow" not in sys.modules


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle


FORKED_JOB = 1000   # pairs per job of the forked workers: a short tail when they finish
FORKED_POLL_S = 0.05


def _forked_worker(a: np.ndarray, b: np.ndarray, jobs: list[tuple[int, int, int]], solver: str,
                   out, done, next_job, errors) -> None:
    """Take the next job from the shared counter, solve it, write its values into the
    shared buffer and flag it done (under the counter's lock, so the flag is seen after the
    values); until none is left. An exception goes to the parent, flagged 2."""
    _ignore_sigint()
    values = np.frombuffer(out)
    finished, flag = -1, 1
    while True:
        with next_job.get_lock():
            if finished >= 0:
                done[finished] = flag
            job = next_job.value
            next_job.value += 1
        if job >= len(jobs) or flag == 2:
            return
        _, s, e = jobs[job]
        try:
            values[s:e] = emd_chunk(a[s:e], b[s:e], solver)
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            errors.put(exc)
            flag = 2
        finished = job


def _run_forked(a: np.ndarray, b: np.ndarray, todo: list[tuple[int, int, int]], solver: str,
                n_jobs: int) -> Iterator[tuple[int, np.ndarray]]:
    """Forked workers inherit the pairs, take jobs from a shared counter and write results
    and done flags into shared memory; nothing is sent per job, the parent looks every
    FORKED_POLL_S (or when a worker exits): unlike a multiprocessing Pool with pickled
    results, no parent thread competes with the workers for the cores.
    Chunks (the cache's unit) are cut into jobs of FORKED_JOB pairs, so that the workers
    finish together; a chunk is yielded when all its jobs are done."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    prepare_solver(solver)   # compile (or load the compiled code) once, not in every worker
    ctx = mp.get_context("fork")
    jobs = [(pos, s, min(s + FORKED_JOB, e)) for pos, (_, start, e) in enumerate(todo)
            for s in range(start, e, FORKED_JOB)]
    chunk_jobs = np.searchsorted([pos for pos, _, _ in jobs], np.arange(len(todo) + 1))
    out, done = ctx.RawArray("d", a.shape[0]), ctx.RawArray("b", len(jobs))
    values, flags = np.frombuffer(out), np.frombuffer(done, dtype=np.int8)
    next_job, errors = ctx.Value("q", 0), ctx.SimpleQueue()
    workers = [ctx.Process(target=_forked_worker, args=(a, b, jobs, solver, out, done, next_job, errors),
                           daemon=True) for _ in range(min(n_jobs, len(jobs)))]
    pending = list(range(len(todo)))
    try:
        for w in workers:
            w.start()
        live = list(workers)
        while pending:
            exited = wait([w.sentinel for w in live], timeout=FORKED_POLL_S)
            live = [w for w in live if w.sentinel not in exited]
            with next_job.get_lock():   # flags read after the workers' writes
                snapshot = flags.copy()
            if (snapshot == 2).any():
                raise errors.get()
            for pos in [p for p in pending if snapshot[chunk_jobs[p]:chunk_jobs[p + 1]].all()]:
                idx, s, e = todo[pos]
                pending.remove(pos)
                yield idx, values[s:e].copy()
            if pending and not live:
                for w in workers:   # a closed sentinel can precede the exit status: reap first
                    w.join()
                codes = [w.exitcode for w in workers if w.exitcode]
                raise RuntimeError(f"an exact-EMD worker process died (exit code {codes[0] if codes else '?'})")
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join()
        errors.close()


def _run_loky(a: np.ndarray, b: np.ndarray, todo: list[tuple[int, int, int]], solver: str,
              n_jobs: int) -> Iterator[tuple[int, np.ndarray]]:
    import tempfile
    from concurrent.futures import as_completed

    from joblib.externals.loky import get_reusable_executor

    # The pairs reach the workers once, as .npy files in RAM-backed /dev/shm that each
    # worker memory-maps: no chunk is pickled, hashed or copied through a pipe. The
    # (joblib/loky) worker pool is reused across calls.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="econ-emd-", dir=shm) as tmp:
        paths = []
        for name, x in (("a", a), ("b", b)):
            paths.append(os.path.join(tmp, f"{name}.npy"))
            np.save(paths[-1], x)
        executor = get_reusable_executor(max_workers=n_jobs, reuse=True)
        futures = [executor.submit(_mapped_chunk, idx, paths[0], paths[1], s, e, solver)
                   for idx, s, e in todo]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _mapped_chunk(idx: int, path_a: str, path_b: str, start: int, stop: int,
                  solver: str) -> tuple[int, np.ndarray]:
    return _indexed(idx, np.load(path_a, mmap_mode="r"), np.load(path_b, mmap_mode="r"), start, stop, solver)


def _indexed(idx: int, a: np.ndarray, b: np.ndarray, start: int, stop: int,
             solver: str) -> tuple[int, np.ndarray]:
    return idx, emd_chunk(a[start:stop], b[start:stop], solver)


def _run_dask(a: np.ndarray, b: np.ndarray, todo: list[tuple[int, int, int]], solver: str,
              address: str) -> Iterator[tuple[int, np.ndarray]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ToolError(f"emd.dask_scheduler {address}: the Dask client is not installed "
                        "(pip install distributed)") from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ToolError(f"emd.dask_scheduler {address}: cannot reach the Dask scheduler ({why})") from None
    with client:
        fa, fb = client.scatter([a, b], broadcast=False)
        futures = [client.submit(_indexed, idx, fa, fb, s, e, solver, pure=False) for idx, s, e in todo]
        for fut in as_completed(futures):
            yield fut.result()


def exact_emd(a: np.ndarray, b: np.ndarray, *, solver: str = "auto", n_jobs: int = 1,
              chunk_size: int = 4000, dask_scheduler: str | None = None,
              cache_dir: str | Path | None = None, progress: bool = False,
              desc: str = "exact EMD") -> np.ndarray:
    """Exact EMD of each row pair (a[i], b[i]) of two (n, 48) arrays of modules, float64.

    n_jobs: worker processes (-1 all cores); dask_scheduler: address of a running Dask
    scheduler (overrides n_jobs); cache_dir: on-disk cache keyed by chunk content.
    """
    a, b = check_pairs(a, b)
    solver = resolve_solver(solver)
    n = a.shape[0]
    out = np.empty(n)
    bounds = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    keys: dict[int, tuple[str, Path]] = {}
    todo = []
    for idx, (s, e) in enumerate(bounds):
        if cache_dir is not None:
            key = _chunk_key(a[s:e], b[s:e], solver)
            keys[idx] = (key, _cache_path(str(cache_dir), key))
            cached = _cache_load(keys[idx][1], key, a[s:e], b[s:e], solver)
            if cached is not None:
                out[s:e] = cached
                continue
        todo.append((idx, s, e))
    from tqdm.auto import tqdm

    n_todo = sum(e - s for _, s, e in todo)
    with tqdm(total=n, initial=n - n_todo, desc=desc, unit="pair", disable=not progress,
              leave=False, dynamic_ncols=True) as bar:
        runner = (_run_dask(a, b, todo, solver, dask_scheduler) if dask_scheduler
                  else _run_local(a, b, todo, solver, n_jobs))
        for idx, values in runner:
            s, e = bounds[idx]
            out[s:e] = values
            if cache_dir is not None:
                _cache_save(keys[idx][1], keys[idx][0], values)
            bar.update(e - s)
    return out
