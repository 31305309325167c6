"""The encoder trained in the ECON-T ASIC's arithmetic (encoder.kind: asic): its forward
pass is the block's (econt.autoencoder, proven on the CMS vectors) to the bit, its
gradients pass the cuts straight through, its training ends in a quantized dense decoder,
and its settings are validated."""
from __future__ import annotations

import numpy as np
import pytest

from econ_emd.geometry import ae_slots_from_calq
from econ_emd.econt import autoencoder as ae
from econ_emd.models.arch import ASIC_DECODER, AsicArch


def _weights(seed: int = 0) -> ae.AeWeights:
    """Register values whose latents on the test modules spread over the whole 9-bit range,
    zero and saturated included (small dense weights: a sum of 128 products)."""
    rng = np.random.default_rng(seed)
    return ae.AeWeights(rng.integers(-32, 32, (3, 3, 8)), rng.integers(-32, 32, 8), rng.integers(-10, 11, (128, 16)),
                        rng.integers(-32, 32, 16))


@pytest.fixture(scope="module")
def calq(modules) -> np.ndarray:
    """Integer CALQ: the synthetic modules and the corner cases of the converter (one TC,
    a power-of-two sum, the largest 22-bit charges)."""
    extra = np.zeros((4, 48), dtype=np.int64)
    extra[0, 7] = 1
    extra[1, :4] = 256
    extra[2, :] = (1 << 22) - 1
    extra[3, 40:] = [3, 1, 4, 1, 5, 9, 2, 6]
    return np.concatenate([np.rint(modules).astype(np.int64), extra])


def _encoder(bits: int, weights: ae.AeWeights):
    from econ_emd.models.asic_encoder import build_asic_encoder, set_asic_weights

    enc = build_asic_encoder(AsicArch(bits, ASIC_DECODER))
    set_asic_weights(enc, weights)
    return enc


@pytest.mark.parametrize("bits", [3, 5, 7, 9])
def test_transmitted_latents_are_the_asics_bit_for_bit(calq, bits):
    """The Keras model's transmitted latents equal the block's latents (econt.autoencoder)
    cut to their top `bits` bits, on every module; the latents spread over their range."""
    from econ_emd.models.asic_encoder import asic_weights, encoder_image, transmitted_integers

    w = _weights()
    enc = _encoder(bits, w)
    assert asic_weights(enc) == w
    got = transmitted_integers(enc.predict(encoder_image(calq), verbose=0), bits)
    block = ae.encode(ae_slots_from_calq(calq), w)
    np.testing.assert_array_equal(got, block >> (ae.LATENT_BITS - bits))
    assert (block == 0).any() and (block == 511).any() and len(np.unique(block)) > 200


def test_one_lsb_of_one_weight_changes_the_latents(calq):
    """Negative controls: the emulator sees a one-LSB change of one dense weight (so the
    equality above is not of insensitive outputs), and a QKeras model of the same weights
    without the block's per-product cuts differs from the block."""
    from econ_emd.models.arch import ECONT_ASIC_ENCODER
    from econ_emd.models.asic_encoder import encoder_image
    from econ_emd.models.econt import build_encoder

    w = _weights()
    dense = np.array(w.dense_kernel)
    dense[5, 3] += 1
    moved = ae.AeWeights(w.conv_kernel, w.conv_bias, dense, w.dense_bias)
    slots = ae_slots_from_calq(calq)
    before, after = ae.encode(slots, w), ae.encode(slots, moved)
    assert (before != after).any(axis=1).sum() > 10
    assert np.array_equal(np.delete(before, 3, axis=1), np.delete(after, 3, axis=1))
    plain = build_encoder(ECONT_ASIC_ENCODER)
    plain.set_weights(w.keras())
    uncut = np.rint(plain.predict(encoder_image(calq), verbose=0) / 2.0 ** -ae.DENSE_FRACTION).astype(np.int64)
    assert (uncut != before).mean() > 0.05


