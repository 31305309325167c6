import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import econ_emd.emd.exact as emd_mod
from econ_emd.emd.exact import exact_emd, pot_dense_emd
from econ_emd.geometry import distance_matrix
from econ_emd.data.pairs import perturb
from econ_emd.data.params import PerturbParams


def unit(i, n=48):
    x = np.zeros(n)
    x[i] = 1.0
    return x


@pytest.mark.parametrize("solver", ["simplex", "wasserstein", "pot"])
def test_unit_mass_between_two_tcs_is_their_distance(solver):
    d = distance_matrix()
    pairs = [(0, 1), (0, 47), (5, 30), (16, 44)]
    a = np.array([unit(i) for i, _ in pairs])
    b = np.array([unit(j) for _, j in pairs])
    got = exact_emd(a, b, solver=solver)
    np.testing.assert_allclose(got, [d[i, j] for i, j in pairs], rtol=1e-12)
    np.testing.assert_allclose(got[0], 2.0, rtol=1e-9)


@pytest.mark.parametrize("solver", ["simplex", "wasserstein", "pot"])
def test_hand_computed_split_mass(solver):
    # half of the charge moves one step, the other half stays: EMD = 0.5 * 2.0
    a = np.zeros(48); a[[0, 1]] = [3.0, 3.0]
    b = np.zeros(48); b[[0, 4]] = [10.0, 10.0]   # scale does not matter (unit sum)
    d = distance_matrix()
    assert exact_emd(a[None], b[None], solver=solver)[0] == pytest.approx(0.5 * d[1, 4], rel=1e-12)
    # two units each moving to its own neighbour (general solver path, 2x2 problem)
    a = np.zeros(48); a[[0, 8]] = 1
    b = np.zeros(48); b[[1, 9]] = 1
    assert exact_emd(a[None], b[None], solver=solver)[0] == pytest.approx(0.5 * (d[0, 1] + d[8, 9]), rel=1e-12)


def test_identical_and_scaled_modules_give_zero(modules):
    got = exact_emd(modules[:50], 7.0 * modules[:50])
    np.testing.assert_allclose(got, 0.0, atol=1e-12)


@pytest.mark.parametrize("solver", ["simplex", "wasserstein", "pot"])
def test_matches_dense_pot_and_is_symmetric(modules, solver):
    a, b = modules[:150], modules[150:300]
    rng = np.random.default_rng(0)
    c = perturb(a, PerturbParams(), rng)
    for x, y in ((a, b), (a, c)):
        got = exact_emd(x, y, solver=solver)
        ref = np.array([pot_dense_emd(x[i], y[i]) for i in range(len(x))])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(exact_emd(y, x, solver=solver), got, atol=1e-12)
    assert (ref > 0).all()


def test_simplex_on_degenerate_problems_matches_dense_pot():
    """Few distinct charges on random TCs: ties in costs and masses, degenerate bases (a
    row and a column exhausted at once), many pivots of zero flow."""
    from econ_emd.emd.simplex import emd_rows

    rng = np.random.default_rng(5)
    n = 3000
    a = rng.integers(0, 3, (n, 48)) * (rng.random((n, 48)) < rng.random((n, 1)))
    b = rng.integers(0, 3, (n, 48)) * (rng.random((n, 48)) < rng.random((n, 1)))
    a[a.sum(1) == 0, 0] = 1
    b[b.sum(1) == 0, 47] = 1
    a, b = a.astype(float), b.astype(float)
    out, status = np.empty(n), np.zeros(n, dtype=np.int64)
    emd_rows(a, b, distance_matrix(), out, status)
    assert not status.any(), "the simplex handed pairs back"
    ref = np.array([pot_dense_emd(a[i], b[i]) for i in range(n)])
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


