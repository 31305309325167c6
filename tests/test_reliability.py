"""A catalogue per reliability class: what must never happen to a user's files and time.

LOST: user files or finished work destroyed, or a wrong artifact accepted; HANG: memory
runs out instead of a refusal; TRACEBACK: a value that passed validation crashes later;
MISLEADING: a message that does not name what the user wrote; SILENT: a wrong result
without a word. Every case asserts the exit code and one line naming the key, file or
path; a LOST case also that the user's files are intact; a HANG case runs in a subprocess
under an address-space limit (a regression fails instead of swapping the machine) and
must be refused within seconds."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import error_line
from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR

SMOKE = str(CONFIG_DIR / "smoke.yaml")
HEADER = ",".join(f"CALQ_{i}" for i in range(48))


def _csv(rows: list[list[float]]) -> str:
    return HEADER + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


def _fails(capsys, argv: list[str], pattern: str, code: int = 2) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == code, err[-3000:]
    line = error_line(err)
    assert re.search(pattern, line), line
    return line


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `root` (links not followed): its kind and content."""
    out = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(here) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", b"")
            elif p.is_file():
                out[rel] = ("file", p.read_bytes())
            else:                                           # a FIFO or device: never opened
                out[rel] = ("special", str(stat.S_IFMT(os.lstat(p).st_mode)))
    return out


# --- LOST ---------------------------------------------------------------------------------

def _users_folder(root: Path) -> Path:
    """A folder of the user's, with names an over-eager sweep would take for debris."""
    root.mkdir()
    (root / ".notes.tmp").write_text("my notes")
    (root / ".config.tmpl").write_text("template")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "objects" / ".pack.tmp").write_text("pack")
    (root / ".backup.old").mkdir()
    (root / ".backup.old" / "thesis.tex").write_text("chapter 1")
    (root / "analysis.py").write_text("print(1)")
    return root


def test_lost_a_folder_of_the_users_is_not_a_run_folder_unless_adopted(tmp_path, capsys):
    """Refused with one line and nothing written; adopted explicitly, the run happens beside
    the user's files and sweeps none of them."""
    folder = _users_folder(tmp_path / "mine")
    before = _snapshot(folder)
    _fails(capsys, ["data", "-c", SMOKE, "--run-dir", str(folder), "-q"],
           r"mine: a folder of files the product did not write .* is not a run folder; .*--adopt-run-dir")
    assert _snapshot(folder) == before                      # not even a lock file
    assert main(["data", "-c", SMOKE, "--run-dir", str(folder), "-q", "--adopt-run-dir"]) == 0
    after = _snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert (folder / ".econ-emd-run").is_file() and (folder / "data" / "modules.h5").is_file()
    assert main(["report", "-c", SMOKE, "--run-dir", str(folder), "-q"]) == 0    # a run folder now
    assert {k: v for k, v in _snapshot(folder).items() if k in before} == before


def test_lost_an_input_inside_a_stage_folder_is_refused_before_anything_is_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    rows = [[10.0 + i] * 48 for i in range(30)]
    (run / "data" / "mine.csv").write_text(_csv(rows))
    before = _snapshot(run)
    mine = str(run / "data" / "mine.csv")
    for command in ("data", "pipeline"):
        _fails(capsys, [command, "-c", SMOKE, "--run-dir", str(run), "-q", "--adopt-run-dir",
                        "--set", "data.source=csv", "--set", f"data.path={mine}"],
               r"data\.path .*mine\.csv: inside the folder of 'data' .*rebuilds and replaces; move it out")
        assert {k: v for k, v in _snapshot(run).items() if k in before} == before


def test_lost_econt_firmware_output_never_replaces_the_users_folders(tmp_path, capsys):
    vector = tmp_path / "vector"
    vector.mkdir()
    (vector / "init.yaml").write_text("algorithm: 4\n")
    (vector / "testOutput.csv").write_text("TX_DATA_0\n0\n")
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "paper.md").write_text("draft")
    afile = tmp_path / "afile"
    afile.write_text("x")
    before = _snapshot(tmp_path)
    base = ["econt", "firmware", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "-q"]
    _fails(capsys, [*base, str(vector), "-o", str(mine)], r"results: a folder with files the product did not write")
    _fails(capsys, [*base, str(vector), "-o", str(vector)], r"--output .*vector: a folder with files the product")
    _fails(capsys, [*base, str(vector), "-o", str(afile)], r"afile: exists and is not a folder the product made")
    _fails(capsys, [*base, str(vector), "-o", str(afile / "sub")], r"afile/sub: .*afile is not a folder")
    assert _snapshot(tmp_path) == before


