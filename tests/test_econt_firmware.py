"""`econ-emd econt firmware`: the CMS autoencoder of a golden vector through this product's
hls4ml C simulation and da4ml/Verilator RTL, compared word for word with the vector (the
first 400 crossings of `mc_ttbar/AE`, all 16 latents sent)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from econ_emd.cli import main

VECTORS = Path(__file__).parent / "fixtures" / "econt_vectors"


def test_the_cms_autoencoder_through_csim_and_rtl_equals_the_vector(tmp_path):
    out = tmp_path / "ae"
    assert main(["econt", "firmware", str(VECTORS / "AE"), "-o", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["checks"]) == {"emulator (numpy)", "C simulation (hls4ml, g++)",
                                "RTL simulation (da4ml Verilog, Verilator)"}
    for check in s["checks"].values():
        assert check["crossings"] == 400 and check["fraction_identical"] == 1.0
        assert check["bits_compared"] == 144 and len(check["latents_sent_whole"]) == 16
        assert check["lsb_difference_histogram"] == {"0": 6400}
    assert s["module_sum"]["fraction_identical"] == 1.0 and s["rtl"]["latency_cycles"] is not None
    assert (out / "hls_project" / "firmware" / "myproject.cpp").exists() and (out / "verilog" / "src").is_dir()
    assert "| C simulation (hls4ml, g++) | 100.00% |" in (out / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "work folder left behind"


def test_without_the_asic_product_cuts_the_firmware_differs(tmp_path, monkeypatch, capsys):
    """Negative control: hls4ml with exact products (this product's own encoders' setting)
    is not the ASIC; the check fails (exit 1) and names the C simulation."""
    import econ_emd.models.asic_encoder as asic

    monkeypatch.setattr(asic, "PRODUCT_CUTS", {})
    assert main(["econt", "firmware", str(VECTORS / "AE"), "-o", str(tmp_path / "ae"), "--no-rtl"]) == 1
    assert "C simulation (hls4ml, g++)" in capsys.readouterr().err
    s = json.loads((tmp_path / "ae" / "summary.json").read_text())
    assert s["checks"]["emulator (numpy)"]["fraction_identical"] == 1.0
    assert s["checks"]["C simulation (hls4ml, g++)"]["fraction_identical"] < 0.5


@pytest.mark.parametrize("folder, message", [
    ("BC_2eTx", "not the autoencoder"),
    ("STC_type4_eTx1", "not the autoencoder"),
    ("nowhere", "no such folder"),
])
def test_folders_it_cannot_check_are_one_line_errors(folder, message, tmp_path, capsys):
    assert main(["econt", "firmware", str(VECTORS / folder), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_an_autoencoder_folder_without_expected_words(tmp_path, capsys):
    import shutil

    (tmp_path / "v" / "AE").mkdir(parents=True)
    shutil.copy(VECTORS / "AE" / "init.yaml", tmp_path / "v" / "AE")
    assert main(["econt", "firmware", str(tmp_path / "v" / "AE"), "-o", str(tmp_path / "x")]) == 2
    assert "no expected output" in capsys.readouterr().err
