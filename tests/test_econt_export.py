"""`econ-emd econt export`: the ECON-T configuration of an encoder trained in the ASIC's
arithmetic. Its register image survives the round trips, the emulator reads it back with
every register equal, and `econ-emd econt run` on it, fed link words made of modules,
sends packets whose every latent bit is the Keras model's; a one-LSB change of one weight
breaks that; bad input is a one-line error and nothing half-written is left."""
from __future__ import annotations

import errno

import numpy as np
import pytest

from econ_emd.geometry import calq_from_ae_slots
from econ_emd.cli import main
from econ_emd.econt import autoencoder as ae
from econ_emd.econt.export import autoencoder_config, config_yaml, round_trip_errors, top_bits_mask
from econ_emd.econt.formatter import ae_packet_bits, autoencoder_sent_bits, read_autoencoder_packet
from econ_emd.econt.link_budget import AE_LINK_COUNTS, latent_bits_for_links
from econ_emd.econt.links import RX_COLUMNS, read_tx
from econ_emd.econt.registers import AsicConfig, load_config


def _weights(seed: int = 0) -> ae.AeWeights:
    rng = np.random.default_rng(seed)
    return ae.AeWeights(rng.integers(-32, 32, (3, 3, 8)), rng.integers(-32, 32, 8), rng.integers(-10, 11, (128, 16)),
                        rng.integers(-32, 32, 16))


def _saved_encoder(folder, bits: int, weights: ae.AeWeights):
    from econ_emd.models.arch import ASIC_DECODER, AsicArch
    from econ_emd.models.asic_encoder import build_asic_encoder, build_dense_decoder, set_asic_weights
    from econ_emd.training.encoder_train import save_encoder

    enc = build_asic_encoder(AsicArch(bits, ASIC_DECODER))
    set_asic_weights(enc, weights)
    save_encoder(enc, build_dense_decoder(ASIC_DECODER), folder)
    return enc


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """link count -> (folder of a saved asic encoder trained for it, its Keras model)."""
    out = {}
    for n in (2, 5):
        folder = tmp_path_factory.mktemp(f"asic_{n}links")
        out[n] = folder, _saved_encoder(folder, latent_bits_for_links(n), _weights(n))
    return out


@pytest.mark.parametrize("n_links", AE_LINK_COUNTS)
def test_the_mask_keeps_the_top_bits_and_the_links_carry_them(n_links):
    """The ASIC's own packet rule gives the product's table of latent bits per link count:
    with the top-b mask every kept bit is sent at n links, and not at n - 1."""
    b = latent_bits_for_links(n_links)
    cfg = AsicConfig(algorithm=4, n_etx=n_links, ae_mask=top_bits_mask(b))
    lat, bit = autoencoder_sent_bits(cfg)
    assert len(lat) == 16 * b and set(bit) == set(range(9 - b, 9)) and set(lat) == set(range(16))
    assert ae_packet_bits(cfg) // 16 >= b and ae_packet_bits(cfg.with_links(n_links - 1)) < 16 * b
    with pytest.raises(ValueError, match="carry"):
        autoencoder_config(_weights(), n_links - 1, b)


def test_registers_round_trip_and_read_back_equal():
    """values -> words -> values -> weights -> words are identities, the written text reads
    back with every register equal; flipping one register bit moves exactly one weight."""
    from econ_emd.econt.registers import ae_register_values, ae_register_words

    w = _weights()
    cfg = autoencoder_config(w, 4, 7)
    text = config_yaml(cfg, "a comment\nover two lines")
    assert round_trip_errors(cfg, w, text) == []
    assert text.startswith("# a comment\n# over two lines\nCal:") and "ConfigAlgo:" in text
    back = load_config_text(text)
    assert back == cfg and back.erx_msb_first and back.n_etx == 4 and back.ae_mask == top_bits_mask(7)
    words = [list(block) for block in cfg.ae_weight_words]
    words[3][0] ^= 1 << 40
    moved = ae_register_values(tuple(map(tuple, words)))
    assert (moved != w.to_register_values()).sum() == 1
    assert ae_register_words(moved) != cfg.ae_weight_words


def load_config_text(text: str) -> AsicConfig:
    import yaml

    from econ_emd.econt.registers import parse_config

    return parse_config(yaml.safe_load(text))


