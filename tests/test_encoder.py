import numpy as np
import pytest
import tensorflow as tf

from econ_emd.models.econt import (ElinkBudgetError, EncoderArch, build_decoder, build_encoder, check_elink_budget,
                          elink_preset)
from econ_emd.training import encoder_train as et
from econ_emd.training import losses as L
from econ_emd.training.evaluation import evaluate_reconstruction
from econ_emd.training.params import EncoderParams


def test_reference_parameter_counts():
    assert build_encoder().count_params() == 2144
    assert build_encoder(EncoderArch(quantized=False)).count_params() == 2144
    assert build_decoder().count_params() == 2833
    assert all(l.name != "input" for l in build_encoder().layers)


@pytest.mark.parametrize("elinks, bits", [(2, 3), (3, 5), (4, 7), (5, 9)])
def test_elink_presets_fit(elinks, bits):
    assert elink_preset(elinks) == bits
    budget = check_elink_budget(elinks, bits)
    assert budget["bits_needed"] <= budget["bits_available"] == 32 * elinks
    assert EncoderParams(elinks=elinks).bits() == bits


def test_elink_budget_errors():
    with pytest.raises(ElinkBudgetError, match="2 eLinks carry 64"):
        check_elink_budget(2, 5)
    with pytest.raises(ValueError, match="eLinks carry"):
        EncoderParams(elinks=3, latent_bits=9)
    with pytest.raises(ElinkBudgetError, match="no preset"):
        elink_preset(6)


@pytest.mark.parametrize("bits", [3, 5, 9])
def test_latents_lie_on_the_quantizer_grid(modules, bits):
    tf.keras.utils.set_random_seed(1)
    enc = build_encoder(EncoderArch(latent_bits=bits))
    z = enc.predict(et.encoder_inputs(modules, enc), verbose=0)
    lsb = 2.0 ** -(bits - 1)
    np.testing.assert_array_equal(z / lsb, np.round(z / lsb))
    assert z.min() >= 0 and z.max() <= 2 - lsb
    assert len(np.unique(z)) > 3


def test_inputs_are_quantized_sumlog2(modules):
    enc = build_encoder()
    x = et.encoder_inputs(modules, enc)
    np.testing.assert_array_equal(x * 64, np.round(x * 64))   # fixed<10,4>: 6 fractional bits
    s = et.encoder_inputs(modules).reshape(len(modules), -1).sum(1)
    assert (s >= 1 - 1e-6).all() and (s < 2).all()
    np.testing.assert_array_equal(x[:, 4:, 4:], 0)


def _imgs(modules):
    return tf.constant(et.targets(modules[:40]))


@pytest.mark.parametrize("name", ["mse", "wmse", "telescope"])
def test_losses_zero_for_identical_positive_otherwise(modules, name):
    fn = L.get_loss(name)
    t = _imgs(modules)
    np.testing.assert_allclose(fn(t, t).numpy(), 0.0, atol=1e-12)
    shifted = tf.roll(t, 1, axis=2)
    assert (fn(t, shifted).numpy() > 0).all()


def test_sinkhorn_minimal_for_identical_and_close_to_exact(modules):
    from econ_emd.emd.exact import exact_emd

    fn = L.sinkhorn_loss(epsilon=0.05, n_iter=300)
    t = _imgs(modules)
    other = tf.constant(et.targets(modules[40:80]))
    same = fn(t, t).numpy()
    diff = fn(t, other).numpy()
    exact = exact_emd(modules[:40], modules[40:80])
    assert (diff > same).all()
    np.testing.assert_allclose(diff, exact, rtol=0.1, atol=0.05)


def test_telescope_hand_computation():
    """One TC of charge 1 in the target, the reconstruction puts it on the next TC."""
    t = np.zeros((1, 48)); t[0, 0] = 1.0
    p = np.zeros((1, 48)); p[0, 1] = 1.0
    from econ_emd.base.geometry import calq_to_8x8

    ti = tf.constant(calq_to_8x8(t)[..., None], tf.float32)
    pi = tf.constant(calq_to_8x8(p)[..., None], tf.float32)
    idx, w = L.telescope_groups()
    # L_TC: two TCs with (1-0)^2 * 1 each, averaged over 48
    l_tc = 2.0 / 48
    # L_2x2: groups holding TC0 xor TC1 differ by 1 (weighted); groups holding both do not
    has0 = (idx == 0).any(1)
    has1 = (idx == 1).any(1)
    l_2x2 = float(((has0 ^ has1) * w).sum()) / 36
    # L_4x4: both TCs are in rhombus 0: sums equal
    l_4x4 = 0.0
    expect = 4 * l_tc + 2 * l_2x2 + l_4x4
    np.testing.assert_allclose(L.telescope(ti, pi).numpy()[0], expect, rtol=1e-6)


def test_telescope_groups_layout():
    idx, w = L.telescope_groups()
    assert idx.shape == (36, 4)
    assert len({tuple(sorted(g)) for g in idx.tolist()}) == 36
    assert (np.bincount(idx.ravel(), minlength=48) > 0).all()   # every TC is in some group
    assert [0, 1, 4, 5] in idx.tolist()
    assert (w > 0).all()


def test_emd_cnn_loss_needs_a_model():
    with pytest.raises(ValueError, match="needs a trained EMD-CNN"):
        L.get_loss("emd_cnn")


@pytest.mark.parametrize("name", ["mse", "wmse", "telescope", "sinkhorn"])
def test_smoke_training_lowers_loss(modules, name):
    params = EncoderParams(epochs=4, batch_size=64, learning_rate=5e-3, patience=4, sinkhorn_iter=10)
    fn = L.get_loss(name, sinkhorn_epsilon=params.sinkhorn_epsilon, sinkhorn_iter=10)
    _, _, hist = et.train_autoencoder(modules[:400], modules[400:500], params, fn, seed=0, label=name)
    assert hist["loss"][-1] < hist["loss"][0]


def test_saved_encoder_reloads_identically(modules, tmp_path):
    enc, dec = build_encoder(), build_decoder()
    et.save_encoder(enc, dec, tmp_path)
    back = et.load_encoder(tmp_path)
    x = et.encoder_inputs(modules, enc)
    np.testing.assert_array_equal(back.predict(x, verbose=0), enc.predict(x, verbose=0))
    np.testing.assert_array_equal(et.load_decoder(tmp_path / et.DECODER_FILE).predict(enc.predict(x, verbose=0), verbose=0),
                                  dec.predict(enc.predict(x, verbose=0), verbose=0))


def test_checkpoint_resume(modules, tmp_path):
    params = EncoderParams(epochs=2, batch_size=64)
    et.train_autoencoder(modules[:200], modules[200:250], params, L.mse, seed=0, out_dir=tmp_path)
    assert (tmp_path / et.CHECKPOINT_FILE).exists()
    more = params.model_copy(update={"epochs": 3})
    _, _, hist = et.train_autoencoder(modules[:200], modules[200:250], more, L.mse, seed=0, out_dir=tmp_path)
    assert hist["initial_epoch"] == 2 and len(hist["loss"]) == 1


def test_evaluation_bins(modules):
    recon = modules + 5.0
    ev, emd = evaluate_reconstruction(modules, recon)
    assert ev.overall.n == len(modules)
    assert sum(b.n for b in ev.by_occupancy) == len(modules)
    assert sum(b.n for b in ev.by_sum_mip) == len(modules)
    assert (emd > 0).all()
