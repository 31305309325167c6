"""A catalogue of user mistakes and broken inputs: each ends with one line naming the file,
row, column, key or path and exit code 2 (never a traceback, never a silent result)."""
from __future__ import annotations

import gzip
import os
import re

import h5py
import numpy as np
import pytest

from conftest import error_line
from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR

SMOKE = str(CONFIG_DIR / "smoke.yaml")
HEADER = ",".join(f"CALQ_{i}" for i in range(48))


def _row(*values, fill=40.0):
    vals = list(values) + [fill] * (48 - len(values))
    return ",".join(str(v) for v in vals)


def _good_csv(n=30):
    return HEADER + "\n" + "\n".join(_row(10 + i) for i in range(n)) + "\n"


def _h5(path, **datasets):
    with h5py.File(path, "w") as fh:
        for name, data in datasets.items():
            fh.create_dataset(name, data=data)


def _h5_columns(path, lengths):
    with h5py.File(path, "w") as fh:
        for i in range(48):
            fh.create_dataset(f"CALQ_{i}", data=np.full(lengths.get(i, 20), 40.0))


def _write(tmp, name, content):
    p = tmp / name
    if callable(content):
        content(p)
    elif isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


def data_cmd(source="csv", extra=()):
    return lambda f: ["data", "-c", SMOKE, "--set", f"data.source={source}", "--set", f"data.path={f}", *extra]


def show(f):
    return ["show-config", "-c", f]


def estimate(*extra):
    return lambda f: ["neemo", "estimate", "-c", SMOKE, *[a.replace("{f}", f) for a in extra]]