def test_the_vectors_registers_through_the_writer():
    """The CMS autoencoder's register image (the shipped simulated module's init.yaml, the
    newer spelling) written by the writer reads back as the same weights, MUX and CAL."""
    from importlib import resources

    from econ_emd.econt import vectors

    with resources.as_file(resources.files(vectors) / vectors.CONFIG) as path:
        cms = load_config(path)
    w = ae.AeWeights.from_registers(cms.ae_weight_words)
    cfg = autoencoder_config(w, 5, 9, cms.mux, cms.cal, cms.high_density)
    back = load_config_text(config_yaml(cfg))
    assert back.ae_weight_words == cms.ae_weight_words and back.mux == cms.mux and back.cal == cms.cal


def _write_rx(path, rx: np.ndarray) -> None:
    lines = [",".join(RX_COLUMNS)] + [",".join(f"{int(w):08x}" for w in row) for row in rx]
    path.write_text("\n".join(lines) + "\n")


def _keras_bits(model, calq_slots: np.ndarray, cfg: AsicConfig, bits: int) -> np.ndarray:
    from econ_emd.models.asic_encoder import encoder_image, transmitted_integers

    z = transmitted_integers(model.predict(encoder_image(calq_from_ae_slots(calq_slots)), verbose=0), bits)
    lat, bit = autoencoder_sent_bits(cfg)
    return ((z[:, lat] >> (bit - (9 - bits))) & 1).astype(np.uint8)


@pytest.mark.parametrize("n_links,module", [(2, False), (5, True)])
def test_econt_run_on_the_export_sends_the_keras_latents(encoders, modules, tmp_path, n_links, module):
    """Export, then `econ-emd econt run` on input link words made of test modules (each cell
    on the input it enters the ASIC on; the module's calibration and density by default or
    from the shipped simulated module's init.yaml): every latent bit of every packet equals
    the Keras model's on the CALQ the ASIC's front end made of those words. Changing one
    register weight (a dense bias) by one LSB in the file breaks it."""
    from importlib import resources

    from econ_emd.econt import vectors
    from econ_emd.econt.emulator import front_end
    from econ_emd.econt_export import link_words

    folder, model = encoders[n_links]
    bits = latent_bits_for_links(n_links)
    out = tmp_path / "init.yaml"
    args = ["econt", "export", str(folder), "-o", str(out), "--check", "200", "-q"]
    with resources.as_file(resources.files(vectors) / vectors.CONFIG) as vector_config:
        if module:
            args += ["--module", str(vector_config)]
        assert main(args) == 0
    cfg = load_config(out)
    assert cfg.algorithm == 4 and cfg.n_etx == n_links and cfg.ae_mask == top_bits_mask(bits)
    assert cfg.high_density == module            # the vectors' module is high density
    assert ae.AeWeights.from_registers(cfg.ae_weight_words) == _weights(n_links)
    rx = link_words(np.rint(modules).astype(np.int64), cfg)
    _write_rx(tmp_path / "rx.csv", rx)
    assert main(["econt", "run", "-i", str(tmp_path / "rx.csv"), "--asic", str(out), "-o", str(tmp_path / "tx.csv")]) == 0
    _, sent = read_autoencoder_packet(read_tx(tmp_path / "tx.csv"), cfg)
    expected = _keras_bits(model, front_end(cfg, rx), cfg, bits)
    assert sent.shape == (len(modules), 16 * bits)
    np.testing.assert_array_equal(sent, expected)
    assert len(np.unique(expected, axis=0)) > 50          # packets that tell modules apart
    text = out.read_text()
    w = _weights(n_links)
    bias = np.array(w.dense_bias)
    busiest = int(np.argmax(ae.encode(front_end(cfg, rx), w).mean(axis=0)))
    bias[busiest] += 1 if bias[busiest] < 31 else -1         # moves that latent by 8 of its 512 steps
    moved = autoencoder_config(ae.AeWeights(w.conv_kernel, w.conv_bias, w.dense_kernel, bias), n_links, bits,
                               cfg.mux, cfg.cal, cfg.high_density)
    (tmp_path / "moved.yaml").write_text(config_yaml(moved))
    assert text != config_yaml(moved)
    assert main(["econt", "run", "-i", str(tmp_path / "rx.csv"), "--asic", str(tmp_path / "moved.yaml"),
                 "-o", str(tmp_path / "tx_moved.csv")]) == 0
    _, sent_moved = read_autoencoder_packet(read_tx(tmp_path / "tx_moved.csv"), cfg)
    assert (sent_moved != expected).any(axis=1).sum() > 0


