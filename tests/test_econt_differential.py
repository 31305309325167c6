"""The ECON-T emulator against the CMS emulator on inputs and registers built to reach every
branch (tests/fixtures/econt_differential, README.md there): every word of every family,
one-bit negative controls, and `econt verify|run` on trees and files that cannot be run."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from econ_emd.base.errors import UserError
from econ_emd.cli import main
from econ_emd.econt import autoencoder as ae
from econ_emd.econt.emulator import emulate
from econ_emd.econt.links import read_rx, read_tx
from econ_emd.econt.registers import load_config, parse_config
from econ_emd.econt.verify import aligned_start, verify_tree

ROOT = Path(__file__).parent / "fixtures" / "econt_differential"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
CONTROLS = [(family, name, case["control_of"], case["register"])
            for family, info in MANIFEST.items() for name, case in info["cases"].items()
            if "control_of" in case]


@pytest.mark.parametrize("family", sorted(MANIFEST))
def test_every_word_of_the_family(family):
    report = verify_tree(ROOT / family)
    assert len(report.results) == len(MANIFEST[family]["cases"])
    bad = [f"{r.name}: {r.status} {r.message} {r.first}" for r in report.results if r.status != "match"]
    assert not bad, bad[:3]


def _expected(family: str, name: str) -> np.ndarray:
    return read_tx(ROOT / family / name / "testOutput.csv.gz")


def _produced(family: str, name: str) -> np.ndarray:
    start = MANIFEST[family]["output_from_row"]
    out = emulate(load_config(ROOT / family / name / "init.yaml"),
                  read_rx(ROOT / family / "testInput.csv.gz")).tx
    return out[start:]


@pytest.mark.parametrize("family, name, base, register", CONTROLS)
def test_one_register_bit_moves_the_words_as_the_cms_emulator_says(family, name, base, register):
    """The CMS emulator's words differ between the two configurations (one bit apart), and
    the product's differ in exactly the same crossings and words."""
    exp_base, exp_flip = _expected(family, base), _expected(family, name)
    got_base, got_flip = _produced(family, base), _produced(family, name)
    assert (exp_base != exp_flip).any(), f"{register} moves no word: not a control"
    assert np.array_equal(got_base != got_flip, exp_base != exp_flip)
    assert np.array_equal(got_flip, exp_flip)


def test_the_families_reach_the_branches_they_are_for():
    """Guards the fixture's coverage: every link count of best choice, threshold sum and the
    autoencoder, every STC type, DropLSB up to 255, both densities and spellings, buffer
    thresholds past 511 and the buffer's top, and the three sources of expected words."""
    def docs(family):
        return [parse_config(yaml.safe_load((ROOT / family / n / "init.yaml").read_text()))
                for n in MANIFEST[family]["cases"]]

    for family in ("best_choice", "threshold_sum", "autoencoder"):
        assert {c.n_etx for c in docs(family)} == set(range(14)), family
    stc = docs("super_trigger_cell")
    assert {c.stc_type for c in stc} == set(range(5))
    every = [c for f in MANIFEST for c in docs(f)]
    assert {0, 1, 2, 3, 4, 5, 7, 255} <= {c.drop_lsb for c in every}
    assert {c.high_density for c in every} == {True, False}
    assert {c.erx_msb_first for c in every} == {True, False}
    ts = docs("threshold_sum")
    assert max(c.buff_t1 for c in ts) == 65535 and any(c.threshold[0] == 0 for c in ts)
    assert any(c.tx_sync_word >= 1 << 11 for c in ts) and max(c.threshold[0] for c in ts) == (1 << 24) - 1
    sources = {case["source"] for info in MANIFEST.values() for case in info["cases"].values()}
    assert sources == {"cms", "cms-clipped", "cms-ae", "cms-ae-clipped", "cms-ctc4b", "cms-ctc4b-clipped"}


def test_negative_words_are_read_as_the_cms_emulator_writes_them():
    """A buffer read past what truncated packets wrote gives the CMS emulator's -1 cells."""
    words = _expected("best_choice", "t1below_links4")
    assert (words < 0).any() and (_produced("best_choice", "t1below_links4") == words).all()


# ------------------------------------------------------------ the converter's shift

def test_the_converter_normalizes_a_module_summing_past_2_22_by_2_21():
    """Values of the CMS emulator's compiled converter (converter.x): 48 TCs at 2,031,616
    (a saturated high-density module, sum 97,517,568) give 124 each (x 2^-7), the largest
    CALQ beside a small one, summing to 2^22, gives 247 and 8; below 2^22 the shift is
    the sum's leading bit (a single TC at 5 gives 160 = 1.25)."""
    q = np.zeros((3, 48), dtype=np.int64)
    q[0] = 2031616
    q[1, 0], q[1, 1] = 4062240, 4194304 - 4062240
    q[2, 7] = 5
    x = ae.converter(q)
    assert x[0, 0] == 124 and (x[0] == 124).all()
    assert (x[1, 0], x[1, 1]) == (247, 8)
    assert x[2, 7] == 160 and x[2].sum() == 160


# ------------------------------------------------------------ verify on any tree