CASES = [
    # --- CSV data files ---------------------------------------------------------------
    ("csv-binary", "d.csv", bytes(range(256)) * 4, data_cmd(), r"not a UTF-8 text CSV"),
    ("csv-latin1-metadata", "d.csv", (HEADER + ",name\n" + _row(1) + ",caf\xe9\n").encode("latin-1"), data_cmd(),
     r"not a UTF-8 text CSV"),
    ("csv-truncated-gzip", "d.csv.gz", gzip.compress(_good_csv(200).encode())[:300], data_cmd(),
     r"d\.csv\.gz: the gzip-compressed file is damaged or truncated"),
    ("csv-duplicated-header", "d.csv", HEADER + ",CALQ_0\n" + _row(1) + ",5\n", data_cmd(),
     r"header names CALQ_0 twice \(columns 1 and 49\)"),
    ("csv-missing-columns", "d.csv", ",".join(f"CALQ_{i}" for i in range(40)) + "\n" + ",".join(["1"] * 40) + "\n",
     data_cmd(), r"header lacks 8 charge column"),
    ("csv-empty", "d.csv", "", data_cmd(), r"the file is empty"),
    ("csv-header-only", "d.csv", HEADER + "\n", data_cmd(), r"header but no data rows"),
    ("csv-one-row", "d.csv", HEADER + "\n" + _row(1) + "\n", data_cmd(), r"too few for a train/val/test split"),
    ("csv-two-rows", "d.csv", HEADER + "\n" + _row(1) + "\n" + _row(2) + "\n", data_cmd(), r"too few for a train/val/test"),
    ("csv-not-a-number", "d.csv", HEADER + "\n" + _row(1) + "\n" + _row(2, "x1") + "\n", data_cmd(),
     r"row 3, column CALQ_1 \(column 2\): not a number: 'x1'"),
    ("csv-blank-lines-row-number", "d.csv", HEADER + "\n\n" + _row(1) + "\n\n\n" + _row(-3) + "\n", data_cmd(),
     r"d\.csv: row 6, column CALQ_0: charge -3\.0 is negative"),
    ("csv-nan", "d.csv", HEADER + "\n" + _row(1) + "\n" + _row("nan") + "\n", data_cmd(), r"row 3, column CALQ_0: .*not finite"),
    ("csv-inf", "d.csv", HEADER + "\n" + _row("inf") + "\n", data_cmd(), r"row 2, column CALQ_0: .*not finite"),
    ("csv-negative", "d.csv", HEADER + "\n" + _row(1, 2, -5) + "\n", data_cmd(), r"row 2, column CALQ_2: charge -5\.0 is negative"),
    ("csv-sum-overflows", "d.csv", _good_csv(5) + _row(1e308, 1e308) + "\n", data_cmd(),
     r"row 7, the sum of its charges overflows float64"),
    ("csv-ragged-row", "d.csv", HEADER + "\n" + _row(1) + "\n" + ",".join(["1"] * 30) + "\n", data_cmd(),
     r"row 3 has 30 columns, expected 48"),
    ("csv-no-header-short", "d.csv", ",".join(["1"] * 47) + "\n", data_cmd(), r"row 1 has 47 columns"),
    ("csv-all-zero", "d.csv", HEADER + "\n" + "\n".join(_row(fill=0) for _ in range(5)) + "\n", data_cmd(),
     r"every module has a zero charge sum"),
    ("csv-no-such-file", "absent.csv", None, data_cmd(), r"absent\.csv: no such file or directory"),
    ("csv-empty-directory", "emptydir", lambda p: p.mkdir(), data_cmd(), r"holds no \.csv/\.txt/\.gz files"),
    ("csv-fifo", "pipe.csv", lambda p: os.mkfifo(p), data_cmd(), r"not a regular file or directory"),
    # --- HDF5 data files --------------------------------------------------------------
    ("h5-not-hdf5", "d.h5", b"not an hdf5 file at all", data_cmd("hdf5"), r"not a readable HDF5 file"),
    ("h5-transposed", "d.h5", lambda p: _h5(p, x=np.ones((48, 500))), data_cmd("hdf5"), r"looks transposed"),
    ("h5-ragged-columns", "d.h5", lambda p: _h5_columns(p, {5: 19}), data_cmd("hdf5"),
     r"column CALQ_5 has shape \(19,\) but CALQ_0 has \(20,\)"),
    ("h5-missing-column", "d.h5", lambda p: _h5(p, **{f"CALQ_{i}": np.ones(20) for i in range(47)}), data_cmd("hdf5"),
     r"no 2D dataset and no CALQ_0\.\.CALQ_47"),
    ("h5-several-datasets", "d.h5", lambda p: _h5(p, a=np.ones((20, 48)), b=np.ones((20, 48))), data_cmd("hdf5"),
     r"several 2D datasets \(a, b\): set data\.hdf5_key"),
    ("h5-wrong-key", "d.h5", lambda p: _h5(p, a=np.ones((20, 48))), data_cmd("hdf5", ["--set", "data.hdf5_key=zz"]),
     r"no dataset or group 'zz' \(has: a\)"),
    ("h5-only-1d", "d.h5", lambda p: _h5(p, a=np.ones(20)), data_cmd("hdf5"), r"no 2D dataset"),
    ("h5-strings", "d.h5", lambda p: _h5(p, a=np.array([["x"] * 48] * 20, dtype="S1")), data_cmd("hdf5"), r"is not numeric"),
    ("h5-too-few-columns", "d.h5", lambda p: _h5(p, a=np.ones((20, 40))), data_cmd("hdf5"), r"expected \(n, >= 48\)"),
    ("h5-nan", "d.h5", lambda p: _h5(p, a=np.full((20, 48), np.nan)), data_cmd("hdf5"), r"row 0, column CALQ_0: .*not finite"),
    ("h5-empty", "d.h5", lambda p: _h5(p, a=np.ones((0, 48))), data_cmd("hdf5"), r"the dataset is empty"),
    # --- configuration files and overrides ----------------------------------------------
    ("config-empty", "c.yaml", "", show, r"c\.yaml: the config file is empty"),
    ("config-binary", "c.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", show, r"not a text \(UTF-8\) YAML file"),
    ("config-bad-yaml", "c.yaml", "data: [1, 2\n", show, r"not valid YAML at line"),
    ("config-list", "c.yaml", "- 1\n- 2\n", show, r"top level must be a mapping"),
    ("config-unknown-key", "c.yaml", "data:\n  n_modulez: 5\n", show, r"data\.n_modulez: unknown key"),
    ("config-bool-for-number", "c.yaml", "data:\n  n_modules: true\n", show, r"n_modules: expected a number, got true"),
    ("config-too-small", "c.yaml", "data:\n  n_modules: 5\n", show, r"data\.n_modules: Input should be greater than or equal to 10"),
    ("config-wrong-type", "c.yaml", "data:\n  n_modules: many\n", show, r"data\.n_modules: Input should be a valid integer"),
    ("config-split-sum", "c.yaml", "data:\n  split: {train: 0.5, val: 0.2, test: 0.2}\n", show, r"train \+ val \+ test must be 1"),
    ("config-elink-budget", "c.yaml", "encoder:\n  links: 2\n  latent_bits: 9\n", show, r"encoder: .*"),
    ("config-difference-linear", "c.yaml", "emd_cnn:\n  output: linear\n", show, r"inputs 'difference' needs output 'mass'"),
    ("config-neemo-groups", "c.yaml", "neemo:\n  width: 100\n", show, r"width 100 is not a multiple of group_size 8"),
    ("config-csv-without-path", "c.yaml", "data:\n  source: csv\n", show, r"source 'csv' needs data\.path"),
    ("config-n-jobs-zero", "c.yaml", "emd:\n  n_jobs: 0\n", show, r"n_jobs must be -1"),
    ("config-bad-choice", "c.yaml", "firmware:\n  io_type: io_magic\n", show, r"firmware\.io_type: Input should be"),
    ("config-bad-loss", "c.yaml", "encoder:\n  loss: l1\n", show, r"encoder\.loss: Input should be"),
    ("config-missing-file", "absent.yaml", None, show, r"absent\.yaml: cannot read config"),
    ("config-is-directory", "cdir", lambda p: p.mkdir(), show, r"cdir: not a regular file"),
    ("override-no-equals", "c.yaml", "seed: 1\n", lambda f: ["show-config", "-c", f, "--set", "data.n_modules"],
     r"expected KEY=VALUE"),
    ("override-through-value", "c.yaml", "seed: 1\n", lambda f: ["show-config", "-c", f, "--set", "seed.x=1"],
     r"--set seed\.x: 'seed' is not a section"),
    ("run-dir-empty", "c.yaml", "seed: 1\n", lambda f: ["data", "-c", f, "--run-dir", ""], r"--run-dir: must not be empty"),
    ("run-dir-is-a-file", "afile", "x", lambda f: ["data", "-c", SMOKE, "--run-dir", f], r"afile: the run directory is a file"),
    # --- stages asked for out of order, model files -------------------------------------
    ("stage-out-of-order", "rd", lambda p: p.mkdir(), lambda f: ["train-encoder", "-c", SMOKE, "--run-dir", f],
     r"stage 'encoder' needs up-to-date outputs of: data"),
    ("resources-without-firmware", "none.h5", None, lambda f: ["resources", "-c", SMOKE, "--encoder", f,
                                                            "--set", "rtl.enabled=false", "--run-dir", f + ".run"],
     r"needs up-to-date outputs of: firmware"),
    ("schema-minimum-modules", "x", "", lambda f: ["pipeline", "-c", SMOKE, "--set", "data.n_modules=10",
                                                   "--set", "rtl.enabled=false"],
     r"the test split holds 1 module\(s\): random label pairs need at least 2 per split"),
    # --- NEEMo -----------------------------------------------------------------------
    ("neemo-pairs-zero", "x", "", estimate("--pairs", "0"), r"--pairs 0: must be >= 1"),
    ("neemo-pairs-negative", "x", "", estimate("--pairs", "-5"), r"--pairs -5: must be >= 1"),
    ("neemo-only-a", "a.csv", _good_csv(3), estimate("--modules-a", "{f}"), r"give both --modules-a and --modules-b"),
    ("neemo-files-and-pairs", "a.csv", _good_csv(3), estimate("--modules-a", "{f}", "--modules-b", "{f}", "--pairs", "5"),
     r"--pairs draws random pairs; it does not go with --modules-a/--modules-b"),
    ("neemo-counts-differ", "a.csv", _good_csv(3), lambda f: ["neemo", "estimate", "-c", SMOKE, "--modules-a", f,
                                                             "--modules-b", f.replace("a.csv", "b.csv")],
     r"need equal counts"),
    ("neemo-missing-file", "a.csv", _good_csv(3), estimate("--modules-a", "{f}", "--modules-b", "/nonexistent/b.csv"),
     r"/nonexistent/b\.csv: no such file"),
    ("neemo-all-pairs-empty", "a.csv", HEADER + "\n" + _row(fill=0) + "\n",
     estimate("--modules-a", "{f}", "--modules-b", "{f}"), r"every pair has a module with a zero charge sum"),
    ("neemo-fit-k-zero", "x", "", lambda f: ["neemo", "fit", "-c", SMOKE, "--n-shapes", "0"],
     r"--n-shapes 0: Input should be greater than or equal to 1"),
    ("neemo-fit-k-too-large", "x", "", lambda f: ["neemo", "fit", "-c", SMOKE, "--n-shapes", "100"],
     r"--n-shapes 100: Input should be less than or equal to 50"),
    ("neemo-fit-clusters", "x", "", lambda f: ["neemo", "fit", "-c", SMOKE, "--clusters", "0"], r"--clusters must be between 1 and 20"),
    ("neemo-fit-index", "m.csv", _good_csv(2), lambda f: ["neemo", "fit", "-c", SMOKE, "--modules", f, "--index", "5"],
     r"--index 5: .*m\.csv has 2 modules"),
    ("neemo-fit-too-few-deposits", "m.csv", HEADER + "\n" + _row(50, 60, fill=0) + "\n",
     lambda f: ["neemo", "fit", "-c", SMOKE, "--modules", f, "--n-shapes", "3"], r"fewer deposits than k=3"),
]


