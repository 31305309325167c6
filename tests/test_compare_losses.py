"""The loss comparison's statistics and rules: paired statistics on hand-built numbers, the
same seeds for every loss, a search that never reads the test split, resumed rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from econ_emd.config import CONFIG_DIR, load_config
from econ_emd.training.compare_losses import comparison_ratios, paired_comparison


def test_paired_comparison_by_hand():
    """Two seeds, four modules. A is closer on 5 of 8 (module, seed) pairs, ties on 1; the
    medians of the pooled values are 2.0 and 3.0. Resampling modules keeps the pairs, so
    a B that is A doubled everywhere gives a ratio of exactly 0.5 in every resample."""
    a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 2.0, 9.0]])
    b = np.array([[2.0, 3.0, 3.0, 3.0], [2.0, 3.0, 3.0, 5.0]])
    p = paired_comparison(a, b, ("A", "B"), 500, np.random.default_rng(0))
    assert (p.n, p.a_better, p.ties) == (8, 5 / 8, 1 / 8)
    assert p.median_ratio == pytest.approx(np.median(a) / np.median(b)) == pytest.approx(2.0 / 3.0)
    assert p.ci_low <= p.median_ratio <= p.ci_high
    q = paired_comparison(a, 2 * a, ("A", "2A"), 200, np.random.default_rng(1))
    assert q.a_better == 1.0 and q.median_ratio == 0.5 and q.ci_low == q.ci_high == 0.5
    with pytest.raises(ValueError, match="shapes"):
        paired_comparison(a, b[:, :3], ("A", "B"), 10, np.random.default_rng(0))


def _row(medians, means=None):
    from econ_emd.training.compare_losses import LossRow

    runs = [SimpleNamespace(evaluation=SimpleNamespace(overall=SimpleNamespace(median=m, mean=mu)))
            for m, mu in zip(medians, means or medians)]
    return LossRow("x", runs, {})


def test_ratios_are_of_the_medians_over_seeds_and_name_the_worst_seed():
    rows = {"emd_cnn": _row([1.0, 1.2, 1.1], [1.0, 1.0, 1.0]), "telescope": _row([1.5, 1.6, 1.4]),
            "mse": _row([1.3, 1.25, 1.4]), "emd_cnn (float)": _row([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])}
    r = comparison_ratios(rows, "emd_cnn", "emd_cnn (float)")
    assert r["median emd_cnn / telescope"] == pytest.approx(1.1 / 1.5)
    assert r["median emd_cnn / best baseline (mse)"] == pytest.approx(1.1 / 1.3)
    assert r["worst seed emd_cnn / mse"] == pytest.approx(max(1.0 / 1.3, 1.2 / 1.25, 1.1 / 1.4))
    assert r["mean quantized / float (emd_cnn)"] == pytest.approx(1.0 / 0.8)


def _context(cfg, tmp_path):
    return SimpleNamespace(cfg=cfg, out=tmp_path, folder=lambda name: tmp_path / name, emd_runner=lambda: None,
                           frozen_emd_cnn=lambda losses, path=None: None)


def test_every_row_trains_with_the_same_seeds_and_seed_0_is_the_encoder_stage(tmp_path, monkeypatch):
    """The same seeds (and the one split) for every loss; seed 0 of the main loss is the
    encoder stage's training, reused because it is the same request; the paired
    statistics cover every pair of rows."""
    from econ_emd.base.artifacts import atomic_save_npy
    from econ_emd.base.seeds import seed_int
    from econ_emd.stages import compare_losses as st
    from econ_emd.training import compare_losses as cmp
    from econ_emd.training import encoder_run as er

    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["compare_losses.seeds=3", "compare_losses.losses=[emd_cnn, mse, wmse]",
                                                  "compare_losses.bootstrap=100"])
    seeds = st.seeds(cfg)
    assert seeds[0] == seed_int(cfg.seed, "encoder_training") and len(set(seeds)) == 3
    assert st.reuses_encoder_stage(cfg)
    calls = []
    rng = np.random.default_rng(0)
    encoder_stage = st.encoder_request(cfg).settings()

    def fake_run(med):
        ev = SimpleNamespace(overall=SimpleNamespace(median=med, mean=med), by_occupancy=[])
        return SimpleNamespace(evaluation=ev, epochs_run=2, best_epoch=2, quantized=True, to_json=lambda: {})

    def fake_train(request, *, data, out, frozen, runner, label, reuse_from=()):
        calls.append((label.split(",")[0][len("compare["):], request.seed, request.split))
        out.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(out / er.EMD_FILE, rng.random(20))
        return fake_run(1.0)

    def fake_finished(folder, request):       # only the encoder stage's folder holds a finished run
        return fake_run(0.8) if request.settings() == encoder_stage and folder.name == "encoder" else None

    def fake_copy(src, dst):
        calls.append(("emd_cnn", "encoder stage", "test"))
        dst.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(dst / er.EMD_FILE, rng.random(20))

    monkeypatch.setattr(er, "train_and_evaluate", fake_train)
    monkeypatch.setattr(er, "finished_run", fake_finished)
    monkeypatch.setattr(er, "copy_run", fake_copy)
    monkeypatch.setattr("econ_emd.data.dataset.load_dataset", lambda folder: {"test": np.zeros((20, 48))})
    monkeypatch.setattr(cmp, "plot_emd_vs_occupancy_seeds", lambda rows, path: None)
    monkeypatch.setattr(cmp, "comparison_markdown", lambda *a: "")
    result = st.run_compare_losses(_context(cfg, tmp_path))
    by_row = {}
    for row, seed, split in calls:
        by_row.setdefault(row, []).append(seed)
        assert split == "test"
    assert by_row["emd_cnn"] == ["encoder stage", *seeds[1:]]
    assert by_row["mse"] == by_row["wmse"] == by_row["emd_cnn (float)"] == seeds
    assert len(result.paired) == 6 and result.details["seeds"] == seeds


def test_a_row_reuses_the_encoder_stage_only_for_the_same_request():
    """One rule (equal requests): another learning rate, another loss for the encoder
    stage, an unquantized encoder stage without a float row, or the search each keep the
    comparison from reusing it; an unquantized encoder stage is the float twin's request."""
    from econ_emd.stages import compare_losses as st

    base = ["compare_losses.losses=[emd_cnn, mse]"]
    assert st.reuses_encoder_stage(load_config(CONFIG_DIR / "smoke.yaml", base))
    assert st.reuses_encoder_stage(load_config(CONFIG_DIR / "smoke.yaml", base + ["encoder.quantized=false"]))
    for change in (["encoder.learning_rate=0.0123"], ["compare_losses.search=true"],
                   ["encoder.loss=telescope"], ["encoder.quantized=false", "compare_losses.float_twin=false"]):
        assert not st.reuses_encoder_stage(load_config(CONFIG_DIR / "smoke.yaml", base + change)), change