def test_gradients_pass_the_cuts_straight_through(calq):
    """The dense kernel's gradient of sum(latents) is that of the float product of the
    quantized weights, masked where ReLU or the saturation cut: sum_n h[n, i] over the
    modules whose latent j the block neither zeroes nor saturates (its sum in 1..511)."""
    import tensorflow as tf

    from econ_emd.models.asic_encoder import encoder_image

    w = _weights()
    enc = _encoder(9, w)
    q = calq[:300]
    x = tf.constant(encoder_image(q))
    with tf.GradientTape(persistent=True) as tape:
        total = tf.reduce_sum(enc(x))
    dense_grad = tape.gradient(total, enc.get_layer("dense").kernel).numpy()
    conv_grad = tape.gradient(total, enc.get_layer("conv2d").kernel).numpy()
    h = ae.hidden(ae.converter(ae_slots_from_calq(q)), w)
    acc = ((h[:, :, None] * w.dense_kernel) >> 4).sum(axis=1) + (w.dense_bias << 3)
    passed = ((acc > 0) & (acc <= 511)).astype(np.float64)
    np.testing.assert_allclose(dense_grad, (h * 2.0 ** -ae.CONV_FRACTION).T @ passed, rtol=1e-5, atol=1e-3)
    assert 0 < passed.mean() < 1
    assert np.isfinite(conv_grad).all() and np.abs(conv_grad).sum() > 0


def _asic_run(modules, out, params, seed, label="t"):
    """train_and_evaluate of an asic request on the synthetic modules (mse: no EMD-CNN)."""
    from econ_emd.emd.exact import EmdRunner
    from econ_emd.training import encoder_run as er

    data = {"train": modules[:300], "val": modules[300:400], "test": modules[400:]}
    request = er.TrainRequest(params=params, loss="mse", seed=seed)
    return request, er.train_and_evaluate(request, data=data, out=out, frozen=None,
                                          runner=EmdRunner(n_jobs=1, progress=False), label=label)


def test_training_ends_in_a_quantized_dense_decoder(modules, tmp_path):
    """A short training: the encoder keeps the block's arithmetic (its registers, reloaded
    from the saved file, give the same latents as the model), the decoder is dense only with
    every output on its quantizer's grid, reconstructions come out in CALQ order, and the
    history records the float and quantized decoders' validation losses. The float twin it
    started from is a finished training of its own (its float start folder)."""
    import tensorflow as tf

    from econ_emd.models.asic_encoder import asic_weights, encoder_image, takes_module_sum, transmitted_integers
    from econ_emd.training import encoder_run as er
    from econ_emd.training import encoder_train as et
    from econ_emd.training.params import EncoderParams

    params = EncoderParams(kind="asic", links=3, epochs=2, batch_size=64, learning_rate=5e-3,
                           asic_decoder_epochs=1, asic_decoder_hidden=[32])
    request, run = _asic_run(modules, tmp_path, params, seed=0)
    enc, dec, hist = et.load_encoder(tmp_path), et.load_decoder(tmp_path / et.DECODER_FILE), run.history
    assert takes_module_sum(dec)
    assert not any(isinstance(layer, tf.keras.layers.Conv2DTranspose) for layer in dec.layers)
    assert {"float_val_loss", "quantized_val_loss_before", "quantized_val_loss"} <= set(hist["decoder"])
    assert len(hist["float_start"]["val_loss"]) == 2                # the float twin trained first (asic_start float)
    twin = er.finished_run(tmp_path / et.FLOAT_START_DIR, request.float_twin())
    assert twin is not None and not twin.quantized and twin.history["val_loss"] == hist["float_start"]["val_loss"]
    z, recon = et.reconstruct(enc, dec, modules[400:])
    assert recon.shape == (200, 48)
    lsb = 2.0 ** -params.asic_decoder_output_bits
    np.testing.assert_array_equal(np.rint(recon / lsb) * lsb, recon)
    q = np.rint(modules[400:]).astype(np.int64)
    block = ae.encode(ae_slots_from_calq(q), asic_weights(enc)) >> (ae.LATENT_BITS - 5)
    np.testing.assert_array_equal(transmitted_integers(enc.predict(encoder_image(q), verbose=0), 5), block)
    np.testing.assert_array_equal(transmitted_integers(z, 5), block)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("start", ["float", "scratch"])