def _tree(tmp_path: Path) -> Path:
    """Four configurations sharing one input: two good, two that cannot run, in between."""
    tree = tmp_path / "tree"
    src = ROOT / "no_header"
    tree.mkdir()
    shutil.copy(src / "testInput.csv.gz", tree / "testInput.csv.gz")
    for name in ("a_good", "d_good"):
        shutil.copytree(src / "bc_links6", tree / name)
    bad_mux = tree / "b_mux_50"
    shutil.copytree(src / "bc_links6", bad_mux)
    init = bad_mux / "init.yaml"
    init.write_text(init.read_text().replace("Mux:\n  0: 3\n", "Mux:\n  0: 50\n"))
    bad_yaml = tree / "c_not_yaml"
    shutil.copytree(src / "ts_links3", bad_yaml)
    (bad_yaml / "init.yaml").write_text("Algorithm: [\n")
    return tree


def test_a_broken_configuration_in_the_middle_leaves_the_rest_verified(tmp_path, capsys):
    tree = _tree(tmp_path)
    assert main(["econt", "verify", str(tree)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and "Traceback" not in "\n".join(lines)
    assert lines[0].startswith("a_good: best_choice") and "100% of" in lines[0]
    assert lines[1].startswith("b_mux_50: ERROR: ") and "Mux.0: 50 selects no input TC" in lines[1]
    assert lines[2].startswith("c_not_yaml: ERROR: ") and "not valid YAML" in lines[2]
    assert lines[3].startswith("d_good: best_choice") and "100% of" in lines[3]
    assert lines[4].startswith("2 of 4 configurations identical") and "2 with unusable" in lines[4]


def test_an_emulator_failure_is_one_line_and_the_tree_goes_on(tmp_path, capsys, monkeypatch):
    """Whatever goes wrong inside one folder (here a failure injected into the emulator
    for one configuration) ends as that folder's line; the others still run."""
    from econ_emd.econt import verify

    tree = _tree(tmp_path)
    shutil.rmtree(tree / "b_mux_50")
    shutil.rmtree(tree / "c_not_yaml")
    real = verify.emulate
    calls = []

    def failing(cfg, rx):
        calls.append(1)
        if len(calls) == 1:
            raise IndexError("injected")
        return real(cfg, rx)

    monkeypatch.setattr(verify, "emulate", failing)
    assert main(["econt", "verify", str(tree)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("a_good: ERROR: the emulator failed (IndexError: injected)")
    assert "100% of" in out[1] and out[2].startswith("1 of 2 configurations identical")


def test_outputs_that_cannot_be_aligned_are_one_line(tmp_path, capsys):
    tree = tmp_path / "t"
    shutil.copytree(ROOT / "no_header" / "bc_links6", tree / "bc")
    rx = gzip.decompress((ROOT / "no_header" / "testInput.csv.gz").read_bytes()).decode().splitlines()
    (tree / "testInput.csv").write_text("\n".join(rx[:50]) + "\n")      # fewer rows than the output
    assert main(["econt", "verify", str(tree)]) == 2
    out = capsys.readouterr().out
    assert "bc: ERROR: testOutput.csv.gz: the expected output has 140 rows, the input only 49" in out


def test_alignment_starts_at_the_first_bx0_header():
    rx = np.full((10, 12), 0xA << 28, dtype=np.int64)
    assert aligned_start(rx, 10) == 0 and aligned_start(rx, 7) == 0      # no BX0 header
    rx[3, 0] = 0x9 << 28
    rx[8, 0] = 0x9 << 28
    assert aligned_start(rx, 7) == 3 and aligned_start(rx, 5) == 3
    with pytest.raises(UserError, match="cannot be aligned"):
        aligned_start(rx, 8)
    with pytest.raises(UserError, match="the input only 10"):
        aligned_start(rx, 11)


def test_the_alignment_family_is_not_matched_from_row_0():
    """Negative control of the alignment rule: the same words compared from the input's
    first row (ignoring the BX0 header) do not match."""
    family = "alignment"
    start = MANIFEST[family]["output_from_row"]
    assert start > 0
    cfg = load_config(ROOT / family / "bc_links4" / "init.yaml")
    out = emulate(cfg, read_rx(ROOT / family / "testInput.csv.gz")).tx
    exp = _expected(family, "bc_links4")
    assert np.array_equal(out[start:], exp) and not np.array_equal(out[:len(exp)], exp)


def test_econt_run_never_ends_in_a_traceback(tmp_path, capsys, monkeypatch):
    from econ_emd import econt_cmd

    inp = str(ROOT / "no_header" / "testInput.csv.gz")
    bad = tmp_path / "init.yaml"
    bad.write_text("FormatterBuffer:\n  Global:\n    active_etxs: 14\n")
    assert main(["econt", "run", "-i", inp, "--asic", str(bad)]) == 2
    assert "active_etxs: 14 links" in capsys.readouterr().err
    good = str(ROOT / "no_header" / "ts_links3" / "init.yaml")

    def broken(cfg, rx):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(econt_cmd, "emulate", broken)
    assert main(["econt", "run", "-i", inp, "--asic", good]) == 2
    err = capsys.readouterr().err
    assert "the emulator failed" in err and "ZeroDivisionError: injected" in err and "Traceback" not in err
