import json

import h5py
import numpy as np
import pytest

from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR, load_config
from econ_emd.data.dataset import load_dataset
from econ_emd.emd.exact import exact_emd
from econ_emd.data.labels import load_labels
from econ_emd.data.loaders import CALQ_COLUMNS

SMOKE = str(CONFIG_DIR / "smoke.yaml")
#: keep the end-to-end tests short: two losses in the comparison, one seed
FAST = ["--set", "compare_losses.losses=[emd_cnn, mse]", "--set", "compare_losses.float_twin=false",
        "--set", "compare_losses.seeds=1"]


def test_smoke_pipeline_writes_every_artifact(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pipeline", "-c", SMOKE, "--run-dir", str(run), "-q", *FAST]) == 0
    for f in ("emd_cnn/emd_cnn.h5", "emd_cnn/emd_cnn.json", "emd_cnn/emd_cnn_pred_vs_exact.png",
              "emd_cnn/emd_cnn_rel_error.png", "encoder/encoder.h5", "encoder/decoder.h5",
              "encoder/emd_vs_occupancy.png", "compare_losses/compare_losses.md",
              "compare_losses/emd_vs_occupancy.png", "compare_losses/mse/seed_0/encoder.h5", "firmware/hls_project/myproject_test.cpp", "csim/csim.md",
              "rtl/verilog/src/econt_encoder.v", "rtl/rtl.md", "resources/resources.md",
              "compare_econt/compare_econt.md", "compare_econt/compare_econt.png", "report.md", "report.json"):
        assert (run / f).exists(), f
    rtl = json.loads((run / "rtl" / "summary.json").read_text())
    assert rtl["check_passed"] and rtl["simulation"]["bit_exact_fraction"] == 1.0
    assert rtl["simulation"]["n_modules"] == 300 and rtl["synthesis"] is None
    report = json.loads((run / "resources" / "summary.json").read_text())
    assert report["figures"]["rtl_latency_cycles"] == rtl["figures"]["rtl_latency_cycles"]
    # the run summary agrees with the stage outputs it aggregates
    summary = json.loads((run / "report.json").read_text())
    assert summary["bit_exact"]["RTL simulation (Verilator)"] == rtl["simulation"]["bit_exact_fraction"]
    assert summary["data"]["n_modules"] == {"train": 420, "val": 90, "test": 90}
    assert summary["budget"] == report["budget"] and "emd_cnn/emd_cnn_pred_vs_exact.png" in summary["plots"]
    md = (run / "report.md").read_text()
    assert "## EMD-CNN accuracy" in md and "| RTL simulation (Verilator, da4ml Verilog) | 300 | 100.0000% | 0 |" in md
    # the loss network judged on the pairs it was a loss for, as logged by the encoder stage
    own = json.loads((run / "encoder" / "summary.json").read_text())["emd_cnn_on_reconstructions"]
    assert own["n_pairs"] == 90 and 0 < own["rel_sigma"] < 10
    assert summary["emd_cnn"]["encoder_reconstructions"]["rel_sigma"] == own["rel_sigma"]
    assert f"| the trained encoder's reconstructions (test modules) | 90 | {own['rel_mean']:+.4f} |" in md
    csim = json.loads((run / "csim" / "summary.json").read_text())
    assert csim["check_passed"] and csim["testbench"]["bit_exact_fraction"] == 1.0
    assert csim["testbench"]["n_modules"] == 300
    cmp = json.loads((run / "compare_losses" / "summary.json").read_text())
    assert set(cmp["rows"]) == {"emd_cnn", "mse"}
    assert "median emd_cnn / mse" in cmp["ratios"]
    assert [p["a"] + " vs " + p["b"] for p in cmp["paired"]] == ["emd_cnn vs mse"]
    # every aggregated figure equals its stage's own, in report.json and in report.md
    emd_cnn = json.loads((run / "emd_cnn" / "summary.json").read_text())["metrics"]
    for kind, m in emd_cnn.items():
        assert summary["emd_cnn"][kind] == {"rel_mean": m["rel_mean"], "rel_sigma": m["rel_sigma"]}
        assert f"| {kind} | {m['n_pairs']:,} | {m['rel_mean']:+.4f} | {m['rel_sigma']:.4f} |" in md
    for name, r in cmp["rows"].items():
        medians = [run["evaluation"]["overall"]["median"] for run in r["runs"]]
        assert r["median_per_seed"] == medians and r["median_over_seeds"] == float(np.median(medians))
        assert summary["loss_comparison"]["median_exact_emd"][name] == r["median_over_seeds"]
        mean = float(np.mean([run["evaluation"]["overall"]["mean"] for run in r["runs"]]))
        assert f"| {name} | {r['median_over_seeds']:.4f} | {min(medians):.4f}-{max(medians):.4f} | {mean:.4f} |" in md
    for p in cmp["paired"]:
        assert summary["loss_comparison"]["paired"][f"{p['a']} vs {p['b']}"]["median_ratio"] == p["median_ratio"]
    assert summary["loss_comparison"]["ratios"] == cmp["ratios"]
    # the equal-bandwidth comparison: every algorithm with both rules and every reference code at
    # every link count, the encoder at its own, the CMS test-vector autoencoder at 5
    bw = json.loads((run / "compare_econt" / "summary.json").read_text())
    algos = [f"{a}{s}" for a in ("best_choice", "super_trigger_cells", "threshold_sum") for s in ("", " (CMS rule)")]
    refs = ["sum only", "average module", "linear code"]
    autoencoders = {"autoencoder (this product)", "CMS test-vector autoencoder (electron-trained)"}
    links = load_config(SMOKE).encoder.links              # the smoke run trains the encoder there only
    for dataset in ("generated", "crossings"):
        rows = {(r["algorithm"], r["n_links"]): r for r in bw["rows"][dataset]}
        assert {k for k in rows if k[0] not in autoencoders} == {(a, n) for a in algos + refs for n in (2, 3, 4, 5)}
        assert {k for k in rows if k[0] in autoencoders} == {("autoencoder (this product)", links),
                                                           ("CMS test-vector autoencoder (electron-trained)", 5)}
        for (a, n), r in rows.items():
            assert summary["equal_bandwidth"][dataset][f"{a}@{n}"] == r["emd"]["overall"]["median"]
            lo, hi = r["median_interval"]
            assert lo <= r["emd"]["overall"]["median"] <= hi
        assert bw["verdicts"][dataset]["5"]["best"] in {a for a, _ in rows}
    assert bw["n_modules"] == {"generated": 90, "crossings": 1782}
    assert {(s["algorithm"], s["n_links"]) for s in bw["signals"]} >= {("best_choice", n) for n in (2, 3, 4, 5)}
    assert "## Which front-end algorithm keeps the module best, at equal output bandwidth" in md
    for k, v in cmp["ratios"].items():
        assert f"- {k}: {v:.3f}" in md
    lab = json.loads((run / "label" / "summary.json").read_text())
    assert summary["labels"] == {"n_pairs": lab["n_pairs"], "pairs_per_second": lab["pairs_per_second"]}
    assert lab["n_pairs"] == 800
    assert f"{lab['n_pairs']:,} pairs with the {lab['solver']} solver" in md
    for name, key in (("HLS C simulation (g++)", "testbench"), ("hls4ml compiled predict", "predict")):
        c = csim[key]
        assert summary["bit_exact"][name] == c["bit_exact_fraction"]
        assert f"| {name} | {c['n_modules']:,} | {100 * c['bit_exact_fraction']:.4f}% | {c['max_abs_diff_lsb']} |" in md
    assert summary["figures"] == report["figures"]
    for b in report["budget"]:
        assert f"| {b['item']} | {b['limit']} |" in md
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
    from econ_emd.config import load_config
    from econ_emd.registry import STAGES, is_current

    run = str(tmp_path / "run")
    stages = ["data", "label", "emd_cnn"]
    args = ["-c", SMOKE, "--run-dir", run, *FAST, "--set", "encoder.epochs=1"]
    for s in stages:
        assert main([{"emd_cnn": "train-emd-cnn"}.get(s, s), "-q", *args]) == 0
    caplog.clear()
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(["pipeline", *args, "--set", "firmware.n_check=50"]) == 0
    for s in stages:
        assert f"{s}: up to date, skipped" in caplog.text
    # a firmware-only change reruns the firmware stages and nothing upstream of them
    caplog.clear()
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(["pipeline", *args, "--set", "firmware.n_check=40"]) == 0
    for s in ("data", "label", "emd_cnn", "encoder", "compare_losses"):
        assert f"{s}: up to date, skipped" in caplog.text
    for s in ("firmware", "csim", "rtl", "resources"):
        assert f"{s}: up to date" not in caplog.text
    assert len(np.load(tmp_path / "run" / "firmware" / "tb_inputs.npy")) == 40
    # an EMD-CNN change reruns that stage, keeps the ones before it and makes every stage
    # that reads it, directly or through another, stale
    overrides = [*FAST[1::2], "encoder.epochs=1", "firmware.n_check=40", "emd_cnn.epochs=2"]
    caplog.clear()
    with caplog.at_level("INFO", logger="econ_emd"):
        assert main(["train-emd-cnn", *args, "--set", "firmware.n_check=40", "--set", "emd_cnn.epochs=2"]) == 0
    assert "emd_cnn: up to date" not in caplog.text
    cfg = load_config(SMOKE, overrides)
    assert all(is_current(cfg, tmp_path / "run", s) for s in ("data", "label", "emd_cnn"))
    downstream = [s for s in STAGES if s not in ("data", "label", "emd_cnn")]
    assert "encoder" in downstream and "rtl" in downstream
    assert not any(is_current(cfg, tmp_path / "run", s) for s in downstream)


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


def test_firmware_from_a_given_encoder_file_and_bad_file(tmp_path, capsys):
    """Through firmware, csim, rtl and resources in a run folder whose path holds a space
    and a non-ASCII character (g++, hls4ml, Verilator's makefiles must all cope)."""
    from econ_emd.models.econt import build_decoder, build_encoder
    from econ_emd.training.encoder_train import save_encoder

    save_encoder(build_encoder(), build_decoder(), tmp_path / "enc")
    run_dir = tmp_path / "my runs" / "été 1"
    run = str(run_dir)
    args = ["-c", SMOKE, "--run-dir", run, "-q", "--encoder", str(tmp_path / "enc" / "encoder.h5"),
            "--set", "firmware.n_check=40"]
    assert main(["firmware", *args]) == 0
    assert main(["csim", *args]) == 0
    assert main(["resources", *args]) == 2           # the resources stage merges the rtl stage's figures
    assert "needs up-to-date outputs of: rtl" in capsys.readouterr().err
    assert main(["rtl", *args]) == 0
    assert main(["resources", *args]) == 0
    report = json.loads((run_dir / "resources" / "summary.json").read_text())
    assert report["exact_counts"]["weight_storage_bits"] == 2144 * 5
    # no vendor tool here: II and latency are judged on the RTL simulation's figures
    assert [(b["item"], b["source"].split(", Verilator ")[0], b["verdict"]) for b in report["budget"]] == [
        ("max_ii", "RTL simulation (Verilator)", "pass"), ("max_latency_ns", "RTL simulation (Verilator)", "pass")]
    assert all(b["source"].startswith("RTL simulation (Verilator), Verilator ") for b in report["budget"])
    assert "rtl_latency_ns" in (run_dir / "resources" / "resources.md").read_text()
    # `econ-emd report` rebuilds the run's report from the stages present
    assert not (run_dir / "report.md").exists()
    assert main(["report", "-c", SMOKE, "--run-dir", run, "-q"]) == 0
    md = (run_dir / "report.md").read_text()
    assert "## Resources and latency" in md and "Stages not run yet: data, label" in md
    bad = tmp_path / "bad.h5"
    bad.write_text("not a model")
    assert main(["firmware", "-c", SMOKE, "--run-dir", run, "-q", "--encoder", str(bad)]) == 2
    assert "not a loadable QKeras encoder" in capsys.readouterr().err


def test_budget_failure_exit_code_1(tmp_path, capsys):
    """A budget line that fails makes `resources` exit 1, and its report is still written."""
    import shutil
    from pathlib import Path

    from econ_emd.models.econt import build_decoder, build_encoder
    from econ_emd.training.encoder_train import save_encoder

    save_encoder(build_encoder(), build_decoder(), tmp_path / "enc")
    run = tmp_path / "run"
    args = ["-c", SMOKE, "--run-dir", str(run), "-q", "--encoder", str(tmp_path / "enc" / "encoder.h5"),
            "--set", "firmware.n_check=20", "--set", "rtl.enabled=false"]
    assert main(["firmware", *args]) == 0
    prj = run / "firmware" / "hls_project"
    fixture = Path(__file__).parent / "fixtures" / "econt_encoder_pynq_z2"
    shutil.copytree(fixture / "myproject_prj", prj / "myproject_prj")
    shutil.copy(fixture / "vivado_synth.rpt", prj / "vivado_synth.rpt")
    assert main(["resources", *args]) == 1       # latency 515 ns > 25 ns, II 92 > 1
    assert "check failed" in capsys.readouterr().err
    md = (run / "resources" / "resources.md").read_text()
    assert "| max_ii | 1 | 92 | vendor HLS estimate | fail |" in md


def test_corrupted_artifact_is_detected_and_rebuilt(tmp_path, caplog):
    from econ_emd.config import load_config
    from econ_emd.base.digests import file_digest
    from econ_emd.registry import is_current

    run = tmp_path / "run"
    args = ["-c", SMOKE, "--run-dir", str(run)]
    assert main(["data", "-q", *args]) == 0
    cfg = load_config(SMOKE)
    h5 = run / "data" / "modules.h5"
    good = file_digest(h5)
    assert is_current(cfg, run, "data")
    h5.write_bytes(h5.read_bytes()[:1000])            # a partial file under the final name
    with caplog.at_level("WARNING", logger="econ_emd"):
        assert not is_current(cfg, run, "data")
    assert "corrupted or replaced" in caplog.text
    assert main(["data", "-q", *args]) == 0        # what `pipeline` does for a stage that is not current
    assert is_current(cfg, run, "data") and file_digest(h5) == good    # rebuilt, deterministically


def test_verbose_shows_our_debug_but_not_compiler_internals():
    """--verbose is for reading: our debug messages and library INFO, never numba's IR dumps
    (thousands of lines per traced function) or matplotlib's font scoring."""
    import argparse
    import logging

    from econ_emd.cli import _setup_logging

    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        _setup_logging(argparse.Namespace(verbose=True, quiet=False))
        assert logging.getLogger("econ_emd").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("qkeras").isEnabledFor(logging.INFO)
        for name in ("numba.core.ssa", "matplotlib.font_manager"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("econ_emd").setLevel(logging.NOTSET)