def test_a_run_resumed_after_the_encoder_makes_the_same_decoder(modules, tmp_path, monkeypatch, start):
    """Killed after the encoder's last epoch (its checkpoint written), a rerun reuses the
    finished float start, restores the encoder and trains the quantized decoder again: the
    same encoder and decoder as an uninterrupted run, to the bit, and the float start's
    history kept. Finished, no checkpoint is left; the float start stays as a finished run."""
    from econ_emd.training import encoder_train as et
    from econ_emd.training.params import EncoderParams

    params = EncoderParams(kind="asic", links=2, epochs=1, batch_size=64, learning_rate=5e-3,
                           asic_decoder_epochs=2, asic_decoder_hidden=[16], asic_start=start)
    _, whole = _asic_run(modules, tmp_path / "whole", params, seed=3)

    def pause(label):
        if label == "t:1":
            raise _Killed
    monkeypatch.setattr(et, "pause_for_test", pause)
    with pytest.raises(_Killed):
        _asic_run(modules, tmp_path / "killed", params, seed=3)
    assert (tmp_path / "killed" / et.CHECKPOINT_FILE).exists()
    _, resumed = _asic_run(modules, tmp_path / "killed", params, seed=3)
    assert resumed.history["initial_epoch"] == 1 and resumed.history["loss"] == []
    assert resumed.history["decoder"] == whole.history["decoder"]
    assert ("float_start" in resumed.history) == (start == "float")
    if start == "float":
        assert resumed.history["float_start"]["val_loss"] == whole.history["float_start"]["val_loss"]
    for load in (et.load_encoder, lambda d: et.load_decoder(d / et.DECODER_FILE)):
        for a, b in zip(load(tmp_path / "whole").get_weights(), load(tmp_path / "killed").get_weights()):
            np.testing.assert_array_equal(a, b)
    for folder in (tmp_path / "whole", tmp_path / "killed"):
        assert not (folder / et.CHECKPOINT_FILE).exists()
        assert (folder / et.FLOAT_START_DIR / et.ENCODER_FILE).exists() == (start == "float")
        assert not (folder / et.FLOAT_START_DIR / et.CHECKPOINT_FILE).exists()


def test_one_float_twin_serves_every_link_count_and_the_float_row(modules, tmp_path, monkeypatch):
    """The float twin does not read the link count: the asic encoder at 3 links, given the
    2-link training's folder, copies its float start instead of training it again, and the
    unquantized request (the loss comparison's float row) is that float start; a twin of
    other settings (another learning rate) is trained anew."""
    from econ_emd.training import encoder_run as er
    from econ_emd.training import encoder_train as et
    from econ_emd.training.params import EncoderParams

    trained = []
    real = et.train_autoencoder

    def recording(train, val, params, *a, **kw):
        trained.append((params.links, params.quantized))
        return real(train, val, params, *a, **kw)
    monkeypatch.setattr(et, "train_autoencoder", recording)
    params = EncoderParams(kind="asic", links=2, epochs=1, batch_size=64, asic_decoder_epochs=0,
                           asic_decoder_hidden=[16])
    _asic_run(modules, tmp_path / "two", params, seed=5)
    assert trained == [(2, False), (2, True)]
    from econ_emd.emd.exact import EmdRunner

    data = {"train": modules[:300], "val": modules[300:400], "test": modules[400:]}

    def run(p, out):
        request = er.TrainRequest(params=p, loss="mse", seed=5)
        return er.train_and_evaluate(request, data=data, out=tmp_path / out, frozen=None, label=out,
                                     runner=EmdRunner(n_jobs=1, progress=False), reuse_from=[tmp_path / "two"])
    three = run(params.model_copy(update={"links": 3}), "three")
    assert trained[2:] == [(3, True)]
    assert three.history["float_start"]["val_loss"] == er.finished_run(
        tmp_path / "two" / et.FLOAT_START_DIR, er.TrainRequest(params=params, loss="mse", seed=5).float_twin()
    ).history["val_loss"]
    float_row = run(params.model_copy(update={"quantized": False, "links": 4}), "float_row")
    assert trained[3:] == [] and not float_row.quantized
    run(params.model_copy(update={"links": 3, "learning_rate": 0.002}), "other_rate")
    assert trained[3:] == [(2, False), (3, True)]              # the twin at its settings: links reset


