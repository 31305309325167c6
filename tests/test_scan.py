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
    assert names == [f"{n}links_{k}" for n in (2, 3, 4, 5) for k in ("qkeras", "asic", "hgq_beta1e-05")]
    more = load_config(CONFIG_DIR / "default.yaml", ["scan.weight_bits=[4, 5, 8]", "scan.link_counts=[5]"])
    # 5 is the encoder's own weight width: not a separate point
    assert [p.name for p in scan.points(more)] == ["5links_qkeras", "5links_qkeras_w4", "5links_qkeras_w8",
                                                   "5links_asic", "5links_hgq_beta1e-05"]
    # each kind trains at its own learning rate
    assert scan.point_config(more, scan.points(more)[3]).encoder.learning_rate == more.scan.learning_rates["asic"]
    p = scan.points(more)[1]
    pcfg = scan.point_config(more, p)
    assert pcfg.encoder.weight_bits == 4 and pcfg.encoder.bits() == 9 and pcfg.encoder.loss == "emd_cnn"


def test_pareto_front_by_hand():
    pts = [{"name": "a", "lut": 100, "median_exact_emd": 1.0}, {"name": "b", "lut": 50, "median_exact_emd": 1.2},
           {"name": "c", "lut": 120, "median_exact_emd": 1.1}, {"name": "d", "lut": 50, "median_exact_emd": 1.3},
           {"name": "e", "lut": None, "median_exact_emd": 0.1}]
    assert scan.pareto_front(pts) == ["a", "b"]     # c worse than a in both; d worse than b; e unsynthesized


def _fake_point(calls, stop_at):
    def fake_point(cfg_, run_dir, p, work, ds, frozen, runner, reuse_from):
        if len(calls) + 1 == stop_at["n"]:
            (work / "half-written").write_text("x")
            raise KeyboardInterrupt
        calls.append(p.name)
        for folder in ("encoder", "verilog"):            # the point's declared outputs
            (work / folder).mkdir()
            (work / folder / "f").write_text(p.name)
        lut = 1000 if p.kind == "qkeras" else 400
        return scan.PointResult(figures={
            "point": vars(p), "name": p.name, "label": p.label, "latent_bits": 9, "median_exact_emd": 1.0,
            "mean_exact_emd": 1.0, "ebops": None, "epochs_run": 1, "csim_bit_exact": 1.0, "rtl_bit_exact": 1.0,
            "n_check": 10, "lut": lut, "ff": 10, "latency_cycles": 4, "ii": 1, "estimated_lut_da4ml": lut,
            "synthesis": {"version": "Yosys test", "script": "s"}, "seconds": {}})
    return fake_point


def _no_upstream(monkeypatch):
    """The data and EMD-CNN stages a point reads, taken as current (their digests: missing)."""
    monkeypatch.setattr(scan, "_prepare", lambda cfg, run_dir, progress: None)
    monkeypatch.setattr("econ_emd.registry.is_current", lambda cfg, run_dir, name: True)
    monkeypatch.setattr("econ_emd.data.dataset.load_dataset", lambda folder: None)
    monkeypatch.setattr("econ_emd.training.emd_cnn_train.load_frozen_emd_cnn", lambda path: None)


def test_the_scan_resumes_without_redoing_finished_points(tmp_path, monkeypatch):
    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["scan.link_counts=[2, 3]"])
    calls, stop_at = [], {"n": 3}
    monkeypatch.setattr(scan, "_run_point", _fake_point(calls, stop_at))
    _no_upstream(monkeypatch)
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
    # a damaged output, or a key a point reads changed, redoes that point (or all) and only those
    (run / "scan" / "3links_qkeras" / "verilog" / "f").write_text("edited by hand")
    scan.run_scan(cfg, run, progress=False)
    assert calls[4:] == ["3links_qkeras"]
    scan.run_scan(load_config(CONFIG_DIR / "smoke.yaml", ["scan.link_counts=[2, 3]", "rtl.latency_cutoff=3"]),
                  run, progress=False)
    assert sorted(calls[5:]) == sorted(calls[:4])
    scan.run_scan(load_config(CONFIG_DIR / "smoke.yaml", ["scan.link_counts=[2, 3]", "rtl.latency_cutoff=3",
                                                          "compare_losses.seeds=4"]), run, progress=False)
    assert len(calls) == 9                                       # a key no point reads changes nothing


@pytest.mark.parametrize("loss, reused", [("emd_cnn", True), ("mse", False)])
def test_a_point_reuses_the_encoder_stage_only_for_the_same_request(tmp_path, monkeypatch, loss, reused):
    """The point at the encoder stage's own link count and kind reuses its training only
    when the stage was asked the same thing: the scan trains against the EMD-CNN, so an
    encoder stage trained with MSE is never shown as an EMD-CNN-trained point."""
    from types import SimpleNamespace

    import numpy as np

    from econ_emd.base.artifacts import atomic_write_json
    from econ_emd.stages.result import encoder_request
    from econ_emd.training import encoder_run as er
    from econ_emd.training import encoder_train as et

    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["scan.link_counts=[5]", "scan.kinds=[qkeras]", "encoder.links=5",
                                                  f"encoder.loss={loss}", "encoder.learning_rate=0.02",
                                                  "scan.learning_rates={qkeras: 0.02}"])
    run = tmp_path / "run"
    stage = run / "encoder"
    stage.mkdir(parents=True)
    atomic_write_json(stage / er.SETTINGS_FILE, encoder_request(cfg).settings())
    for f in (er.RUN_FILE, er.EMD_FILE, et.ENCODER_FILE, et.DECODER_FILE):
        (stage / f).write_text("{}")
    trained, copied = [], []

    class Stop(Exception):
        pass
    ev = SimpleNamespace(overall=SimpleNamespace(median=1.0, mean=1.0))
    fake_run = SimpleNamespace(evaluation=ev, history={}, epochs_run=1)
    monkeypatch.setattr("econ_emd.registry.is_current", lambda cfg, run_dir, name: True)
    monkeypatch.setattr(er, "finished_run", lambda folder, request: fake_run
                        if request.settings() == er._recorded_settings(folder) and (folder / er.RUN_FILE).exists()
                        else None)
    monkeypatch.setattr(er, "copy_run", lambda src, dst: copied.append(src))
    monkeypatch.setattr(er, "get_loss", lambda *a: None)

    def train(train, val, params, loss_fn, seed, out, label, start=None):
        trained.append(params.loss)
        raise Stop
    monkeypatch.setattr(et, "train_autoencoder", train)
    monkeypatch.setattr(et, "load_encoder", lambda path: SimpleNamespace(predict=lambda x, **kw: x))
    monkeypatch.setattr(et, "firmware_form", lambda enc, m: et.FirmwareForm(enc, None, np.zeros((len(m), 4)),
                                                                            np.zeros((len(m), 4))))

    def stop(*a, **kw):
        raise Stop
    monkeypatch.setattr("econ_emd.firmware.flow.build_firmware", stop)
    p = scan.points(cfg)[0]
    with pytest.raises(Stop):
        scan._run_point(scan.point_config(cfg, p), run, p, tmp_path / "work",
                        {k: np.ones((3, 48)) for k in ("train", "val", "test")}, None, None, [stage])
    assert (copied, trained) == (([stage], []) if reused else ([], ["emd_cnn"]))
