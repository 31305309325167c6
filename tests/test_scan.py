"""`econ-emd scan`: its points, the Pareto front, and resuming after an interruption
without redoing finished points (the point runner faked: the real one is the encoder,
firmware and RTL path, tested elsewhere)."""
from __future__ import annotations

import json

import pytest

from econ_emd import scan
from econ_emd.config import CONFIG_DIR, load_config


def test_points_of_the_default_scan():
    cfg = load_config(CONFIG_DIR / "default.yaml")
    names = [p.name for p in scan.points(cfg)]
    assert names == [f"{n}links_{k}" for n in (2, 3, 4, 5) for k in ("qkeras", "hgq_beta1e-05")]
    more = load_config(CONFIG_DIR / "default.yaml", ["scan.weight_bits=[4, 5, 8]", "scan.link_counts=[5]"])
    # 5 is the encoder's own weight width: not a separate point
    assert [p.name for p in scan.points(more)] == ["5links_qkeras", "5links_qkeras_w4", "5links_qkeras_w8",
                                                   "5links_hgq_beta1e-05"]
    p = scan.points(more)[1]
    assert scan.point_params(more, p).weight_bits == 4 and scan.point_params(more, p).bits() == 9


def test_pareto_front_by_hand():
    pts = [{"name": "a", "lut": 100, "median_exact_emd": 1.0}, {"name": "b", "lut": 50, "median_exact_emd": 1.2},
           {"name": "c", "lut": 120, "median_exact_emd": 1.1}, {"name": "d", "lut": 50, "median_exact_emd": 1.3},
           {"name": "e", "lut": None, "median_exact_emd": 0.1}]
    assert scan.pareto_front(pts) == ["a", "b"]     # c worse than a in both; d worse than b; e unsynthesized


def test_the_scan_resumes_without_redoing_finished_points(tmp_path, monkeypatch):
    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["scan.link_counts=[2, 3]"])
    calls, stop_at = [], {"n": 3}

    def fake_point(cfg_, run_dir, p, work, ds, frozen, runner):
        if len(calls) + 1 == stop_at["n"]:
            (work / "half-written").write_text("x")
            raise KeyboardInterrupt
        calls.append(p.name)
        lut = 1000 if p.kind == "qkeras" else 400
        return {"point": vars(p), "name": p.name, "label": p.label, "latent_bits": 9, "median_exact_emd": 1.0,
                "mean_exact_emd": 1.0, "ebops": None, "epochs_run": 1, "csim_bit_exact": 1.0, "rtl_bit_exact": 1.0,
                "n_check": 10, "lut": lut, "ff": 10, "latency_cycles": 4, "ii": 1, "estimated_lut_da4ml": lut,
                "synthesis": {"version": "Yosys test", "script": "s"}, "seconds": {}}

    monkeypatch.setattr(scan, "_run_point", fake_point)
    monkeypatch.setattr(scan, "_prepare", lambda cfg, run_dir, progress: None)
    monkeypatch.setattr(scan, "_point_hash", lambda cfg, run_dir, p: "h")
    monkeypatch.setattr("econ_emd.data.dataset.load_dataset", lambda folder: None)
    monkeypatch.setattr("econ_emd.training.emd_cnn_train.load_frozen_emd_cnn", lambda path: None)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        scan.run_scan(cfg, run, progress=False)
    assert calls == ["2links_qkeras", "2links_hgq_beta1e-05"]
    assert not (run / "scan" / "3links_qkeras").exists()          # no half-written point under its name
    stop_at["n"] = 0
    out = scan.run_scan(cfg, run, progress=False)
    assert calls == ["2links_qkeras", "2links_hgq_beta1e-05", "3links_qkeras", "3links_hgq_beta1e-05"]
    assert [p["name"] for p in out["points"]] == calls
    assert not list((run / "scan").glob(".*"))                   # the interrupted work folder was redone
    assert set(out["pareto"]) == {"2links_hgq_beta1e-05", "3links_hgq_beta1e-05"}
    assert (run / "scan" / "scan.md").exists() and (run / "scan" / "pareto.png").exists()
    summary = json.loads((run / "scan" / "summary.json").read_text())
    assert len(summary["points"]) == 4
    # a third run redoes nothing
    scan.run_scan(cfg, run, progress=False)
    assert len(calls) == 4