def test_lost_econt_run_output_is_a_regular_file_or_nothing(tmp_path, capsys):
    """A device, a link, a FIFO, the input itself: refused before any work, left as they were."""
    inp, asic = tmp_path / "in.csv", tmp_path / "init.yaml"
    inp.write_text("RX_DATA_0\n0\n")
    asic.write_text("algorithm: 0\n")
    target = tmp_path / "target.csv"
    target.write_text("keep")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    before = _snapshot(tmp_path)
    run = ["econt", "run", "-i", str(inp), "--asic", str(asic), "-o"]
    _fails(capsys, [*run, "/dev/full"], r"--output /dev/full: not a regular file \(a device, FIFO or socket\)")
    _fails(capsys, [*run, str(link)], r"link\.csv: a symbolic link; name a regular file")
    _fails(capsys, [*run, str(fifo)], r"pipe\.csv: not a regular file")
    _fails(capsys, [*run, str(inp)], r"--output .*in\.csv: the command's input")
    _fails(capsys, [*run, str(tmp_path)], r"a folder; name a new or regular file")
    assert _snapshot(tmp_path) == before
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_lost_a_hand_edited_or_forged_summary_is_not_trusted(tmp_path, capsys, caplog):
    """The report prints what the stage measured, never a figure edited into its summary:
    kept hash and all, an edited summary (or one with a digest recomputed, as anyone can)
    does not verify, the stage is not current, the report leaves it out, and the rerun
    restores it."""
    from econ_emd.config import load_config
    from econ_emd.registry import is_current

    run = tmp_path / "run"
    args = ["-c", SMOKE, "--run-dir", str(run), "-q"]
    assert main(["data", *args]) == 0
    path = run / "data" / "summary.json"
    honest = json.loads(path.read_text())
    cfg = load_config(SMOKE)
    assert is_current(cfg, run, "data")
    for forged in ({**honest, "n_modules": {"train": 1_000_000, "val": 90, "test": 90}},
                   {**honest, "n_modules": {"train": 1_000_000, "val": 90, "test": 90},
                    "signature": hashlib.sha256(b"recomputed").hexdigest()}):
        path.write_text(json.dumps(forged))
        assert not is_current(cfg, run, "data")
        assert main(["report", *args]) == 0
        md = (run / "report.md").read_text()
        assert "1,000,000" not in md and "not signed by this product" in md and "data" in md.split("product")[-1]
    assert main(["data", *args]) == 0
    assert json.loads(path.read_text())["n_modules"] == honest["n_modules"] and is_current(cfg, run, "data")


def test_lost_a_forged_cache_entry_is_recomputed(modules, tmp_path):
    """A self-consistent forgery (values changed where the spot check does not look, the
    digest recomputed) is caught by the signature and recomputed."""
    import econ_emd.emd.exact as ex

    a, b = modules[:64], modules[64:128]
    right = ex.exact_emd(a, b, chunk_size=64, cache_dir=tmp_path)
    (entry,) = tmp_path.rglob("*.npz")
    with np.load(entry) as z:
        key = str(z["key"])
    wrong = right.copy()
    wrong[[5, 6, 7]] *= 2
    np.savez(entry, emd=wrong, key=np.array(key),
             signature=np.array(hashlib.sha256(ex._entry_bytes(key, wrong)).hexdigest()))
    np.testing.assert_array_equal(ex.exact_emd(a, b, chunk_size=64, cache_dir=tmp_path), right)


# --- HANG ---------------------------------------------------------------------------------

#: the address space a refusal may use: the interpreter, numpy, pandas and h5py, no more
HANG_LIMIT = 2 << 30
HANG_SECONDS = 30