@dataclass
class _Recording:
    """A Dataset that remembers which splits were read (and refuses the test split)."""
    splits: dict
    read: list = field(default_factory=list)

    def __getitem__(self, split):
        self.read.append(split)
        if split == "test":
            raise AssertionError("the search read the test split")
        return self.splits[split]


def test_the_search_judges_on_the_validation_split_only(tmp_path, monkeypatch):
    """Every candidate is trained and judged without touching the test split, and the
    learning rate with the lowest validation median is chosen. The best of the grid lies
    on its upper edge, so the search steps beyond it by the grid's ratio (0.1, better, and
    then 1.0, worse) and chooses 0.1."""
    from econ_emd.stages import compare_losses as st
    from econ_emd.training import encoder_run as er

    cfg = load_config(CONFIG_DIR / "smoke.yaml", ["compare_losses.search=true",
                                                  "compare_losses.learning_rates=[0.001, 0.01]",
                                                  "compare_losses.search_epochs=1"])
    rng = np.random.default_rng(0)
    ds = _Recording({k: rng.gamma(0.3, 40, (60, 48)) for k in ("train", "val", "test")})
    seen = []
    score = {0.001: 2.0, 0.01: 1.0, 0.1: 0.5, 1.0: 3.0}

    def fake_train(request, *, data, out, frozen, runner, label, reuse_from=()):
        loss, lr, split = request.loss, request.params.learning_rate, request.split
        seen.append((loss, lr, split, request.seed))
        data["train"], data[split]
        med = score[round(lr, 6)] * (1.5 if loss == "mse" else 1.0)
        return SimpleNamespace(evaluation=SimpleNamespace(overall=SimpleNamespace(median=med, mean=med)),
                               epochs_run=1, best_epoch=1)

    monkeypatch.setattr(er, "train_and_evaluate", fake_train)
    out = st._search(_context(cfg, tmp_path), ds, ["mse", "wmse"], lambda loss: None, None)
    assert "test" not in ds.read and {s for _, _, s, _ in seen} == {"val"}
    assert [(l, round(lr, 6)) for l, lr, _, _ in seen] == [(l, lr) for l in ("mse", "wmse")
                                                           for lr in (0.001, 0.01, 0.1, 1.0)]
    assert len({s for *_, s in seen}) == 1                     # one seed for every candidate
    assert out["mse"]["chosen"]["learning_rate"] == pytest.approx(0.1) and out["mse"]["chosen"]["epochs"] == 1
    assert [t["val_median"] for t in out["wmse"]["trials"]] == [2.0, 1.0, 0.5, 3.0]
    assert [t["beyond_the_grid"] for t in out["wmse"]["trials"]] == [False, False, True, True]


