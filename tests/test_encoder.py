import numpy as np
import pytest
import tensorflow as tf

from econ_emd.econt.link_budget import LinkBudgetError, check_link_budget, latent_bits_for_links
from econ_emd.models.econt import EncoderArch, build_decoder, build_encoder
from econ_emd.training import encoder_train as et
from econ_emd.training import losses as L
from econ_emd.training.evaluation import evaluate_reconstruction
from econ_emd.training.params import EncoderParams


def test_reference_parameter_counts():
    assert build_encoder().count_params() == 2144
    assert build_encoder(EncoderArch(quantized=False)).count_params() == 2144
    assert build_decoder().count_params() == 2833
    assert all(l.name != "input" for l in build_encoder().layers)


@pytest.mark.parametrize("links, bits", [(2, 3), (3, 5), (4, 7), (5, 9)])
def test_latent_width_per_link_count_fits(links, bits):
    """The ECON-T table (3/5/7/9 bits at 2/3/4/5 links) follows from the packet's budget."""
    assert latent_bits_for_links(links) == bits
    budget = check_link_budget(links, bits)
    assert budget["bits_needed"] <= budget["bits_available"] == 32 * links
    assert EncoderParams(links=links).bits() == bits
    with pytest.raises(LinkBudgetError):            # one more bit per latent does not fit
        check_link_budget(links, bits + 1)


def test_link_budget_errors():
    with pytest.raises(LinkBudgetError, match="2 output links carry 64"):
        check_link_budget(2, 5)
    with pytest.raises(ValueError, match="output links carry"):
        EncoderParams(links=3, latent_bits=9)
    with pytest.raises(LinkBudgetError, match="no latent width"):
        latent_bits_for_links(6)


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


#: the published telescope groups and weights (Ecoder telescope.py, SCmask_48_36), as data
PUBLISHED_TELESCOPE = [
    ((0, 1, 4, 5), 1.5), ((2, 3, 6, 7), 1 + 1 / 3), ((8, 9, 12, 13), 2.25), ((10, 11, 14, 15), 1.5),
    ((16, 17, 20, 21), 1.5), ((18, 19, 22, 23), 1 + 1 / 3), ((24, 25, 28, 29), 2.25), ((26, 27, 30, 31), 1.5),
    ((32, 33, 36, 37), 1.5), ((34, 35, 38, 39), 1 + 1 / 3), ((40, 41, 44, 45), 2.25), ((42, 43, 46, 47), 1.5),
    ((4, 5, 8, 9), 1.5), ((6, 7, 10, 11), 1.0), ((20, 21, 24, 25), 1.5), ((22, 23, 26, 27), 1.0),
    ((36, 37, 40, 41), 1.5), ((38, 39, 42, 43), 1.0), ((1, 2, 5, 6), 1.0), ((9, 10, 13, 14), 1.5),
    ((17, 18, 21, 22), 1.0), ((25, 26, 29, 30), 1.5), ((33, 34, 37, 38), 1.0), ((41, 42, 45, 46), 1.5),
    ((5, 6, 9, 10), 1.0), ((21, 22, 25, 26), 1.0), ((37, 38, 41, 42), 1.0),
    ((0, 1, 27, 31), 1.5), ((1, 2, 23, 27), 1.0), ((2, 3, 19, 23), 1 + 2 / 3), ((3, 7, 34, 35), 1 + 2 / 3),
    ((7, 11, 33, 34), 1.0), ((11, 15, 32, 33), 1.5), ((16, 17, 47, 43), 1.5), ((17, 18, 43, 39), 1.0),
    ((18, 19, 39, 35), 1 + 2 / 3),
]


def _images(*modules):
    from econ_emd.geometry import calq_to_8x8

    return [tf.constant(calq_to_8x8(np.asarray(m, dtype=np.float64))[..., None], tf.float32) for m in modules]


def _hand_wmse(a, b):
    return sum((x - y) ** 2 * max(x, y) for x, y in zip(a, b)) / len(a)


def _hand_telescope(t, p):
    """The published definition written out: 4 wMSE(TC) + 2 weighted wMSE(2x2) + wMSE(rhombi)."""
    l_tc = _hand_wmse(t, p)
    l_2x2 = sum((sum(t[i] for i in g) - sum(p[i] for i in g)) ** 2 * max(sum(t[i] for i in g), sum(p[i] for i in g))
                * 0.25 * w for g, w in PUBLISHED_TELESCOPE) / len(PUBLISHED_TELESCOPE)
    rt = [sum(t[16 * k:16 * k + 16]) for k in range(3)]
    rp = [sum(p[16 * k:16 * k + 16]) for k in range(3)]
    return 4 * l_tc + 2 * l_2x2 + _hand_wmse(rt, rp)


def test_telescope_groups_and_weights_are_the_published_ones():
    idx, w = L.telescope_groups()
    ours = {tuple(sorted(g)): x for g, x in zip(idx.tolist(), w)}
    published = {tuple(sorted(g)): 0.25 * x for g, x in PUBLISHED_TELESCOPE}
    assert ours.keys() == published.keys()
    for g, x in published.items():
        assert ours[g] == pytest.approx(x), g


