"""Fault injection: interrupts (SIGINT, SIGKILL) at known points, two runs on one run
directory, tampered artifacts, a full disk. After each fault a rerun must finish with
outputs identical to an uninterrupted run, and nothing half-written may count as done.

Interrupts are deterministic: the training pauses at a named epoch (ECON_EMD_TEST_PAUSE)
and announces it with a file, and only then is the signal sent, so no test races the
machine's load."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR, load_config

pytestmark = pytest.mark.faults

SMOKE = str(CONFIG_DIR / "smoke.yaml")
FAST = ["--set", "encoder.epochs=3", "--set", "encoder.patience=3", "--set", "compare_losses.losses=[mse]",
        "--set", "compare_losses.float_twin=false", "--set", "compare_losses.seeds=1", "--set", "firmware.n_check=40",
        "--set", "rtl.enabled=false",
        # the fault tests exercise the registry, not the comparison's content: one link count
        "--set", "compare_econt.link_counts=[2]", "--set", "compare_econt.signals=false"]
PAUSE_AT = "encoder[emd_cnn]:2"        # after the second of three encoder epochs


def _cmd(run: Path) -> list[str]:
    return [sys.executable, "-m", "econ_emd", "pipeline", "-c", SMOKE, "--run-dir", str(run), *FAST]


def _sigint_as_a_terminal_sends_it() -> None:
    """In the child before exec: SIGINT back to its default disposition. A test runner
    started in the background by a non-interactive shell (`cmd &`) inherits SIGINT ignored,
    and an ignored SIGINT stays ignored across exec, so Python would not install its
    KeyboardInterrupt handler and the signal this suite sends would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _paused(run: Path, flag: Path, point: str = PAUSE_AT) -> subprocess.Popen:
    """A pipeline that pauses at `point`; returns once it is there."""
    env = {**os.environ, "ECON_EMD_TEST_PAUSE": point, "ECON_EMD_TEST_PAUSE_FILE": str(flag)}
    proc = subprocess.Popen(_cmd(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_sigint_as_a_terminal_sends_it)
    deadline = time.monotonic() + 900
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the pipeline never reached the pause point: " + proc.communicate()[1][-2000:])
        time.sleep(0.1)
    return proc


def _interrupt(proc: subprocess.Popen, sig: int) -> str:
    """Send `sig` to a paused pipeline and return its stderr once it has ended; a pipeline
    that outlives the signal is killed, so a failing test leaves nothing running."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=300)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"signal {sig} did not end the paused pipeline within 300 s")


def _weights(path: Path) -> list[np.ndarray]:
    out = []
    with h5py.File(path) as fh:
        fh.visititems(lambda n, o: out.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def _same_outputs(a: Path, b: Path) -> None:
    """The artifacts that make the result: labels, every model's weights, the bit-accuracy checks."""
    with h5py.File(a / "label" / "labels.h5") as fa, h5py.File(b / "label" / "labels.h5") as fb:
        np.testing.assert_array_equal(fa["perturbed/train/emd"][()], fb["perturbed/train/emd"][()])
    for rel in ("emd_cnn/emd_cnn.h5", "encoder/encoder.h5", "encoder/decoder.h5",
                "compare_losses/mse/seed_0/encoder.h5"):
        for wa, wb in zip(_weights(a / rel), _weights(b / rel), strict=True):
            np.testing.assert_array_equal(wa, wb, err_msg=rel)
    ca, cb = (json.loads((r / "csim" / "summary.json").read_text()) for r in (a, b))
    assert ca["testbench"]["bit_exact_fraction"] == cb["testbench"]["bit_exact_fraction"] == 1.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the fault tests' configuration."""
    run = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(_cmd(run), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_training_resumes_to_the_uninterrupted_result(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = _paused(run, tmp_path / "paused")
    err = _interrupt(proc, sig)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err[-2000:]
    if sig == signal.SIGINT:
        assert "interrupted" in err
    assert not (run / "encoder").exists(), "a half-built stage carries the final name"
    assert (run / ".encoder.partial" / "checkpoint.npz").exists()
    rerun = subprocess.run(_cmd(run), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for stage in ("data", "label", "emd_cnn"):
        assert f"{stage}: up to date, skipped" in rerun.stderr
    assert "encoder[emd_cnn]: resuming after epoch 2" in rerun.stderr
    _same_outputs(reference, run)
    leftovers = [p for p in run.rglob(".*") if p.name not in (".lock", ".econ-emd-run")]
    assert not leftovers, leftovers


#: the stages of the fault tests' pipeline (rtl is disabled in FAST)
STAGES_RUN = ["data", "label", "emd_cnn", "encoder", "compare_losses", "compare_econt", "firmware", "csim",
              "resources"]


@pytest.mark.parametrize("stage", STAGES_RUN)
def test_interrupt_at_every_stage_before_its_outputs_get_their_name(tmp_path, reference, stage):
    """SIGINT at the last moment of a stage (its outputs and summary complete in the work
    folder, not yet renamed): the stage does not count as done; the rerun keeps every
    earlier stage, rebuilds this one and what depends on it, and ends with the reference's
    results (weights, labels, bit-exactness) and no debris."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run, symlinks=True)
    shutil.rmtree(run / stage)
    proc = _paused(run, tmp_path / "paused", f"before-swap:{stage}")
    err = _interrupt(proc, signal.SIGINT)
    assert proc.returncode == 130, err[-2000:]
    assert not (run / stage).exists(), "an interrupted stage carries the final name"
    assert (run / f".{stage}.partial" / "summary.json").exists()
    rerun = subprocess.run(_cmd(run), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name in STAGES_RUN[:STAGES_RUN.index(stage)]:
        assert f"{name}: up to date, skipped" in rerun.stderr, (name, rerun.stderr[-3000:])
    assert f"{stage}: up to date, skipped" not in rerun.stderr
    assert all(_current(run).values())
    _same_outputs(reference, run)
    leftovers = [p for p in run.rglob(".*") if p.name not in (".lock", ".econ-emd-run")]
    assert not leftovers, leftovers


def test_second_run_on_a_busy_run_directory_exits_at_once(tmp_path):
    run = tmp_path / "run"
    proc = _paused(run, tmp_path / "paused")
    try:
        t0 = time.monotonic()
        second = subprocess.run(_cmd(run), capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        line = [x for x in second.stderr.splitlines() if x.startswith("econ-emd: error:")]
        assert len(line) == 1 and f"in use by pid {proc.pid} (econ-emd pipeline" in line[0], second.stderr
        assert time.monotonic() - t0 < 120
    finally:
        proc.kill()
        proc.communicate()
    # the holder died: its lock is stale and the next run takes it over
    third = subprocess.run([sys.executable, "-m", "econ_emd", "data", "-c", SMOKE, "--run-dir", str(run)],
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]


def test_checking_an_up_to_date_run_writes_nothing(reference):
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in reference.rglob("*") if p.is_file()
              and p.name != ".lock"}
    again = subprocess.run(_cmd(reference), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in reference.rglob("*") if p.is_file()
             and p.name != ".lock"}
    assert after == before


@pytest.fixture
def finished(tmp_path, reference) -> Path:
    """A private copy of the reference run (the tests below damage it)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(reference, run, symlinks=True)
    return run


def _current(run: Path) -> dict[str, bool]:
    from econ_emd.registry import STAGES, is_current

    cfg = load_config(SMOKE, [s for s in FAST if s != "--set"])
    cfg.run_dir = str(run)
    return {name: is_current(cfg, run, name) for name in STAGES if STAGES[name].enabled(cfg)}


# a damaged or replaced artifact of every stage, and the stages it must make stale
DAMAGE = [
    ("data/modules.h5", "flip", ["data", "label", "emd_cnn", "encoder", "compare_losses", "compare_econt", "firmware",
                                 "csim", "resources"]),
    # the comparison of these tests trains one row (compare_losses.losses: [mse]) on the modules: it
    # reads neither the labels, nor the EMD-CNN, nor the encoder stage
    ("label/labels.h5", "flip", ["label", "emd_cnn", "encoder", "compare_econt", "firmware", "csim", "resources"]),
    ("emd_cnn/emd_cnn.h5", "replace", ["emd_cnn", "encoder", "compare_econt", "firmware", "csim", "resources"]),
    ("encoder/encoder.h5", "flip", ["encoder", "compare_econt", "firmware", "csim", "resources"]),
    ("compare_losses/compare_losses.md", "edit", ["compare_losses"]),
    ("compare_econt/compare_econt.md", "edit", ["compare_econt"]),
    ("firmware/hls_project/firmware/myproject.cpp", "edit", ["firmware", "csim", "resources"]),
    ("firmware/hls_project/firmware/parameters.h", "delete", ["firmware", "csim", "resources"]),
    ("firmware/tb_expected.npy", "flip", ["firmware", "csim", "resources"]),
    ("csim/csim.md", "edit", ["csim"]),
    ("resources/resources.md", "delete", ["resources"]),
    ("label/summary.json", "forge", ["label", "emd_cnn", "encoder", "compare_econt", "firmware", "csim", "resources"]),
]


@pytest.mark.parametrize("rel,how,stale", DAMAGE, ids=[f"{d[0]}-{d[1]}" for d in DAMAGE])
def test_damaged_artifact_makes_its_stage_and_everything_after_it_stale(finished, rel, how, stale):
    assert all(_current(finished).values())
    path = finished / rel
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "forge":                       # a summary claiming another stage hash
        path.write_text(json.dumps({**json.loads(path.read_text()), "stage_hash": "0" * 16}))
    elif how == "edit":
        path.write_text(path.read_text() + " ")
    elif how == "replace":                     # another, valid model file in its place
        path.write_bytes((finished / "compare_losses" / "mse" / "seed_0" / "encoder.h5").read_bytes())
    else:
        path.unlink()
    now = _current(finished)
    assert sorted(k for k, v in now.items() if not v) == sorted(stale)


def test_damaged_firmware_project_is_rebuilt_identically(finished, reference):
    (finished / "firmware" / "hls_project" / "firmware" / "myproject.cpp").write_text("// hand-edited\n")
    rerun = subprocess.run(_cmd(finished), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "firmware: up to date" not in rerun.stderr
    assert (finished / "firmware" / "hls_project" / "firmware" / "myproject.cpp").read_text() == \
        (reference / "firmware" / "hls_project" / "firmware" / "myproject.cpp").read_text()
    _same_outputs(reference, finished)


def test_full_disk_is_one_line_and_exit_3_then_a_rerun_finishes(tmp_path, capsys, monkeypatch):
    import shutil

    run = tmp_path / "run"
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    assert main(["data", "-c", SMOKE, "--run-dir", str(run), "-q"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no space left" in err and len(err.strip().splitlines()) == 1, err
    assert not (run / "data").exists()
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert main(["data", "-c", SMOKE, "--run-dir", str(run), "-q"]) == 0


def test_refused_write_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch):
    """A read-only or full file system raising on a plain write (as root, chmod cannot make one)."""
    import econ_emd.base.artifacts as artifacts

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "x"))

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", refuse)
    assert main(["data", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "-q"]) == 3
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_work_folder_of_another_configuration_is_not_resumed(tmp_path):
    """A killed run's work folder is kept only for the configuration it was built for; a
    finished one takes its final name with no marker left."""
    from econ_emd.base.artifacts import WORK_MARKER, building

    final = tmp_path / "encoder"
    with pytest.raises(KeyboardInterrupt):
        with building(final, "hash-a") as work:
            (work / "checkpoint.npz").write_bytes(b"state of a")
            raise KeyboardInterrupt
    assert not final.exists()
    with pytest.raises(KeyboardInterrupt):
        with building(final, "hash-a") as work:
            assert (work / "checkpoint.npz").exists()        # the same configuration resumes
            raise KeyboardInterrupt
    with building(final, "hash-b") as work:
        assert not (work / "checkpoint.npz").exists() and (work / WORK_MARKER).read_text() == "hash-b"
        (work / "out").write_text("b")
    assert (final / "out").read_text() == "b" and not (final / WORK_MARKER).exists()


def test_stale_temporaries_are_swept(tmp_path):
    from econ_emd.base.rundir import sweep_debris
    from econ_emd.registry import RUN_FILES, product_folders, unit_folders

    (tmp_path / "encoder").mkdir()
    junk = [tmp_path / "encoder" / ".checkpoint.npz.abc12_x9.tmp.npz", tmp_path / ".report.md.x1yz0000.tmp"]
    for j in junk:
        j.write_text("half")
    (tmp_path / ".data.old").mkdir()
    (tmp_path / "scan" / ".5links_qkeras.old").mkdir(parents=True)
    keep = [tmp_path / "encoder" / "encoder.h5", tmp_path / "encoder" / ".notes.tmp", tmp_path / ".mine.old" / "f",
            tmp_path / "data" / ".backup.old" / "f", tmp_path / "mine" / ".x.abcdefgh.tmp"]
    for k in keep:
        k.parent.mkdir(parents=True, exist_ok=True)
        k.write_text("the user's")
    sweep_debris(tmp_path, product_folders(), unit_folders(), RUN_FILES)
    assert not any(j.exists() for j in junk) and not (tmp_path / ".data.old").exists()
    assert not (tmp_path / "scan" / ".5links_qkeras.old").exists() and all(k.exists() for k in keep)