def test_next_candidate_steps_past_the_edge_the_best_lies_on():
    from econ_emd.stages.compare_losses import next_candidate

    grid = [0.002, 0.005, 0.01, 0.02]
    assert next_candidate(grid, 0.02) == 0.04
    assert next_candidate(grid, 0.002) == 0.0008
    assert next_candidate(grid, 0.005) is None and next_candidate([0.01], 0.01) is None


def test_a_run_folder_is_reused_only_for_the_same_settings(tmp_path, monkeypatch):
    """Same settings: the finished run is returned without training. Other settings (a
    changed learning rate): the old result and checkpoints (an asic float start's too) are cleared and it trains anew."""
    from econ_emd.training import encoder_run as er
    from econ_emd.training import encoder_train as et
    from econ_emd.training.evaluation import Evaluation

    cfg = load_config(CONFIG_DIR / "smoke.yaml")
    trained = []

    def fake_train(train, val, params, loss_fn, seed, out, label, start=None):
        trained.append(params.learning_rate)
        assert not (out / et.CHECKPOINT_FILE).exists(), "a checkpoint of other settings was left to resume from"
        assert not (out / et.FLOAT_START_DIR).exists(), "a float start of other settings was left to resume from"
        return et.Trained(None, None, {"loss": [1.0], "val_loss": [1.0], "seconds": 0.0, "initial_epoch": 0})

    def fake_save(enc, dec, out):
        (out / et.ENCODER_FILE).write_text("model")

    ev = Evaluation.from_json({"overall": {"n": 3, "mean": 1.0, "median": 1.0, "p16": 1.0, "p84": 1.0},
                               "n_dead_reconstructions": 0, "by_occupancy": [], "by_sum_mip": []})
    monkeypatch.setattr(et, "train_autoencoder", fake_train)
    monkeypatch.setattr(et, "save_encoder", fake_save)
    monkeypatch.setattr(et, "reconstruct", lambda enc, dec, x: (None, x))
    monkeypatch.setattr(er, "evaluate_reconstruction", lambda judged, recon, runner: (ev, np.ones(len(judged))))
    ds = {k: np.ones((3, 48)) for k in ("train", "val", "test")}
    out = tmp_path / "run"

    def run(lr):
        p = cfg.encoder.model_copy(update={"learning_rate": lr})
        request = er.TrainRequest(params=p, loss="mse", seed=7)
        return er.train_and_evaluate(request, data=ds, out=out, frozen=None, runner=None, label="t")

    run(0.01)
    run(0.01)
    assert trained == [0.01]
    (out / et.CHECKPOINT_FILE).write_text("a checkpoint of the 0.01 run")
    (out / et.FLOAT_START_DIR).mkdir()
    (out / et.FLOAT_START_DIR / et.CHECKPOINT_FILE).write_text("the 0.01 run's float start")
    r = run(0.02)
    assert trained == [0.01, 0.02] and r.learning_rate == 0.02


def test_the_default_compares_the_losses_on_the_published_encoder():
    """The default encoder is the asic kind, its losses are compared on the QKeras encoder
    (compare_losses.kind), which then owes nothing to the encoder stage; kind null compares
    them on the encoder's kind and reuses its training."""
    from econ_emd.stages import compare_losses as st

    cfg = load_config(CONFIG_DIR / "default.yaml")
    assert cfg.encoder.kind == "asic" and cfg.compare_losses.kind == "qkeras"
    kinds = {st.request(cfg, r, st._tuned_settings(cfg, r.loss), 0).params.kind for r in st.rows(cfg)}
    assert kinds == {"qkeras"} and not st.reuses_encoder_stage(cfg)
    same = load_config(CONFIG_DIR / "default.yaml", ["compare_losses.kind=null"])
    kinds = {st.request(same, r, st._tuned_settings(same, r.loss), 0).params.kind for r in st.rows(same)}
    assert kinds == {"asic"} and st.reuses_encoder_stage(same)
