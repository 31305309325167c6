"""The default kind's whole pipeline at smoke size (encoder.kind asic): the float start
trained once and reused by the loss comparison's float row and by the other link counts,
the export and decoder stages, the decoder's FPGA capacity from da4ml's figures when Yosys
is not asked for, the chain table in the report, and the firmware stages run in a child
process beside the trainings, its error handed back."""
from __future__ import annotations

import json

from econ_emd.cli import main
from econ_emd.config import CONFIG_DIR

SMOKE = str(CONFIG_DIR / "smoke.yaml")
ASIC = ["--set", "encoder.kind=asic", "--set", "compare_losses.kind=null", "--set", "encoder.asic_decoder_hidden=[16]",
        "--set", "encoder.asic_decoder_epochs=1", "--set", "compare_losses.losses=[emd_cnn]",
        "--set", "compare_losses.seeds=1", "--set", "compare_econt.train_encoders=true",
        "--set", "compare_econt.link_counts=[2, 3]", "--set", "compare_econt.heldout_crossings=false",
        "--set", "compare_econt.signals=false", "--set", "compare_econt.cms_autoencoder=false",
        "--set", "firmware.n_check=200"]


def test_the_asic_pipeline_reuses_its_float_start_and_builds_the_chain(tmp_path, caplog):
    import logging

    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="econ_emd"):
        assert main(["pipeline", "-c", SMOKE, "--run-dir", str(run), *ASIC]) == 0
    float_start = run / "encoder" / "float_start"
    twins = [run / "compare_losses" / "emd_cnn_float" / "seed_0", run / "compare_econt" / "encoder_3links" / "seed_0" / "float_start"]
    for twin in twins:                                # the same float training, copied, not trained again
        assert (twin / "emd.npy").read_bytes() == (float_start / "emd.npy").read_bytes(), twin
        assert (twin / "encoder.h5").read_bytes() == (float_start / "encoder.h5").read_bytes(), twin
    trained_twice = [r.getMessage() for r in caplog.records if "(float start) epoch 1/" in r.getMessage()
                     or "emd_cnn (float), seed 0] epoch 1/" in r.getMessage()]
    assert len(trained_twice) == 1, trained_twice     # the encoder stage's float start only
    assert (run / "export" / "configurations" / "init_2links.yaml").exists()
    assert (run / "export" / "configurations" / "init_3links.yaml").exists()
    decoder = json.loads((run / "decoder" / "summary.json").read_text())
    assert decoder["check_passed"] and decoder["synthesis"] is None
    cap = decoder["capacity"]
    assert cap["counts_from"] == "da4ml estimate" and cap["lut"] > 0 and cap["ff"] > 0 and cap["modules"] > 0
    started = [r.getMessage() for r in caplog.records if "running in a child process" in r.getMessage()]
    beside = {n for m in started for n in m.split(":")[0].split(", ")}
    assert started[0].startswith("firmware") and "decoder" in beside, started   # rtl: once da4ml's solver compiled
    report = (run / "report.md").read_text()
    assert "## The encoder the ECON-T runs, from training to the back end" in report
    assert "(da4ml estimate)" in report


def test_a_stage_beside_the_pipeline_hands_back_its_error(tmp_path):
    """The decoder started beside the pipeline on a run without its inputs: its child
    process fails, and the parent raises the same error (the CLI's one line, exit 2)."""
    import pytest

    from econ_emd.base.errors import StageOrderError
    from econ_emd.config import load_config
    from econ_emd.registry import _BesideStages

    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["encoder.kind=asic"])
    with _BesideStages(cfg, tmp_path) as beside:
        beside.start(["decoder"])
        with pytest.raises(StageOrderError, match="needs up-to-date outputs of: data, encoder"):
            beside.wait_for({"decoder"})
    assert not list(tmp_path.iterdir())                 # nothing half-written