def _refused_quickly(argv: list[str], pattern: str, cwd: Path) -> None:
    """Run the CLI in a subprocess limited to HANG_LIMIT of address space: it must exit 2
    with one line matching `pattern`, within HANG_SECONDS, with under 700 MB resident."""
    script = ("import resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({HANG_LIMIT}, {HANG_LIMIT}))\n"
              "from econ_emd.cli import main\n"
              "rc = main(sys.argv[1:])\n"
              # the peak resident memory of this program (VmHWM: ru_maxrss would carry the forking
              # test process's own peak across exec)
              "peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
              "print('maxrss', peak, file=sys.stderr)\n"
              "sys.exit(rc)\n")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=HANG_SECONDS * 4)
    seconds = time.monotonic() - t0
    assert done.returncode == 2, done.stderr[-3000:]
    line = error_line(done.stderr)
    assert re.search(pattern, line), line
    maxrss_kb = int(re.search(r"maxrss (\d+)", done.stderr).group(1))
    assert seconds < HANG_SECONDS and maxrss_kb < 700 * 1024, (seconds, maxrss_kb)


def _billion_laughs(path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    path.write_text("\n".join(lines) + "\n")             # ~400 bytes, 10^9 values


def _huge_declared_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as fh:                       # a few kB on disk, 19 GB declared
        fh.create_dataset("modules", shape=(50_000_000, 48), dtype="f8", chunks=(1024, 48))


def _wide_row(path: Path) -> None:
    with open(path, "w") as fh:
        fh.write(HEADER + "\n")
        fh.write("1," * 5_000_000 + "1\n")                   # one row of 5,000,001 fields


def _wide_link_row(path: Path) -> None:
    with open(path, "w") as fh:
        fh.write(",".join(f"RX_DATA_{i}" for i in range(12)) + "\n")
        fh.write("0," * 5_000_000 + "0\n")


ASIC = str(Path(__file__).parent / "fixtures" / "econt_vectors" / "BC_2eTx" / "init.yaml")


def _wide_vector(folder: Path) -> None:
    """A vector folder whose input has a row of 5M fields (`econt verify` reads it)."""
    folder.mkdir()
    (folder / "init.yaml").write_text(Path(ASIC).read_text())
    _wide_link_row(folder / "testInput.csv")
    (folder / "testOutput.csv").write_text(",".join(f"TX_DATA_{i}" for i in range(13)) + "\n")


HANG = [
    ("csv-row-of-5M-fields", _wide_row, "wide.csv",
     lambda f: ["data", "--set", "data.source=csv", "--set", f"data.path={f}"],
     r"wide\.csv: row 2 is longer than 1,048,576 bytes"),
    ("link-words-row-of-5M-fields", _wide_link_row, "rx.csv", lambda f: ["econt", "run", "-i", f, "--asic", ASIC],
     r"rx\.csv: row 2 is longer than 1,048,576 bytes \(a row holds the 12 input link words"),
    ("vector-input-row-of-5M-fields", _wide_vector, "vec", lambda f: ["econt", "verify", f],
     r"econt verify: 0 of 1 configurations identical; 0 mismatched, 1 with unusable configuration or input"),
    ("asic-config-billion-laughs", _billion_laughs, "lol.yaml",
     lambda f: ["econt", "run", "-i", str(Path(ASIC).parent.parent / "testInput.csv.gz"), "--asic", f],
     r"lol\.yaml: expands to more than 100,000 values"),
    ("n-modules-at-the-schema-maximum", None, None, lambda f: ["data", "--set", "data.n_modules=50000000"],
     r"data\.n_modules=50000000: needs about \d+ GB of memory, .* available"),
    ("thirty-million-label-pairs", None, None, lambda f: ["pipeline", "--set", "label.random_pairs=30000000"],
     r"label\.random_pairs=30000000 \+ label\.perturbed_pairs=400: needs about \d+ GB of memory"),
    ("hdf5-declaring-50M-modules", _huge_declared_hdf5, "huge.h5",
     lambda f: ["data", "--set", "data.source=hdf5", "--set", f"data.path={f}"],
     r"huge\.h5.*50,000,000.*needs about \d+ GB of memory"),
    ("yaml-billion-laughs", _billion_laughs, "lol.yaml", lambda f: ["show-config", "-c", f],
     r"lol\.yaml: the YAML expands to more than 100,000 values"),
    ("neemo-a-billion-pairs", None, None, lambda f: ["neemo", "estimate", "--pairs", "1000000000"],
     r"--pairs 1000000000: needs about [\d.]+ PB of memory"),
    ("ten-million-check-modules", None, None,
     lambda f: ["firmware", "--set", "firmware.n_check=10000000", "--set", "firmware.encoder_path=enc.h5"],
     r"firmware\.n_check=10000000: needs about \d+ GB of memory"),
]


@pytest.mark.parametrize("name,make,filename,argv,pattern", HANG, ids=[c[0] for c in HANG])
def test_hang_refused_within_seconds_and_little_memory(tmp_path, name, make, filename, argv, pattern):
    f = str(tmp_path / filename) if filename else ""
    if make is not None:
        make(Path(f))
    args = argv(f)
    if args[0] == "econt":                      # the emulator reads no run configuration
        _refused_quickly(args, pattern, tmp_path)
        return
    if "-c" not in args:
        args += ["-c", SMOKE]
    _refused_quickly([*args, "--run-dir", str(tmp_path / "run"), "-q"], pattern, tmp_path)


# --- TRACEBACK ----------------------------------------------------------------------------

def _show(*overrides: str) -> list[str]:
    return ["show-config", "-c", SMOKE, *[x for o in overrides for x in ("--set", o)]]


TRACEBACK_CONFIG = [
    ("seed-beyond-2^32", _show("seed=4294967296"), r"seed: Input should be less than or equal to 4294967278"),
    ("nan-learning-rate", _show("compare_losses.learning_rates=[.nan]"),
     r"compare_losses\.learning_rates\.0: Input should be a finite number"),
    ("nan-hgq-beta", _show("scan.hgq_betas=[.nan]"), r"scan\.hgq_betas\.0: Input should be a finite number"),
    ("a-trillion-pairs", _show("label.random_pairs=1000000000000"),
     r"label\.random_pairs: Input should be less than or equal to 1000000000"),
    ("a-trillion-check-modules", _show("firmware.n_check=1000000000000"),
     r"firmware\.n_check: Input should be less than or equal to 10000000"),
    ("blank-part", _show("firmware.part='   '"), r"firmware\.part: '   ' is not a Xilinx part name"),
    ("malformed-scheduler", _show("emd.dask_scheduler='not an address'"),
     r"emd\.dask_scheduler: 'not an address' is not a scheduler address: host:port or tcp://host:port"),
    ("inf-learning-rate", _show("encoder.learning_rate=.inf"), r"encoder\.learning_rate: Input should be a finite"),
]


@pytest.mark.parametrize("name,argv,pattern", TRACEBACK_CONFIG, ids=[c[0] for c in TRACEBACK_CONFIG])
def test_traceback_values_that_would_crash_later_are_refused_by_the_schema(capsys, name, argv, pattern):
    _fails(capsys, argv, pattern)


def test_traceback_command_line_integers_and_output_paths(tmp_path, capsys):
    _fails(capsys, ["neemo", "fit", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "--event-seed", "-1"],
           r"--event-seed -1: must be in 0\.\.4294967278")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _fails(capsys, ["econt", "run", "-i", str(afile), "--asic", str(afile), "-o", str(afile / "o.csv")],
           r"--output .*afile/o\.csv: .*afile is not a folder")


def _h5_dangling(path: Path) -> None:
    with h5py.File(path, "w") as fh:
        fh["good"] = np.ones((30, 48))
        fh["modules"] = h5py.SoftLink("/nowhere")


def _h5_string_column(path: Path) -> None:
    with h5py.File(path, "w") as fh:
        for i in range(48):
            fh[f"CALQ_{i}"] = np.full(30, 40.0) if i != 7 else np.array([b"x"] * 30)


@pytest.mark.parametrize("make,extra,pattern", [
    (_h5_dangling, ["--set", "data.hdf5_key=modules"], r"data\.hdf5_key 'modules' is a link to nothing"),
    (_h5_string_column, [], r"dataset '/CALQ_7' is not numeric"),
], ids=["hdf5-key-dangling-link", "hdf5-string-column"])
def test_traceback_hdf5_inputs(tmp_path, capsys, make, extra, pattern):
    make(tmp_path / "d.h5")
    _fails(capsys, ["data", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "-q", "--set", "data.source=hdf5",
                    "--set", f"data.path={tmp_path / 'd.h5'}", *extra], pattern)


def test_traceback_run_folder_and_cache_damage(tmp_path, capsys):
    """A summary holding `[]`, a cache folder that is a file: one line each; later commands
    on the folder still work."""
    run = tmp_path / "run"
    args = ["-c", SMOKE, "--run-dir", str(run), "-q"]
    assert main(["data", *args]) == 0
    afile = tmp_path / "afile"
    afile.write_text("x")
    _fails(capsys, ["label", *args, "--set", f"emd.cache_dir={afile}"], r"emd\.cache_dir .*afile: not a folder")
    _fails(capsys, ["label", *args, "--set", f"emd.cache_dir={afile / 'cache'}"],
           r"emd\.cache_dir .*afile/cache: not a folder \(.*afile is a file\)")
    (run / "data" / "summary.json").write_text("[]")
    _fails(capsys, ["label", *args], r"stage 'label' needs up-to-date outputs of: data")
    assert main(["report", *args]) == 0
    assert main(["data", *args]) == 0


def test_traceback_cache_entry_replaced_by_a_folder_and_an_unreachable_scheduler(modules, tmp_path, monkeypatch):
    import econ_emd.emd.exact as ex
    from econ_emd.base.errors import ToolError

    a, b = modules[:32], modules[32:64]
    right = ex.exact_emd(a, b, chunk_size=32, cache_dir=tmp_path)
    (entry,) = tmp_path.rglob("*.npz")
    entry.unlink()
    entry.mkdir()
    np.testing.assert_array_equal(ex.exact_emd(a, b, chunk_size=32, cache_dir=tmp_path), right)
    assert entry.is_dir()
    monkeypatch.setattr(ex, "DASK_CONNECT_TIMEOUT", "1s")
    with pytest.raises(ToolError, match=r"emd\.dask_scheduler 127\.0\.0\.1:1: cannot reach the Dask scheduler"):
        ex.exact_emd(a, b, dask_scheduler="127.0.0.1:1")


def test_traceback_a_full_disk_before_a_model_file_is_an_error_not_a_crash(tmp_path, monkeypatch):
    """h5py crashes the process on a full disk: the room is checked first (exit 3 in the CLI)."""
    import shutil

    import tensorflow as tf

    from econ_emd.base.artifacts import atomic_save_model

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    with pytest.raises(OSError) as info:
        atomic_save_model(model, tmp_path / "m.h5")
    assert info.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


# --- MISLEADING ---------------------------------------------------------------------------

def test_misleading_messages_name_what_the_user_wrote(tmp_path, capsys):
    _fails(capsys, _show("=5"), r"--set '=5': KEY must name a config key")
    link = tmp_path / "runlink"
    link.symlink_to(tmp_path / "gone")
    _fails(capsys, ["data", "-c", SMOKE, "--run-dir", str(link), "-q"],
           r"runlink: a symbolic link to .*gone, which does not exist")
    afile = tmp_path / "vectors.csv"
    afile.write_text("x")
    _fails(capsys, ["econt", "verify", str(afile)], r"vectors\.csv: a file; econt verify takes a folder")


def test_misleading_a_vector_file_that_is_a_folder_is_named_as_one(tmp_path, capsys):
    """A folder named testOutput.csv (or testInput.csv.gz) is said to be a folder, not missing."""
    for name, other in (("testOutput.csv", "testInput.csv.gz"), ("testInput.csv.gz", "testOutput.csv.gz")):
        vec = tmp_path / name.split(".")[0]
        vec.mkdir()
        (vec / "init.yaml").write_text(Path(ASIC).read_text())
        (vec / name).mkdir()
        (vec / other).write_bytes((Path(ASIC).parent / other).read_bytes() if other.startswith("testOutput")
                                  else (Path(ASIC).parent.parent / other).read_bytes())
        assert main(["econt", "verify", str(vec)]) != 0
        out = capsys.readouterr().out
        assert f"{name}: is a directory" in out, out


def test_misleading_a_refused_write_names_the_file_not_its_temporary(tmp_path):
    from econ_emd.base.artifacts import atomic_path

    final = tmp_path / "report.md"
    with pytest.raises(OSError) as info:
        with atomic_path(final) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.filename == str(final) and not list(tmp_path.iterdir())


def test_misleading_a_full_disk_in_a_stage_names_the_stage_folder(tmp_path, capsys, monkeypatch):
    """A library's write that fails without naming a file (the disk filled during a stage)."""
    import econ_emd.data.dataset as dataset

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset, "save_dataset", full)
    _fails(capsys, ["data", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "-q"],
           r"error: .*run/data: No space left on device", code=3)