def test_folding_keeps_the_float_function_and_fills_the_registers(calq):
    """The float twin folded into the registers' ranges computes the same reconstruction
    (ReLU's homogeneity: only scales moved between layers); each filter's largest weight
    sits at the register's top, no dense weight leaves the register, and the latents fill
    their range without saturating more than the quantile allows. A latent dead on every
    module is revived: alive on about half of them, its decoder row zero."""
    import dataclasses

    import tensorflow as tf

    from econ_emd.models.arch import EncoderArch
    from econ_emd.models.asic_encoder import (LATENT_MAX, LATENT_FILL_QUANTILE, REGISTER_MAX, build_dense_decoder,
                                              decoder_inputs, encoder_image, fold_into_registers, sum_feature)
    from econ_emd.models.econt import build_encoder

    tf.keras.utils.set_random_seed(1)
    enc = build_encoder(EncoderArch(quantized=False))
    conv, dense = enc.get_layer("conv2d"), enc.get_layer("dense")
    k, b = conv.get_weights()
    conv.set_weights([k * np.linspace(0.05, 3, 8), np.full_like(b, 0.01)])   # filters far from the register's range
    w, d = dense.get_weights()
    d = np.full_like(d, 0.02)
    w, d[3] = w * 0.2, -100.0                                               # latent 3 dead on every module
    dense.set_weights([w, d])
    float_decoder = dataclasses.replace(ASIC_DECODER, quantized=False)
    dec = build_dense_decoder(float_decoder)
    images, sums = encoder_image(calq), sum_feature(calq)
    folded = fold_into_registers(enc, dec, images)

    enc2, dec2 = build_encoder(EncoderArch(quantized=False)), build_dense_decoder(float_decoder)
    enc2.set_weights(folded.encoder_weights)
    dec2.set_weights(folded.decoder_weights)
    z, z2 = enc.predict(images, verbose=0), enc2.predict(images, verbose=0)
    assert folded.revived.tolist() == [i == 3 for i in range(16)]
    kept = ~folded.revived
    np.testing.assert_allclose(z2[:, kept], (z * folded.latent_scales)[:, kept], rtol=1e-4, atol=1e-6)
    assert 0.2 < (z2[:, 3] > 0).mean() < 0.8                                # revived: alive on about half
    assert not folded.decoder_weights[0][3].any()                            # and unread by the decoder, so:
    np.testing.assert_allclose(dec2.predict(decoder_inputs(z2, sums), verbose=0),
                               dec.predict(decoder_inputs(z, sums), verbose=0), rtol=1e-4, atol=1e-6)
    k2, b2, w2, d2 = folded.encoder_weights
    largest = np.maximum(np.abs(k2).reshape(-1, 8).max(0), np.abs(b2))
    np.testing.assert_allclose(largest, REGISTER_MAX, rtol=1e-6)
    assert np.abs(w2).max() <= REGISTER_MAX * (1 + 1e-6) and np.abs(d2).max() <= REGISTER_MAX * (1 + 1e-6)
    live = z.max(0) > 0
    assert (live == kept).all()
    assert (np.percentile(z2, LATENT_FILL_QUANTILE, axis=0)[live] <= LATENT_MAX * (1 + 1e-5)).all()
    # each latent is at one of its two limits: the register or the saturation
    at_limit = np.isclose(np.maximum(np.abs(w2).max(0), np.abs(d2)), REGISTER_MAX, rtol=1e-5) | np.isclose(
        np.percentile(z2, LATENT_FILL_QUANTILE, axis=0), LATENT_MAX, rtol=1e-5)
    assert at_limit[live].all()