def test_baselines_against_hand_computation():
    """Non-unit charges spread over all three rhombi (crossing the seams), against the
    definitions written out by hand: a wrong weighting, a wMSE/MSE swap or a wrong 4x4
    term changes the value."""
    rng = np.random.default_rng(5)
    t = rng.uniform(0, 0.3, 48) * (rng.random(48) < 0.6)
    p = rng.uniform(0, 0.3, 48) * (rng.random(48) < 0.6)
    t[[3, 19, 35]] = [0.7, 0.05, 0.4]            # the centre TCs, where the rhombi meet
    ti, pi = _images(t[None], p[None])
    np.testing.assert_allclose(L.mse(ti, pi).numpy()[0], np.mean((t - p) ** 2), rtol=1e-5)
    np.testing.assert_allclose(L.wmse(ti, pi).numpy()[0], _hand_wmse(t, p), rtol=1e-5)
    np.testing.assert_allclose(L.telescope(ti, pi).numpy()[0], _hand_telescope(t, p), rtol=1e-5)
    # charge moved across the seam between rhombi 0 and 1 (TC 0 -> TC 27): only the
    # telescope's 2x2 and 4x4 terms see where it went
    a = np.zeros(48); a[0] = 2.0
    b = np.zeros(48); b[27] = 2.0
    c = np.zeros(48); c[5] = 2.0                 # same distance in TCs, same rhombus
    ai, bi, ci = _images(a[None], b[None], c[None])
    assert L.mse(ai, bi).numpy()[0] == pytest.approx(L.mse(ai, ci).numpy()[0])
    np.testing.assert_allclose(L.telescope(ai, bi).numpy()[0], _hand_telescope(a, b), rtol=1e-5)
    np.testing.assert_allclose(L.telescope(ai, ci).numpy()[0], _hand_telescope(a, c), rtol=1e-5)
    assert L.telescope(ai, bi).numpy()[0] > L.telescope(ai, ci).numpy()[0]


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
def test_training_learns_each_module_not_the_average(modules, name, monkeypatch):
    """Trained with each loss, the autoencoder reconstructs held-out modules clearly better,
    by that loss, than the same training on targets shuffled against their inputs (a
    negative control that can learn only the average module). A training loop that pairs
    inputs with the wrong targets, drops the encoder's information or never updates the
    weights ends level with the control."""
    import tensorflow as tf

    params = EncoderParams(kind="qkeras", epochs=8, batch_size=32, learning_rate=2e-2, patience=8, sinkhorn_iter=10)
    fn = L.get_loss(name, params=params)
    held = modules[500:]
    truth = tf.constant(et.targets(held).astype(np.float32))

    def held_out_loss(enc, dec) -> float:
        recon = dec.predict(enc.predict(et.encoder_inputs(held), verbose=0), verbose=0)
        return float(tf.reduce_mean(fn(truth, tf.constant(recon))))

    t = et.train_autoencoder(modules[:400], modules[400:500], params, fn, seed=0, label=name)
    enc, dec, hist = t.encoder, t.decoder, t.history
    assert hist["loss"][-1] < hist["loss"][0]
    learned = held_out_loss(enc, dec)
    real_targets = et.targets
    monkeypatch.setattr(et, "targets", lambda c: real_targets(c)[np.random.default_rng(1).permutation(len(c))])
    t = et.train_autoencoder(modules[:400], modules[400:500], params, fn, seed=0, label=name)
    enc, dec = t.encoder, t.decoder
    control = held_out_loss(enc, dec)
    assert learned < 0.8 * control, (learned, control)


def test_saved_encoder_reloads_identically(modules, tmp_path):
    enc, dec = build_encoder(), build_decoder()
    et.save_encoder(enc, dec, tmp_path)
    back = et.load_encoder(tmp_path)
    x = et.encoder_inputs(modules, enc)
    np.testing.assert_array_equal(back.predict(x, verbose=0), enc.predict(x, verbose=0))
    np.testing.assert_array_equal(et.load_decoder(tmp_path / et.DECODER_FILE).predict(enc.predict(x, verbose=0), verbose=0),
                                  dec.predict(enc.predict(x, verbose=0), verbose=0))


def test_checkpoint_resume(modules, tmp_path):
    params = EncoderParams(kind="qkeras", epochs=2, batch_size=64)
    et.train_autoencoder(modules[:200], modules[200:250], params, L.mse, seed=0, out_dir=tmp_path)
    assert (tmp_path / et.CHECKPOINT_FILE).exists()
    more = params.model_copy(update={"epochs": 3})
    hist = et.train_autoencoder(modules[:200], modules[200:250], more, L.mse, seed=0, out_dir=tmp_path).history
    assert hist["initial_epoch"] == 2 and len(hist["loss"]) == 1


def test_evaluation_bins(modules):
    recon = modules + 5.0
    ev, emd = evaluate_reconstruction(modules, recon)
    assert ev.overall.n == len(modules)
    assert sum(b.n for b in ev.by_occupancy) == len(modules)
    assert sum(b.n for b in ev.by_sum_mip) == len(modules)
    assert (emd > 0).all()