def test_a_configuration_that_fails_its_check_is_not_written(encoders, tmp_path, monkeypatch, capsys):
    """The export's own check on link words is live: registers one LSB off the model's
    (as a wrong register order or rounding would make) fail it, exit 1, no file."""
    import econ_emd.econt.export as export

    folder, _ = encoders[5]
    real = export.ae_register_words

    def one_lsb_off(values):
        v = np.array(values)
        v[100] = v[100] + 1 if v[100] < 31 else v[100] - 1
        return real(v)

    monkeypatch.setattr(export, "ae_register_words", one_lsb_off)
    monkeypatch.setattr(export, "round_trip_errors", lambda *a: [])
    out = tmp_path / "init.yaml"
    assert main(["econt", "export", str(folder), "-o", str(out), "--check", "100", "-q"]) == 1
    err = capsys.readouterr().err
    assert "differ from the Keras model's latents" in err and not out.exists() and not list(tmp_path.iterdir())


def test_bad_input_is_one_line(encoders, tmp_path, capsys, monkeypatch):
    from importlib import resources

    from econ_emd.econt import vectors
    from econ_emd.models.econt import build_decoder, build_encoder
    from econ_emd.training.encoder_train import save_encoder

    folder, _ = encoders[5]
    qkeras = tmp_path / "qkeras"
    save_encoder(build_encoder(), build_decoder(), qkeras)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    out = str(tmp_path / "o.yaml")
    cases = [
        ([str(tmp_path / "missing"), "-o", out], "no encoder model file"),
        ([str(qkeras), "-o", out], "not an encoder in the ASIC's arithmetic"),
        ([str(folder), "-o", out, "--links", "7"], "--links 7: the autoencoder runs at 2-5 output links"),
        ([str(folder), "-o", out, "--links", "2"], "trained to send 9-bit latents, which the ASIC sends at 5 links"),
        ([str(folder), "-o", str(tmp_path)], "is a directory"),
        ([str(folder), "-o", str(a_file / "init.yaml")], "is not a folder"),
        ([str(folder), "-o", out, "--module", str(tmp_path / "none.yaml")], "no such configuration file"),
        ([str(folder), "-o", out, "--check", "-1"], "--check -1"),
    ]
    for args, message in cases:
        assert main(["econt", "export", *args, "-q"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o.yaml").exists()

    import econ_emd.base.artifacts as artifacts

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", out)

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", refuse)
    assert main(["econt", "export", str(folder), "-o", out, "--check", "0", "-q"]) == 3
    err = capsys.readouterr().err
    assert "Read-only file system" in err and len(err.strip().splitlines()) == 1


def test_the_mux_gives_each_slot_its_cells_input_and_calibration_follows_the_input():
    """The exported MUX puts on AE slot s the input the cell of slot s enters on, so the
    emulator's front end of link words holds each cell where the autoencoder's image wants
    it; a module's calibration register follows its input through both MUXes."""
    from dataclasses import replace

    from econ_emd.econt.emulator import front_end
    from econ_emd.econt.export import calibration_of, placement_mux
    from econ_emd.econt_export import link_words
    from econ_emd.geometry import ae_slot_of_calq, econt_input_of_calq

    rng = np.random.default_rng(4)
    calq = rng.integers(0, 2000, (30, 48))
    cfg = autoencoder_config(_weights(), 5, 9)
    slots = front_end(cfg, link_words(calq, cfg))
    from econ_emd.econt.codes import E4M3, decode, encode

    np.testing.assert_array_equal(calq_from_ae_slots(slots), decode(encode(calq, E4M3, 1), E4M3, 1))
    mux = placement_mux()
    assert all(mux[ae_slot_of_calq()[c]] == econt_input_of_calq()[c] for c in range(48))
    other = AsicConfig(mux=tuple(int(m) for m in rng.permutation(48)), cal=tuple(int(c) for c in rng.integers(1, 4095, 48)))
    cal = calibration_of(mux, other)
    for slot in range(48):                                    # the input's own register, moved to its new TC
        assert cal[slot] == other.cal[other.mux.index(mux[slot])]
    assert calibration_of(mux, None) == (2048,) * 48
    with pytest.raises(ValueError, match="more than once"):
        calibration_of(mux, replace(other, mux=(0,) * 48))