@pytest.mark.parametrize("name,filename,content,argv,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_line(tmp_path, capsys, monkeypatch, name, filename, content, argv, pattern):
    monkeypatch.chdir(tmp_path)
    f = str(tmp_path / filename) if content is None else _write(tmp_path, filename, content)
    if name == "neemo-counts-differ":
        _write(tmp_path, "b.csv", _good_csv(2))
    args = [*argv(f), "--run-dir", str(tmp_path / "run")] if "--run-dir" not in argv(f) else argv(f)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    line = error_line(err)
    assert re.search(pattern, line), line


def test_catalogue_is_large_enough():
    assert len(CASES) >= 60


def test_bom_and_gzip_csv_are_read(tmp_path):
    """What looked like bad input but is not: a byte-order mark, a gzip-compressed CSV."""
    from econ_emd.data.loaders import read_csv

    plain = tmp_path / "p.csv"
    plain.write_text(_good_csv(4))
    bom = tmp_path / "b.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + _good_csv(4).encode())
    gz = tmp_path / "g.csv.gz"
    gz.write_bytes(gzip.compress(_good_csv(4).encode()))
    want = read_csv(plain)
    np.testing.assert_array_equal(read_csv(bom), want)
    np.testing.assert_array_equal(read_csv(gz), want)


def test_neemo_pairs_rows_of_two_files_by_position(tmp_path):
    """A zero-sum row in each file drops those pairs only: later rows keep their partners."""
    import argparse

    from econ_emd.config import load_config
    from econ_emd.neemo_cmd import _pairs

    rows_a = [_row(10, fill=1), _row(fill=0), _row(30, fill=1), _row(40, fill=1)]
    rows_b = [_row(11, fill=1), _row(21, fill=1), _row(fill=0), _row(41, fill=1)]
    (tmp_path / "a.csv").write_text(HEADER + "\n" + "\n".join(rows_a) + "\n")
    (tmp_path / "b.csv").write_text(HEADER + "\n" + "\n".join(rows_b) + "\n")
    args = argparse.Namespace(modules_a=str(tmp_path / "a.csv"), modules_b=str(tmp_path / "b.csv"), pairs=None)
    a, b, _ = _pairs(load_config(SMOKE), args)
    assert a[:, 0].tolist() == [10, 40] and b[:, 0].tolist() == [11, 41]


def test_external_emd_cnn_of_the_wrong_shape_is_a_model_file_error(tmp_path):
    import tensorflow as tf

    from econ_emd.base.errors import ModelFileError
    from econ_emd.training.emd_cnn_train import load_frozen_emd_cnn

    one_input = tf.keras.Sequential([tf.keras.Input((48,)), tf.keras.layers.Dense(1)])
    one_input.save(tmp_path / "one.h5", save_format="h5")
    with pytest.raises(ModelFileError, match=r"one\.h5: an external EMD-CNN needs two inputs"):
        load_frozen_emd_cnn(tmp_path / "one.h5")
    a, b = tf.keras.Input((48,)), tf.keras.Input((48,))
    vector = tf.keras.Model([a, b], tf.keras.layers.Dense(3)(tf.keras.layers.Concatenate()([a, b])))
    vector.save(tmp_path / "vec.h5", save_format="h5")
    with pytest.raises(ModelFileError, match=r"vec\.h5: an EMD-CNN has one scalar output per pair"):
        load_frozen_emd_cnn(tmp_path / "vec.h5")
