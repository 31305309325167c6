import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from econ_emd.models.emd_cnn import PUBLISHED_EMD_CNN, EmdCnnArch, build_emd_cnn, fold_batchnorm
from econ_emd.training import emd_cnn_train as ec
from econ_emd.data.dataset import Dataset, split_indices
from econ_emd.emd.exact import exact_emd
from econ_emd.data.labels import label_pairs, make_pairs
from econ_emd.data.params import DataParams, LabelParams
from econ_emd.training.params import EmdCnnParams
from econ_emd.emd.exact import EmdRunner

SMALL = dict(filters=8, dense=32, batch_size=64, augment_rotations=False)


@pytest.fixture(scope="module")
def smoke_pairs(modules):
    idx = split_indices(len(modules), DataParams(), seed=0)
    ds = Dataset({k: modules[v] for k, v in idx.items()})
    pairs = make_pairs(ds, LabelParams(random_pairs=3000, perturbed_pairs=3000), seed=0)
    label_pairs(pairs, EmdRunner(progress=False))
    return pairs


@pytest.fixture(scope="module")
def trained(smoke_pairs):
    model, history = ec.train_emd_cnn(smoke_pairs, EmdCnnParams(epochs=20, patience=20, **SMALL), seed=0)
    return ec.freeze(model), history


def test_published_architecture_size():
    model = build_emd_cnn(PUBLISHED_EMD_CNN)
    # the published network has ~189k parameters
    assert 185_000 < model.count_params() < 192_000
    assert len(model.inputs) == 2 and tuple(model.inputs[0].shape[1:]) == (48,)


def _arch(**changes) -> EmdCnnArch:
    """The published architecture with some fields changed."""
    return dataclasses.replace(PUBLISHED_EMD_CNN, **changes)


DIFFERENCE = _arch(filters=8, kernel=3, dense=16, output="mass", inputs="difference")
CANONICAL = _arch(filters=8, kernel=3, dense=16, output="mass", inputs="difference", symmetrize="canonical")


@pytest.mark.parametrize("arch", [PUBLISHED_EMD_CNN, EmdCnnArch("8x8", 8, 3, 2, 16, "mass", True, "pair", "mean"),
                                  _arch(output="log"), DIFFERENCE, CANONICAL,
                                  _arch(filters=8, dense=16, symmetrize="canonical")])