def test_prepare_solver_compiles_the_simplex_only():
    from econ_emd.emd.exact import prepare_solver
    from econ_emd.emd.simplex import emd_rows

    assert prepare_solver("pot") == 0.0 and prepare_solver("wasserstein") == 0.0
    # in a fresh process: nothing compiled before, the chunk signature ready after
    code = ("from econ_emd.emd.exact import prepare_solver; from econ_emd.emd.simplex import emd_rows; "
            "n0 = len(emd_rows.signatures); prepare_solver('pot'); n1 = len(emd_rows.signatures); "
            "prepare_solver('simplex'); print(n0, n1, len(emd_rows.signatures))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["0", "0", "1"], out.stderr[-2000:]


def test_pairs_the_simplex_hands_back_are_solved_by_the_fallback(modules, monkeypatch):
    import econ_emd.emd.simplex as simplex

    def hand_back_odd_rows(a, b, dist, out, status):
        status[:] = np.arange(len(out)) % 2
        out[:] = np.where(status == 1, np.nan, 0.0)

    a, b = modules[:40], modules[40:80]
    want = exact_emd(a, b, solver="pot")
    monkeypatch.setattr(simplex, "emd_rows", hand_back_odd_rows)
    got = exact_emd(a, b, solver="simplex")
    np.testing.assert_allclose(got[1::2], want[1::2], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[::2], 0.0)


@pytest.mark.parametrize("fork", [False, True], ids=["loky", "fork"])
def test_parallel_equals_serial(modules, monkeypatch, tmp_path, fork):
    a, b = modules[:300], modules[300:]
    serial = exact_emd(a, b, n_jobs=1, chunk_size=64)
    if fork and "tensorflow" in sys.modules:
        # never fork a process with TensorFlow's threads: check the forked pool in a fresh one
        code = ("import numpy as np, sys; from econ_emd.emd.exact import exact_emd, _fork_is_safe; "
                "assert _fork_is_safe(); a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); "
                "np.save(sys.argv[3], exact_emd(a, b, n_jobs=2, chunk_size=64))")
        paths = [str(tmp_path / n) for n in ("a.npy", "b.npy", "out.npy")]
        np.save(paths[0], a)
        np.save(paths[1], b)
        subprocess.run([sys.executable, "-c", code, *paths], check=True, cwd=Path(__file__).parent.parent)
        parallel = np.load(paths[2])
    else:
        monkeypatch.setattr(emd_mod, "_fork_is_safe", lambda: fork)
        parallel = exact_emd(a, b, n_jobs=2, chunk_size=64)
    np.testing.assert_array_equal(serial, parallel)


FORKED_FAILURE = """
import os, sys, numpy as np
import econ_emd.emd.exact as emd_mod
real = emd_mod.emd_chunk
def failing(a, b, solver):
    if a.shape[0] == 10:          # the last, short chunk (138 = 4 x 32 + 10)
        if sys.argv[1] == "raise":
            raise ValueError("boom in a worker")
        os._exit(3)
    return real(a, b, solver)
emd_mod.emd_chunk = failing
assert emd_mod._fork_is_safe()
x = np.random.default_rng(0).random((138, 48))
try:
    emd_mod.exact_emd(x, x[::-1].copy(), n_jobs=2, chunk_size=32)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("how, message", [("raise", "ValueError boom in a worker"),
                                          ("die", "RuntimeError an exact-EMD worker process died (exit code 3)")])
def test_forked_worker_failures_reach_the_caller(how, message):
    # in a fresh process: never fork one that holds TensorFlow's threads
    done = subprocess.run([sys.executable, "-c", FORKED_FAILURE, how], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == message, done.stderr


def test_cache_avoids_recomputation(modules, tmp_path, monkeypatch):
    a, b = modules[:200], modules[200:400]
    first = exact_emd(a, b, chunk_size=64, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("*.npz"))) == 4
    real = emd_mod.emd_chunk

    def boom(x, y, solver):
        if len(x) > emd_mod.CACHE_SPOT_CHECKS:      # a hit re-solves only its spot checks
            raise AssertionError("recomputed a cached chunk")
        return real(x, y, solver)

    monkeypatch.setattr(emd_mod, "emd_chunk", boom)
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), first)
    # a changed pair set is a different key: it must be computed
    with pytest.raises(AssertionError, match="recomputed"):
        exact_emd(a, b[::-1].copy(), chunk_size=64, cache_dir=tmp_path)


def test_damaged_cache_entry_is_recomputed(modules, tmp_path):
    a, b = modules[:64], modules[64:128]
    first = exact_emd(a, b, chunk_size=64, cache_dir=tmp_path)
    (entry,) = tmp_path.rglob("*.npz")
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), first)


def _poison(entry, values, signature):
    with np.load(entry) as z:
        key = str(z["key"])
    np.savez(entry, emd=values, key=np.array(key), signature=np.array(signature(key, values)))


def test_poisoned_cache_entry_is_recomputed_not_trusted(modules, tmp_path):
    """A valid file with wrong values: its signature fails; a self-consistent forgery (a
    digest of key + values recomputed, as anyone can) fails too, even where the spot check
    would pass (only unprobed pairs changed); an entry moved under another key fails. Each
    time the chunk is solved again and the right values come back. Negative control: the
    same change signed with the product's key is taken as it is (the signature is what
    catches it)."""
    import hashlib

    from econ_emd.base.integrity import sign_bytes

    a, b = modules[:64], modules[64:128]
    first = exact_emd(a, b, chunk_size=64, cache_dir=tmp_path)
    (entry,) = tmp_path.rglob("*.npz")
    with np.load(entry) as z:
        stale = str(z["signature"])
    wrong = first.copy()
    wrong[:60] = 1.0
    _poison(entry, wrong, lambda k, v: stale)                 # values changed, signature kept
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), first)
    unprobed = first.copy()
    unprobed[[1, 2, 30]] += 0.5                               # the spot check probes rows 0, 21, 42, 63
    digest = lambda k, v: hashlib.sha256(emd_mod._entry_bytes(k, v)).hexdigest()  # noqa: E731
    _poison(entry, unprobed, digest)                          # a self-consistent forgery
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), first)
    with np.load(entry) as z:                                 # and the entry was rewritten right
        np.testing.assert_array_equal(z["emd"], first)
    _poison(entry, unprobed, lambda k, v: sign_bytes(emd_mod._entry_bytes(k, v)))
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), unprobed)
    other = tmp_path / "other"                                # an entry moved under another key
    exact_emd(a, b[::-1].copy(), chunk_size=64, cache_dir=other)
    (moved,) = other.rglob("*.npz")
    moved.replace(entry)
    np.testing.assert_array_equal(exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), first)


def test_invalid_pairs_raise():
    good = np.ones((2, 48))
    with pytest.raises(ValueError, match="zero charge sum"):
        exact_emd(good, np.zeros((2, 48)))
    with pytest.raises(ValueError, match="negative"):
        exact_emd(good, -good)
    with pytest.raises(ValueError, match="NaN"):
        exact_emd(good, np.full((2, 48), np.nan))
    with pytest.raises(ValueError, match="charge sums overflow"):
        exact_emd(good, np.full((2, 48), 1e308))
    with pytest.raises(ValueError, match="equal shape"):
        exact_emd(good, np.ones((3, 48)))


def test_dask_cluster_equals_local(modules):
    distributed = pytest.importorskip("distributed")
    a, b = modules[:200], modules[200:400]
    local = exact_emd(a, b, chunk_size=50)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = exact_emd(a, b, chunk_size=50, dask_scheduler=cluster.scheduler_address)
    np.testing.assert_array_equal(remote, local)


def test_unreachable_dask_scheduler_is_a_clear_error(modules, monkeypatch):
    monkeypatch.setattr(emd_mod, "DASK_CONNECT_TIMEOUT", "2s")
    with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler"):
        exact_emd(modules[:4], modules[4:8], dask_scheduler="tcp://127.0.0.1:9")