def test_asic_settings_are_validated():
    from pydantic import ValidationError

    from econ_emd.training.params import EncoderParams, ScanParams

    assert EncoderParams(kind="asic", links=2).asic_arch().latent_bits == 3
    for bad, match in [({"weight_bits": 6}, "weight_bits: the asic encoder computes with the ASIC's widths"),
                       ({"latent_bits": 4, "links": 5}, "latent_bits 4: the asic encoder sends the 9 bits"),
                       ({"asic_decoder_weight_integer": 8, "asic_decoder_weight_bits": 8}, "one bit is the sign"),
                       ({"asic_decoder_hidden": []}, "asic_decoder_hidden")]:
        with pytest.raises(ValidationError, match=match):
            EncoderParams(kind="asic", **bad)
    EncoderParams(kind="qkeras", weight_bits=6)         # the width keys stay the qkeras encoder's
    EncoderParams(kind="asic", weight_bits=5)           # a width key at its default (a written-out config) is fine
    with pytest.raises(ValidationError, match="learning_rates: none for kind asic"):
        ScanParams(kinds=["qkeras", "asic"], learning_rates={"qkeras": 0.02})


def test_the_quantizers_are_the_asic_encoders():
    """The asic encoder's weight and input quantizers are models.econt's for
    ECONT_ASIC_ENCODER (the architecture the firmware path converts)."""
    from econ_emd.models.arch import ECONT_ASIC_ENCODER
    from econ_emd.models.asic_encoder import _input_quantizer, _weight_quantizer
    from econ_emd.models.econt import quantizers

    q = quantizers(ECONT_ASIC_ENCODER)
    assert q["weight"].get_config() == _weight_quantizer().get_config()
    assert q["input"].get_config() == _input_quantizer().get_config()
    grid = np.arange(-40, 40) / 32
    np.testing.assert_array_equal(np.asarray(_weight_quantizer()(grid)), np.clip(grid, -1, 31 / 32))


def test_decoder_folding_keeps_the_pattern_and_fits_the_quantizers(calq):
    """A float decoder grown past the quantizers' ranges (weights up to 5, activations far
    above 2), folded: the same pattern up to one factor for all outputs, every weight
    inside the weight quantizer's range, hidden activations and each module's largest
    output inside theirs (but for the quantile's share), and the quantized decoder of the
    folded weights far closer to the float one than that of the weights as they were."""
    import dataclasses

    import tensorflow as tf

    from econ_emd.models.asic_encoder import (DECODER_FILL_QUANTILE, build_dense_decoder, decoder_inputs,
                                              fold_decoder_into_ranges, sum_feature)

    tf.keras.utils.set_random_seed(2)
    arch = dataclasses.replace(ASIC_DECODER, hidden=(32, 16))
    dec = build_dense_decoder(dataclasses.replace(arch, quantized=False))
    dec.set_weights([w * 5.0 for w in dec.get_weights()])
    rng = np.random.default_rng(0)
    d_in = decoder_inputs(rng.integers(0, 8, (len(calq), 16)) / 4.0, sum_feature(calq))
    folded = fold_decoder_into_ranges(dec, d_in, arch)
    twin = build_dense_decoder(dataclasses.replace(arch, quantized=False))
    twin.set_weights(folded)
    ref, got = dec.predict(d_in, verbose=0), twin.predict(d_in, verbose=0)
    g = got.sum() / ref.sum()
    np.testing.assert_allclose(got, ref * g, rtol=1e-4, atol=1e-6)
    w_max = 1.0 - 2.0 ** -(arch.weight_bits - 1)
    assert all(np.abs(w).max() <= w_max * (1 + 1e-6) for w in folded)
    h = d_in
    for w, b in zip(folded[:-2:2], folded[1:-2:2]):
        h = np.maximum(h @ w + b, 0)
        assert (np.percentile(h, DECODER_FILL_QUANTILE, axis=0) <= 2.0 * (1 + 1e-6)).all()
    assert np.percentile(got.max(1), DECODER_FILL_QUANTILE) <= 1.0

    def quantized_error(weights) -> float:
        q = build_dense_decoder(arch)
        q.set_weights(weights)
        out = q.predict(d_in, verbose=0).astype(np.float64)
        return float(np.abs(out / out.sum(1, keepdims=True).clip(1e-9) - ref / ref.sum(1, keepdims=True)).mean())

    assert quantized_error(folded) < 0.5 * quantized_error(dec.get_weights())