def test_symmetric_and_unit_sum_invariant(arch, modules):
    model = build_emd_cnn(arch)
    a, b = modules[:32].astype(np.float32), modules[32:64].astype(np.float32)
    ab = model([a, b], training=False).numpy()
    ba = model([b, a], training=False).numpy()
    np.testing.assert_array_equal(ab, ba)
    scaled = model([a * 37.0, b * 0.01], training=False).numpy()
    np.testing.assert_allclose(scaled, ab, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("output,inputs,symmetrize", [("linear", "pair", "mean"), ("mass", "pair", "mean"),
                                                      ("mass", "difference", "mean"),
                                                      ("mass", "difference", "canonical")])
def test_gradients_finite_for_zero_and_sparse_inputs(output, inputs, symmetrize):
    model = build_emd_cnn(_arch(filters=8, dense=16, output=output, difference_channel=True, inputs=inputs,
                                     symmetrize=symmetrize))
    zero = tf.zeros((2, 48))
    sparse = tf.constant(np.eye(48, dtype=np.float32)[[0, 5]])
    for a, b in ((zero, zero), (zero, sparse), (sparse, sparse)):
        with tf.GradientTape() as tape:
            tape.watch(a)
            tape.watch(b)
            y = model([a, b], training=False)
        ga, gb = tape.gradient(y, [a, b])
        assert np.isfinite(y.numpy()).all()
        assert np.isfinite(ga.numpy()).all() and np.isfinite(gb.numpy()).all()


def test_difference_inputs_give_zero_for_identical_modules_and_round_trip(modules, tmp_path):
    model = build_emd_cnn(DIFFERENCE)
    a = modules[:64].astype(np.float32)
    np.testing.assert_array_equal(model([a, 3 * a], training=False).numpy(), 0.0)
    frozen = ec.freeze(model)
    ec.save_emd_cnn(frozen, tmp_path, {"arch": "test"})
    b = modules[64:128]
    np.testing.assert_array_equal(ec.predict_emd(ec.load_frozen_emd_cnn(tmp_path), a, b),
                                  ec.predict_emd(frozen, a, b))
    with pytest.raises(ValueError, match="needs output 'mass'"):
        build_emd_cnn(_arch(output="linear", inputs="difference"))


@pytest.mark.parametrize("symmetrize", ["mean", "canonical"])
def test_one_way_cosine_training_learns_the_symmetrized_model(smoke_pairs, symmetrize):
    params = EmdCnnParams(epochs=6, lr_schedule="cosine", inputs="difference", kernel=3, one_way_training=True,
                          symmetrize=symmetrize, **SMALL)
    model, history = ec.train_emd_cnn(smoke_pairs, params, seed=0)
    assert history["val_loss"][-1] < 0.5 * history["val_loss"][0]
    assert history["final_learning_rate"] < 0.05 * params.learning_rate
    ps = smoke_pairs["perturbed", "test"]
    ab, ba = ec.predict_emd(model, ps.a, ps.b), ec.predict_emd(model, ps.b, ps.a)
    np.testing.assert_allclose(ab, ba, rtol=1e-6)    # the saved model is the symmetrized one
    ok = ps.emd > 0.05
    assert np.median(np.abs(ab[ok] / ps.emd[ok] - 1)) < 0.3     # untrained: ~0.6 (exp(0) x moved mass)


def test_training_lowers_validation_loss(trained):
    _, history = trained
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert min(history["val_loss"]) < 0.5 * history["val_loss"][0]


def test_trained_model_tracks_exact_emd(trained, smoke_pairs, modules):
    model, _ = trained
    ps = smoke_pairs["random", "test"]
    tf.keras.utils.set_random_seed(0)
    untrained = build_emd_cnn(EmdCnnParams(**SMALL).arch())
    rms = lambda m: np.sqrt(np.mean(((ec.predict_emd(m, ps.a, ps.b) - ps.emd) / ps.emd) ** 2))  # noqa: E731
    assert rms(model) < 0.5 * rms(untrained)
    assert rms(model) < 0.3
    same = ec.predict_emd(model, modules[:50], modules[:50])
    assert np.abs(same).max() < 0.05 * np.median(ps.emd)  # f(a, a) ~ 0


def test_frozen_model_has_no_trainable_weights_and_round_trips(trained, tmp_path, modules):
    model, history = trained
    assert model.trainable_weights == []
    ec.save_emd_cnn(model, tmp_path, {"arch": "test"})
    loaded = ec.load_frozen_emd_cnn(tmp_path)
    assert loaded.trainable_weights == []
    a, b = modules[:100], modules[100:200]
    np.testing.assert_array_equal(ec.predict_emd(loaded, a, b), ec.predict_emd(model, a, b))


def test_folding_batchnorm_keeps_the_function(trained, tmp_path, modules):
    model, _ = trained
    folded = ec.freeze(fold_batchnorm(model, EmdCnnParams(**SMALL).arch()))
    core = folded.get_layer("emd_core")
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in core.layers)
    assert any(isinstance(layer, tf.keras.layers.BatchNormalization)
               for layer in model.get_layer("emd_core").layers)
    a, b = modules[:200], modules[200:400]
    want = ec.predict_emd(model, a, b)
    np.testing.assert_allclose(ec.predict_emd(folded, a, b), want, rtol=2e-5, atol=1e-6)
    ec.save_emd_cnn(folded, tmp_path, {"arch": "test"})
    np.testing.assert_allclose(ec.predict_emd(ec.load_frozen_emd_cnn(tmp_path), a, b), want, rtol=2e-5, atol=1e-6)


