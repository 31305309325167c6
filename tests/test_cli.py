import json

import h5py
import numpy as np
import pytest

from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR
from training.dataset import load_dataset
from training.emd import exact_emd
from training.labels import load_labels
from training.loaders import CALQ_COLUMNS

SMOKE = str(CONFIG_DIR / "smoke.yaml")


def test_smoke_pipeline_writes_data_and_labels(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pipeline", "-c", SMOKE, "--run-dir", str(run), "-q"]) == 0
    ds = load_dataset(run / "data")
    assert ds.n_modules == 600
    assert {k: v.shape[0] for k, v in ds.splits.items()} == {"train": 420, "val": 90, "test": 90}
    summary = json.loads((run / "data" / "summary.json").read_text())
    assert sum(summary["occupancy_histogram"]) == 600
    labels = load_labels(run / "label")
    assert sum(ps.a.shape[0] for ps in labels.values()) == 800
    ps = labels["perturbed", "test"]
    np.testing.assert_allclose(ps.emd, exact_emd(ps.a, ps.b), atol=1e-12)
    # first modules of the test pairs come from the test split
    np.testing.assert_array_equal(ps.a, ds["test"][ps.index_a])


def test_rerun_skips_up_to_date_stages_and_reruns_changed(tmp_path, caplog):
    run = str(tmp_path / "run")
    assert main(["pipeline", "-c", SMOKE, "--run-dir", run, "-q"]) == 0
    caplog.clear()
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(["pipeline", "-c", SMOKE, "--run-dir", run]) == 0
    assert "data: up to date, skipped" in caplog.text
    assert "label: up to date, skipped" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(["pipeline", "-c", SMOKE, "--run-dir", run, "--set", "labels.random_pairs=200"]) == 0
    assert "data: up to date, skipped" in caplog.text
    assert "label: up to date" not in caplog.text


def test_label_before_data_is_a_usage_error(tmp_path, capsys):
    assert main(["label", "-c", SMOKE, "--run-dir", str(tmp_path / "r")]) == 2
    assert "needs up-to-date outputs of: data" in capsys.readouterr().err


def test_bad_config_exit_code_2_names_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  n_modules: 3\n")
    assert main(["data", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data.n_modules" in err and "Traceback" not in err


def test_csv_source_and_bad_csv(tmp_path, modules, capsys):
    good = tmp_path / "in.csv"
    good.write_text(",".join(CALQ_COLUMNS) + "\n" + "\n".join(
        ",".join(str(int(v)) for v in m) for m in modules[:100]) + "\n" + ",".join(["0"] * 48) + "\n")
    run = tmp_path / "r"
    args = ["data", "-c", SMOKE, "--run-dir", str(run), "-q", "--set", "data.source=csv",
            "--set", f"data.path={good}"]
    assert main(args) == 0
    ds = load_dataset(run / "data")
    assert ds.n_modules == 100 and ds.info["n_zero_sum_dropped"] == 1
    lines = good.read_text().splitlines()
    lines[10] = lines[10].replace(",", ",x", 1)
    good.write_text("\n".join(lines) + "\n")
    assert main(args) == 2
    assert "row 11, column CALQ_1" in capsys.readouterr().err


def test_hdf5_source(tmp_path, modules):
    p = tmp_path / "in.h5"
    with h5py.File(p, "w") as fh:
        fh["x"] = modules[:50]
    run = tmp_path / "r"
    assert main(["data", "-c", SMOKE, "--run-dir", str(run), "-q", "--set", "data.source=hdf5",
                 "--set", f"data.path={p}"]) == 0
    assert load_dataset(run / "data").n_modules == 50


def test_help_and_show_config(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert main(["show-config", "-c", SMOKE]) == 0
    out = capsys.readouterr().out
    assert "n_modules: 600" in out and "zero_suppression_adc" in out