def test_misleading_identical_pairs_have_no_relative_error(tmp_path, caplog):
    f = tmp_path / "m.csv"
    f.write_text(_csv([[10.0 + i] * 48 for i in range(2)]))
    args = ["neemo", "estimate", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "--modules-a", str(f),
            "--modules-b", str(f), "--set", "neemo.steps=2", "--set", "neemo.width=8", "--set", "neemo.group_size=8"]
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(args) == 0
    assert "nan" not in caplog.text and "identical modules (exact EMD 0): no relative error" in caplog.text
    summary = json.loads((tmp_path / "run" / "neemo" / "estimate" / "summary.json").read_text())
    assert summary["identical_pairs"] == 2 and summary["median_abs_relative_error"] is None


# --- SILENT -------------------------------------------------------------------------------

SILENT_CONFIG = [
    ("an-empty-emd-cnn-file", _show("compare_losses.emd_cnn_files=['']"),
     r"compare_losses\.emd_cnn_files\.0: Value error, blank|compare_losses\.emd_cnn_files\.0: blank"),
    ("a-negative-hgq-beta", _show("scan.hgq_betas=[-0.001]"), r"scan: hgq_betas: each in \[0, 1\]"),
    ("noise-of-1e308", _show("data.synthetic.noise_sigma_adc=1.0e308"),
     r"data\.synthetic\.noise_sigma_adc: Input should be less than or equal to 2147483647"),
    ("a-blank-run-dir-in-the-config", _show("run_dir='   '"), r"run_dir: must name a folder \(it is blank\)"),
    ("a-file-named-twice", _show("compare_losses.emd_cnn_files=[a.h5, a.h5]"),
     r"emd_cnn_files: a file is named twice"),
]