def test_frozen_model_works_inside_a_loss(trained, modules):
    """Gradients flow through the frozen EMD-CNN to a trainable layer, its weights do not move."""
    model, _ = trained
    before = [w.numpy().copy() for w in model.weights]
    x = tf.constant(modules[:16], tf.float32)
    dense = tf.keras.layers.Dense(48, activation="softplus")
    dense.build((None, 48))
    opt = tf.keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model([x, dense(x / 100.0)], training=False))
    grads = tape.gradient(loss, dense.trainable_weights)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    opt.apply_gradients(zip(grads, dense.trainable_weights))
    for w, b in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_loads_external_published_format(tmp_path, modules):
    """A Keras 2 .h5 with two (4, 4, 3) inputs, as the published EMD-CNN was saved."""
    i1 = tf.keras.Input((4, 4, 3))
    i2 = tf.keras.Input((4, 4, 3))
    x = tf.keras.layers.Concatenate()([i1, i2])
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(1)(x)
    external = tf.keras.Model([i1, i2], out)
    path = tmp_path / "published.h5"
    external.save(path, save_format="h5")
    loaded = ec.load_frozen_emd_cnn(path)
    assert loaded.trainable_weights == []
    a, b = modules[:20], modules[20:40]
    from econ_emd.geometry import calq_to_4x4x3
    ua = calq_to_4x4x3(ec.unit_sum32(a))
    ub = calq_to_4x4x3(ec.unit_sum32(b))
    expect = 0.5 * (external.predict([ua, ub], verbose=0) + external.predict([ub, ua], verbose=0)).ravel()
    np.testing.assert_allclose(ec.predict_emd(loaded, a, b), expect, rtol=1e-5, atol=1e-6)


def test_not_a_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="not a loadable Keras EMD-CNN"):
        ec.load_frozen_emd_cnn(bad)
    with pytest.raises(ValueError, match="no EMD-CNN model file"):
        ec.load_frozen_emd_cnn(tmp_path / "none.h5")


def test_rotation_is_an_isometry(modules):
    a, b = modules[:100], modules[100:200]
    base = exact_emd(a, b)
    for k in (1, 2):
        np.testing.assert_allclose(exact_emd(ec.rotations(a, k), ec.rotations(b, k)), base, atol=1e-4)


def test_relative_error_stats_hand_example():
    exact = np.array([1.0, 2.0, 4.0, 0.0])
    pred = np.array([1.1, 1.8, 4.0, 0.3])
    st = ec.relative_error_stats(pred, exact, n_bins=1)
    assert st["n_excluded_tiny"] == 1
    np.testing.assert_allclose(st["rel_mean"], (0.1 - 0.1 + 0.0) / 3, atol=1e-12)
    np.testing.assert_allclose(st["rel_sigma"], np.std([0.1, -0.1, 0.0]), atol=1e-12)


def test_canonical_order_runs_the_network_once_and_survives_folding_and_saving(modules, tmp_path):
    model = build_emd_cnn(CANONICAL)
    assert len(model.get_layer("emd_core")._inbound_nodes) == 1     # one pass per pair
    assert len(build_emd_cnn(DIFFERENCE).get_layer("emd_core")._inbound_nodes) > 1
    rng = np.random.default_rng(0)
    for layer in model.get_layer("emd_core").layers:   # non-trivial statistics to fold
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2, v.shape)])
    order = model.get_layer("canonical_order")
    order.set_weights([rng.standard_normal(48)])   # a saved model keeps its own direction
    a, b = modules[:200], modules[200:400]
    want = ec.predict_emd(model, a, b)
    folded = ec.freeze(fold_batchnorm(model, CANONICAL))
    np.testing.assert_allclose(ec.predict_emd(folded, a, b), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(ec.predict_emd(folded, b, a), ec.predict_emd(folded, a, b))
    ec.save_emd_cnn(folded, tmp_path, {"arch": "test"})
    loaded = ec.load_frozen_emd_cnn(tmp_path)
    np.testing.assert_array_equal(loaded.get_layer("canonical_order").get_weights()[0], order.get_weights()[0])
    np.testing.assert_array_equal(ec.predict_emd(loaded, a, b), ec.predict_emd(folded, a, b))