@pytest.mark.parametrize("name,argv,pattern", SILENT_CONFIG, ids=[c[0] for c in SILENT_CONFIG])
def test_silent_values_that_would_give_a_wrong_result_are_refused(capsys, name, argv, pattern):
    _fails(capsys, argv, pattern)


def test_silent_a_mux_reading_one_input_twice_is_emulated_as_written_and_said(tmp_path, caplog):
    """The ASIC and the CMS emulator copy the input to both slots: the run follows them
    and warns once, naming both slots and the inputs never read."""
    import yaml

    from econ_emd.econt.emulator import emulate
    from econ_emd.econt.links import read_rx
    from econ_emd.econt.registers import load_config

    doc = yaml.safe_load(Path(ASIC).read_text())
    doc["Mux"][7] = doc["Mux"][0]
    path = tmp_path / "init.yaml"
    path.write_text(yaml.safe_dump(doc))
    with caplog.at_level("WARNING"):
        cfg = load_config(path)
    assert cfg.mux[7] == cfg.mux[0]
    assert re.search(r"Mux\.0 and Mux\.7 both select input \d+; input \d+ never read", caplog.text), caplog.text
    rx = read_rx(Path(ASIC).parent.parent / "testInput.csv.gz")[:20]
    assert emulate(cfg, rx).tx.shape[0] == 20


def test_silent_complex_charges_and_the_index_of_a_zero_sum_module(tmp_path, capsys):
    with h5py.File(tmp_path / "c.h5", "w") as fh:
        fh["modules"] = np.ones((30, 48)) * (1 + 2j)
    _fails(capsys, ["data", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "-q", "--set", "data.source=hdf5",
                    "--set", f"data.path={tmp_path / 'c.h5'}"], r"dataset '/modules' is complex \(complex128\)")
    f = tmp_path / "m.csv"
    f.write_text(_csv([[0.0] * 48, [5.0] * 48]))           # module 0 is empty, module 1 is not
    _fails(capsys, ["neemo", "fit", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "--modules", str(f),
                    "--index", "0"], r"--index 0: module 0 of .*m\.csv has no charge")
    _fails(capsys, ["neemo", "fit", "-c", SMOKE, "--run-dir", str(tmp_path / "run"), "--modules", str(f),
                    "--index", "2"], r"--index 2: .*m\.csv has 2 modules \(0\.\.1\)")


def test_hang_negative_control_a_feasible_stage_runs_under_the_same_limit(tmp_path):
    """Under the HANG cases' address-space limit, the same command at a feasible size runs:
    the refusals above come from the size checks, not from the limit."""
    script = ("import resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({HANG_LIMIT}, {HANG_LIMIT}))\n"
              "from econ_emd.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "data", "-c", SMOKE, "--run-dir", str(tmp_path / "run"),
                           "-q", "--set", "data.n_modules=20000"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "data" / "modules.h5").is_file()
