"""The ECON-T emulator: float codes, registers, algorithms and packets on hand-built
modules, and `econ-emd econt verify|run` on a subset of the CMS golden vectors."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from econ_emd.base.errors import ConfigError, DataError
from econ_emd.cli import main
from econ_emd.econt import algorithms as alg
from econ_emd.econt import formatter as fmt
from econ_emd.econt.codes import E4M3, E5M3, E5M4, decode, encode
from econ_emd.econt.emulator import emulate, front_end
from econ_emd.econt.links import (bx_counter, pack_tc_codes, read_rx, read_tx, unpack_tc_codes)
from econ_emd.econt.registers import AsicConfig, load_config, parse_config

VECTORS = Path(__file__).parent / "fixtures" / "econt_vectors"
AE_INIT = Path(__file__).parent / "fixtures" / "econt_vectors" / "AE" / "init.yaml"


# ---------------------------------------------------------------- float codes

@pytest.mark.parametrize("code", [E4M3, E5M3, E5M4])
@pytest.mark.parametrize("drop", [0, 1, 3])
def test_every_code_round_trips(code, drop):
    codes = np.arange(1 << code.width)
    assert (encode(decode(codes, code, drop), code, drop) == codes).all()


def test_codes_at_exponent_boundaries_and_saturation():
    # 4E3M, nothing dropped: exponent 0 holds 0..7 as they are
    assert encode([0, 7], E4M3).tolist() == [0, 7]
    # 8 = 1000b: exponent 1, mantissa 000; 15 = 1111b: exponent 1, mantissa 111
    assert encode([8, 15], E4M3).tolist() == [0b0001000, 0b0001111]
    # 16 = 10000b: exponent 2, mantissa 000, and 17 truncates to it; 18, 19 -> mantissa 001
    assert encode([16, 17, 18, 19], E4M3).tolist() == [0b0010000] * 2 + [0b0010001] * 2
    # largest exponent 15: bit length 18; 2**18 no longer fits and saturates to all ones
    assert encode([2**17, 2**18 - 1, 2**18, 10**9], E4M3).tolist() == [0b1111000, 127, 127, 127]
    # with 3 LSBs dropped, exponent 0 reaches 63 (63 >> 3 = 7)
    assert encode([63, 64], E4M3, 3).tolist() == [7, 0b0001000]
    # 5E3M and 5E4M: 31 exponents; saturation beyond bit length 34 and 35
    assert encode([2**34 - 1, 2**34], E5M3).tolist() == [255, 255]
    assert encode([2**33], E5M3).tolist() == [0b11111000]
    assert encode([2**34, 2**35 - 1, 2**35], E5M4).tolist() == [0b111110000, 511, 511]
    assert encode([100], E5M4).tolist() == [(3 << 4) | 0b1001]   # 1100100b: exp 3, mant 1001


def test_decode_returns_the_bin_centre():
    # code 0010000 (exponent 2) covers 16..17: the centre adds half of the one dropped bit
    assert decode([0b0010000], E4M3).tolist() == [17]
    # exponent 0 with 1 dropped bit (low-density float-to-fix): 5 -> (5 << 1) + 1
    assert decode([5], E4M3, 1).tolist() == [11]
    # high density drops 3 bits: even code 0 means 0..7, decoded to 4
    assert decode([0], E4M3, 3).tolist() == [4]
    # saturated code: exponent 15, mantissa 7 -> (7 << 14) + (1 << 17) + (1 << 13)
    assert decode([127], E4M3).tolist() == [(7 << 14) + (1 << 17) + (1 << 13)]
    with pytest.raises(ValueError):
        decode([128], E4M3)
    with pytest.raises(ValueError):
        encode([-1], E4M3)


# ---------------------------------------------------------------- registers

def _doc(**over):
    doc = {"Algorithm": {"Global": {"select": 2, "density": 1}},
           "AlgoDroplsb": {"Global": 3},
           "FormatterBuffer": {"Global": {"active_etxs": 4, "buff_t1": 338, "buff_t2": 314,
                                          "buff_t3": 25, "stc_type": 0, "use_sum": 0,
                                          "link_reset_pattern": 290}},
           "Mux": {i: 47 - i for i in range(48)}}
    doc.update(over)
    return doc


def test_both_spellings_of_the_configuration():
    old = parse_config(_doc())
    assert (old.algorithm, old.n_etx, old.drop_lsb, old.mux[0], old.erx_msb_first) == (2, 4, 3, 47, False)
    new = parse_config({"ConfigAlgo": {"Global": {"alg_type": 1, "alg_high_density": 0}},
                        "AlgoDroplsb": {"Global": {"drop_lsb": 1}},
                        "FormatterBuffer": {"Global": {"active_etxs": 0x7, "stc_type": 3}}})
    assert (new.algorithm, new.high_density, new.n_etx, new.drop_lsb, new.stc_type,
            new.erx_msb_first) == (1, False, 3, 1, 3, True)
    ae = load_config(AE_INIT)
    assert ae.algorithm == 4 and ae.n_etx == 5 and ae.ae_mask == (1 << 144) - 1
    assert len(ae.ae_weight_words) == 12


@pytest.mark.parametrize("change, register", [
    ({"FormatterBuffer": {"Global": {"active_etxs": 4, "buff_t1": 1 << 16}}}, "FormatterBuffer.Global.buff_t1"),
    ({"FormatterBuffer": {"Global": {"active_etxs": 14}}}, "FormatterBuffer.Global.active_etxs"),
    ({"FormatterBuffer": {"Global": {"active_etxs": 4, "buf_t1": 3}}}, "FormatterBuffer.Global.buf_t1"),
    ({"FormatterBuffer": {"Global": {"active_etxs": True}}}, "FormatterBuffer.Global.active_etxs"),
    ({"FormatterBuffer": {"Global": {"active_etxs": 4, "stc_type": 5}}}, "FormatterBuffer.Global.stc_type"),
    ({"Algorithm": {"Global": {"select": 7}}}, "Algorithm.Global.select"),
    ({"Mux": {i: i for i in range(47)}}, "Mux.47"),
    ({"Mux": {**{i: i for i in range(48)}, 3: 48}}, "Mux.3"),
    ({"Cal": {**{i: 2048 for i in range(48)}, 9: 5000}}, "Cal.9"),
    ({"AlgoThreshold": {**{i: 47 for i in range(48)}, 2: "x"}}, "AlgoThreshold.2"),
    ({"AlgoDroplsb": {"Global": 256}}, "AlgoDroplsb.Global"),
    ({"Algorithm": {"Global": {"select": 4, "density": 1}}}, "Encoder"),
])
def test_bad_register_names_the_register(change, register):
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(**change))
    assert str(info.value).startswith(register), str(info.value)
    assert "\n" not in str(info.value)


def test_registers_left_out_keep_their_power_on_values():
    """As the CMS tools start from the register map: 2 links, threshold sum at low density,
    use_sum 1, stc_type 1, buffer thresholds 48/511/0 (the AE_8x8 vector relies on it)."""
    cfg = parse_config({"Algorithm": {"Global": {}}, "FormatterBuffer": {"Global": {}}})
    assert (cfg.algorithm, cfg.high_density, cfg.n_etx, cfg.use_sum, cfg.stc_type) == (0, False, 2, True, 1)
    assert (cfg.buff_t1, cfg.buff_t2, cfg.buff_t3, cfg.tx_sync_word) == (48, 511, 0, 0x070F)
    assert cfg == AsicConfig()
    ele = load_config(VECTORS / "AE_8x8_c8_S2_ele_qkeras" / "init.yaml")
    assert ele.algorithm == 4 and ele.n_etx == 2


def test_a_mask_of_links_must_be_contiguous():
    with pytest.raises(ConfigError, match="active_etxs.*contiguous"):
        parse_config({"ConfigAlgo": {"Global": {"alg_type": 2}},
                      "FormatterBuffer": {"Global": {"active_etxs": 0x5}}})


def test_config_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "init.yaml"
    for text, what in [("", "empty"), ("a: [", "not valid YAML"), ("- 1\n- 2\n", "mapping")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=what):
            load_config(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such"):
        load_config(tmp_path / "missing.yaml")


def test_a_duplicated_register_keeps_its_last_value(tmp_path):
    """The CMS tools read init.yaml with PyYAML, which keeps the last of repeated keys (the
    AE_8x8 vector repeats an encoder word); the emulator must read it the same way."""
    p = tmp_path / "init.yaml"
    p.write_text("Algorithm:\n  Global:\n    select: 2\n    select: 3\n"
                 "FormatterBuffer:\n  Global:\n    active_etxs: 13\n")
    assert load_config(p).algorithm == 3


# ---------------------------------------------------------------- front end

def test_link_words_unpack_in_both_tc_orders():
    codes = np.arange(48).reshape(1, 48) % 128
    for msb in (False, True):
        words = pack_tc_codes(codes, msb_first=msb)
        assert (unpack_tc_codes(words, msb_first=msb) == codes).all()
    w = pack_tc_codes(codes)[0, 0]
    assert w >> 28 == 0xA and (w & 0x7F) == 0 and ((w >> 21) & 0x7F) == 3
    w = pack_tc_codes(codes, msb_first=True)[0, 0]
    assert (w & 0x7F) == 3 and ((w >> 21) & 0x7F) == 0


def test_calq_by_hand():
    cfg = AsicConfig(algorithm=2, high_density=False, n_etx=1,
                     mux=tuple([5] + list(range(1, 48))), cal=(1024,) + (2048,) * 47)
    codes = np.zeros((1, 48), dtype=np.int64)
    codes[0, 5] = 0b0010011     # exponent 2, mantissa 3: (3 << 1) + 16 = 22
    q = alg.calq(codes, cfg)
    # TC 0 reads input 5: 22 << 1 (low density) = 44, + half of the dropped range (1 << 1) -> 46;
    # CAL 1024 is 0.5 -> 23
    assert q[0, 0] == 23
    # TC 5 reads input 5 too (not remapped in this MUX): 46 at CAL 1.0
    assert q[0, 5] == 46
    # the rest are zero codes: 0 << 1 + 1 (half of one dropped bit)
    assert q[0, 1] == 1


def test_bx_counter_restarts_at_bc0_headers():
    rx = np.full((10, 12), 0xA << 28, dtype=np.int64)
    rx[3, 0] = 0x9 << 28
    assert bx_counter(rx).tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    assert bx_counter(np.zeros((3, 12), dtype=np.int64)).tolist() == [0, 1, 2]


# ---------------------------------------------------------------- algorithms

def _network_reference(row):
    """Knuth's algorithm M, scalar: the sorter the ASIC implements."""
    a, adr = list(row), list(range(len(row)))
    n = len(a)
    t = (n - 1).bit_length()
    p = 1 << (t - 1)
    while p > 0:
        q, r, d = 1 << (t - 1), 0, p
        while q >= p:
            for i in range(n - d):
                if i & p == r and a[i] < a[i + d]:
                    a[i], a[i + d] = a[i + d], a[i]
                    adr[i], adr[i + d] = adr[i + d], adr[i]
            d, q, r = q - p, q // 2, p
        p //= 2
    return a, adr


def test_sorting_network_sorts_and_resolves_ties_as_the_scalar_network():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, size=(200, 48))     # tie-heavy
    got_v, got_a = alg.sort_descending(values)
    for row, v, a in zip(values, got_v, got_a):
        ref_v, ref_a = _network_reference(row)
        assert v.tolist() == ref_v and a.tolist() == ref_a
        assert sorted(a.tolist()) == list(range(48)) and (np.diff(v) <= 0).all()


def test_best_choice_ties_zero_and_saturated_modules():
    equal = np.full((1, 48), 40)
    bc = alg.best_choice(equal, 0, 4)
    # no exchange on equal values: the sorter keeps the first addresses
    assert np.flatnonzero(bc.kept[0]).tolist() == [0, 1, 2, 3]
    zero = alg.best_choice(np.zeros((1, 48), dtype=np.int64), 3, 6)
    assert zero.kept[0].sum() == 6 and zero.sum_all[0] == 0
    sat = np.zeros((1, 48), dtype=np.int64)
    sat[0, 7] = 2**30
    bc = alg.best_choice(sat, 0, 1)
    assert np.flatnonzero(bc.kept[0]).tolist() == [7]
    assert bc.values[0, 7] == 2**18 - 1 and encode(bc.values, E4M3)[0, 7] == 127


def test_best_choice_packet_by_hand():
    cfg = AsicConfig(algorithm=2, high_density=True, n_etx=1, use_sum=False)
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, 17], q[0, 3] = 100, 20
    frames = fmt.best_choice_frames(q, np.array([5]), cfg)
    # header: BX 5 -> 0101; sum of TCs not sent (20) 5E3M = 0010 010 -> 8 bits 00100100? 20 = 10100b:
    # exponent 2, mantissa 010 -> 00010010; address 17 = 010001; energy 100 = 1100100b 4E3M:
    # exponent 4, mantissa 100 -> 0100100
    bits = "0101" + "00010010" + "010001" + "0100100"
    bits += "0" * (32 - len(bits))
    assert frames.words[0, :2].tolist() == [int(bits[:16], 2), int(bits[16:], 2)]
    assert frames.n_words[0] == 2


def test_super_trigger_cell_addresses_ties_to_the_higher_index():
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, :4] = [5, 5, 0, 0]
    q[0, 4:8] = [1, 9, 9, 2]
    stc = alg.super_trigger_cells(q, 4)
    assert stc.address[0, :3].tolist() == [1, 2, 3]    # all-zero group -> its last TC
    assert stc.sums[0, :3].tolist() == [10, 21, 0]
    assert alg.super_trigger_cells(q, 16).address[0, 0] == 6


def test_threshold_sum_packet_by_hand():
    cfg = AsicConfig(algorithm=0, high_density=True, n_etx=2, threshold=(10,) * 48,
                     drop_lsb=1, tx_sync_word=0x122, use_sum=False)
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, 2], q[0, 40], q[0, 41] = 12, 9, 30
    frames = fmt.threshold_sum_frames(q, np.array([0]), cfg)
    # header 11111 (BX 0), type 010, sum below threshold (9) 00001001, count 010,
    # addresses 000010 101001, codes of 12 >> 1 = 6 -> 0000110 and 30 >> 1 = 15 -> 0001111
    bits = "11111" + "010" + "00001001" + "010" + "000010" + "101001" + "0000110" + "0001111"
    bits += "0" * (-len(bits) % 16)
    assert frames.n_words[0] == len(bits) // 16
    assert frames.words[0, :frames.n_words[0]].tolist() == [int(bits[i:i + 16], 2) for i in range(0, len(bits), 16)]
    idle = (31 << 11) + 0x122
    assert (frames.words[0, frames.n_words[0]:] == idle).all()
    empty = fmt.threshold_sum_frames(np.zeros((1, 48), dtype=np.int64), np.array([3]), cfg)
    assert empty.n_words[0] == 1 and empty.words[0, 0] == int("00011" + "000" + "00000000", 2)


def test_buffer_truncates_above_t1_and_above_t2_for_short_frames():
    """Traced by hand: one link drains 2 words a crossing; T1 = 10, T2 = 4, T3 = 3."""
    cfg = AsicConfig(algorithm=0, high_density=True, n_etx=1, buff_t1=10, buff_t2=4, buff_t3=3)
    sizes = [6, 6, 6, 2, 4, 1, 1]
    n = len(sizes)
    words = np.tile(np.arange(100, 126), (n, 1))
    trunc = np.tile([0xFE00, 0xEEEE], (n, 1))      # header 11111, type 110, sum 0; idle
    frames = fmt.Frames(words=words, n_words=np.array(sizes), truncated=trunc)
    out, flags = fmt.buffer(frames, cfg)
    # levels before each write: 0, 4, 8 (8 + 6 > T1: truncated), 7 (> T2, 2 <= T3: truncated,
    # bit 8 set), 6 (> T2 but 4 > T3: written), 8 (truncated), 7 (truncated)
    assert flags.tolist() == [False, False, True, True, False, True, True]
    pair = lambda a, b: (a << 16) | b
    assert out[:, 0].tolist() == [pair(100, 101), pair(102, 103), pair(104, 105), pair(100, 101),
                                  pair(102, 103), pair(104, 105), pair(0xFE00, 0xFF00)]
    assert out[:, 1:].sum() == 0


def test_autoencoder_packet_keeps_the_masked_bits():
    cfg = AsicConfig(algorithm=4, high_density=True, n_etx=2, ae_mask=int("10" * 72, 2),
                     ae_weight_words=((0,) * 9,) * 12)
    latents = np.zeros((1, 16), dtype=np.int64)
    latents[0, 15] = 0b111111111       # latent 15 leads the bit string
    frames = fmt.autoencoder_frames(latents, np.array([0b101010101]), np.array([1]), cfg)
    # kept: every other bit of 144, i.e. 72 bits; the links carry 18 + 32 = 50 of them (the
    # last 50); latent 15's kept bits are the first 5 of the 72, so not sent at 2 links
    bits = "00001" + "101010101" + "0" * 50
    assert frames.words[0, :4].tolist() == [int(bits[i:i + 16], 2) for i in range(0, 64, 16)]
    latents[0, 0] = 0b111111111        # latent 0 is last: its 4 kept bits (136, 138, ...) end the packet
    frames = fmt.autoencoder_frames(latents, np.array([0]), np.array([1]), cfg)
    stream = "".join(f"{w:016b}" for w in frames.words[0, :4])
    assert stream[-4:] == "1111" and stream[14:-4] == "0" * 46


def test_super_trigger_cell_groups_follow_the_packet_width():
    """The rule (as many groups as fit 32 N - 4 bits, links past the first that carries all
    of them unused) gives the CMS emulator's tables of types 0-3, written out here."""
    assert alg.STC_GROUPS_PER_LINKS == {0: (2, 5, 8, 11, 12), 1: (2, 3), 2: (4, 8, 12),
                                        3: (3, 6, 10, 12), 4: (3, 6, 10, 12)}


def test_ctc4b_packet_by_hand():
    """Type 4 (CTC4B): no addresses, 9-bit 5E4M group sums, no DropLSB."""
    q = np.zeros((1, 48), dtype=np.int64)
    q[0, 0:4] = [1, 2, 3, 4]                 # group 0: 10 (5E4M below 16: the value itself)
    q[0, 4:8] = [100, 0, 0, 0]               # group 1: 100 = 1100100 -> exponent 3, mantissa 1001
    q[0, 8:12] = 1 << 20                     # group 2: 2^22 -> exponent 19, mantissa 0
    cfg = AsicConfig(algorithm=1, high_density=True, n_etx=1, stc_type=4, drop_lsb=3)
    frames = fmt.super_trigger_cell_frames(q, np.array([5]), cfg)
    bits = "0101" + f"{10:09b}" + f"{(3 << 4) | 0b1001:09b}" + f"{19 << 4:09b}" + "0"
    assert [int(bits[:16], 2), int(bits[16:], 2)] == frames.words[0, :2].tolist()
    assert frames.n_words[0] == 2


# ---------------------------------------------------------------- the autoencoder

def test_autoencoder_arithmetic_by_hand():
    """One module worked through by hand: converter (7 fractional bits of the sum-normalized
    charge), slot layout, convolution products cut to 2^-7, dense products cut to 2^-8."""
    from econ_emd.econt import autoencoder as ae

    q = np.zeros((1, 48), dtype=np.int64)
    q[0, 0], q[0, 9], q[0, 40] = 5, 3, 9     # sum 17 -> msb 4: x = floor(128 q / 16)
    x = ae.converter(q)
    assert (x[0, 0], x[0, 9], x[0, 40], x.sum()) == (40, 24, 72, 136)
    img = ae.image(x)
    assert img[0, 0, 0] == 40 and img[0, 1, 1] == 24 and img[0, 6, 0] == 72   # slot 40 -> pixel 48
    k = np.zeros((3, 3, 8), dtype=np.int64)
    k[0, 0, 0], k[1, 1, 1], k[0, 0, 2] = 31, -7, 3
    d = np.zeros((128, 16), dtype=np.int64)
    d[0, 0], d[1, 1], d[(3 * 4 + 0) * 8 + 2, 2] = 17, 31, -32
    w = ae.AeWeights(k, np.array([1, 0, 0, 0, 0, 0, 0, -1]), d, np.array([2] + [0] * 15))
    h = ae.hidden(x, w)
    # output (0, 0), filter 0: 40 * 31 = 1240 (units 2^-12) -> floor(1240 / 32) = 38, + bias 1 * 4
    # filter 1: tap (1, 1) is pixel (1, 1) = 24: 24 * -7 = -168 -> floor(-168 / 32) = -6 -> relu 0
    # output (3, 0), filter 2: tap (0, 0) is pixel (6, 0) = 72: 72 * 3 = 216 -> 6
    assert (h[0, 0], h[0, 1], h[0, (3 * 4 + 0) * 8 + 2]) == (42, 0, 6)
    z = ae.latents_from_hidden(h, w)
    # latent 0: 42 * 17 = 714 (2^-12) -> floor(714 / 16) = 44, + bias 2 * 8 = 60
    # latent 2: 6 * -32 = -192 -> -12 -> relu 0; others: 0
    assert z[0, :3].tolist() == [60, 0, 0] and z[0, 3:].sum() == 0
    # the register image reads the dense kernel output-major, and back
    regs = w.to_register_values()
    assert regs[80 + 0 * 128 + 0] == 17 and regs[80 + 2 * 128 + 96 + 2] == -32
    assert ae.AeWeights.from_register_values(regs) == w


def test_autoencoder_latents_equal_the_golden_vector():
    """All 16 latents of every crossing of the AE vector subset, and the register image
    written back from them is the init.yaml's."""
    from econ_emd.econt import autoencoder as ae
    from econ_emd.econt.registers import ae_register_values, ae_register_words

    cfg = load_config(AE_INIT)
    rx, tx = read_rx(VECTORS / "testInput.csv.gz"), read_tx(VECTORS / "AE" / "testOutput.csv.gz")
    latents = ae.encode(front_end(cfg, rx), ae.AeWeights.from_registers(cfg.ae_weight_words))
    stream = [sum(int(w) << (32 * (4 - i)) for i, w in enumerate(row[:5])) for row in tx]
    expected = np.array([[(s >> (9 * i)) & 511 for i in range(16)] for s in stream])
    assert np.array_equal(latents, expected)
    assert ae_register_words(ae_register_values(cfg.ae_weight_words)) == cfg.ae_weight_words


# ---------------------------------------------------------------- golden vectors

def test_verify_the_vector_subset(capsys):
    assert main(["econt", "verify", str(VECTORS)]) == 0
    out = capsys.readouterr().out
    assert out.count("100% of") == 11 and "STC_type4_eTx1: SKIPPED" in out
    assert "AE: autoencoder" in out and "AE_8x8_c8_S2_ele_qkeras: autoencoder" in out


def test_a_corrupted_word_fails_naming_the_crossing(tmp_path, capsys):
    folder = tmp_path / "v"
    shutil.copytree(VECTORS, folder)
    target = folder / "BC_2eTx" / "testOutput.csv.gz"
    lines = gzip.decompress(target.read_bytes()).decode().splitlines()
    cells = lines[123].split(",")
    cells[1] = f"{int(cells[1], 16) ^ (1 << 20):08x}"     # flip one bit of link 1, data row 123
    lines[123] = ",".join(cells)
    target.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert main(["econt", "verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "BC_2eTx: MISMATCH" in out and "first at row 123 (BX 122)" in out
    assert "TX_DATA_1" in out and "field energy[" in out


def test_verify_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["econt", "verify", str(tmp_path / "nope")]) == 2
    assert main(["econt", "verify", str(tmp_path)]) == 2
    folder = tmp_path / "v"
    shutil.copytree(VECTORS / "BC_2eTx", folder / "BC_2eTx")
    shutil.copy(VECTORS / "testInput.csv.gz", folder)
    init = folder / "BC_2eTx" / "init.yaml"
    init.write_text(init.read_text().replace("buff_t1: 338", "buff_t1: 99999"))
    assert main(["econt", "verify", str(folder)]) == 2     # a configuration that cannot run
    assert "FormatterBuffer.Global.buff_t1" in capsys.readouterr().out
    assert main(["econt", "run", "-i", str(VECTORS / "testInput.csv.gz"), "--asic", str(init)]) == 2
    assert "FormatterBuffer.Global.buff_t1: 99999" in capsys.readouterr().err


def test_an_autoencoder_mismatch_names_its_packet_fields(tmp_path, capsys):
    """The AE configuration checked against another run's words: exit 1, the first crossing
    and the packet fields that differ (module sum, latent bits)."""
    folder = tmp_path / "v"
    (folder / "AE").mkdir(parents=True)
    shutil.copy(AE_INIT, folder / "AE" / "init.yaml")
    shutil.copy(VECTORS / "testInput.csv.gz", folder)
    shutil.copy(VECTORS / "BC_2eTx" / "testOutput.csv.gz", folder / "AE")
    assert main(["econt", "verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "AE: MISMATCH" in out and "first at row 1 " in out and "field latent_bits" in out


def test_large_inputs_are_formatted_in_chunks(monkeypatch):
    from econ_emd.econt import emulator

    rx = read_rx(VECTORS / "testInput.csv.gz")
    cfg = load_config(VECTORS / "TS_Thr47_4eTx_MRL" / "init.yaml")
    whole = emulate(cfg, rx).tx
    monkeypatch.setattr(emulator, "CHUNK", 37)
    assert (emulate(cfg, rx).tx == whole).all()


def test_run_writes_the_vectors_format(tmp_path):
    out = tmp_path / "out.csv"
    config = VECTORS / "STC_type3_eTx4" / "init.yaml"
    assert main(["econt", "run", "-i", str(VECTORS / "testInput.csv.gz"), "--asic", str(config),
                 "-o", str(out)]) == 0
    assert (read_tx(out) == read_tx(VECTORS / "STC_type3_eTx4" / "testOutput.csv.gz")).all()
    assert out.read_text().splitlines()[0].startswith("TX_DATA_0,TX_DATA_1")
    assert main(["econt", "run", "-i", str(VECTORS / "testInput.csv.gz"), "--asic", str(config),
                 "-o", str(tmp_path)]) == 2


def test_bad_link_word_files(tmp_path):
    p = tmp_path / "in.csv"
    header = ",".join(f"RX_DATA_{i}" for i in range(12))
    for body, what in [("", "empty"), (header + "\n", "no data rows"),
                       (header + "\n" + ",".join(["zz"] * 12), "line 2, column RX_DATA_0"),
                       (header + "\n" + ",".join(["1ffffffff"] * 12), "32-bit"),
                       (header.replace("RX_DATA_3", "RX_DATA_2") + "\n", "RX_DATA_2")]:
        p.write_text(body)
        with pytest.raises(DataError, match=what):
            read_rx(p)


def test_link_words_as_a_data_source():
    from econ_emd.data.loaders import load_modules
    from econ_emd.data.params import DataParams

    from econ_emd.econt.vectors import simulated_calq

    loaded = load_modules("econt_links", VECTORS / "testInput.csv.gz", econt_config=AE_INIT,
                          drop_zero_sum=False)
    # the fixture's words are the first crossings of the shipped simulated module: the same cells
    np.testing.assert_array_equal(loaded.charges, simulated_calq()[: len(loaded.charges)])
    # any algorithm's configuration reads the same cells (where a cell sits is the module's,
    # not the MUX's); a calibration register follows its input through the configuration's MUX
    other = load_modules("econt_links", VECTORS / "testInput.csv.gz",
                         econt_config=VECTORS / "BC_2eTx" / "init.yaml", drop_zero_sum=False)
    np.testing.assert_array_equal(other.charges, loaded.charges)
    with pytest.raises(ValueError, match="econt_config"):
        DataParams(source="econt_links", path="x.csv")


def test_the_autoencoder_image_is_the_products_8x8_image():
    """The ASIC's image of slot-ordered TCs (econt.autoencoder) and this product's 8x8 image
    of CALQ-ordered TCs (econ_emd.geometry) are the same picture of a module."""
    from econ_emd.geometry import ae_slots_from_calq, calq_from_ae_slots, calq_to_8x8
    from econ_emd.econt import autoencoder as ae

    x = np.random.default_rng(3).integers(0, 1000, (5, 48))
    assert np.array_equal(ae.image(ae_slots_from_calq(x)), calq_to_8x8(x))
    assert np.array_equal(calq_from_ae_slots(ae_slots_from_calq(x)), x)


def test_emulation_is_causal():
    """A prefix of the input gives the prefix of the output (what the fixture relies on)."""
    rx = read_rx(VECTORS / "testInput.csv.gz")
    cfg = load_config(VECTORS / "TS_Thr47_4eTx_MRL" / "init.yaml")
    assert (emulate(cfg, rx[:150]).tx == emulate(cfg, rx).tx[:150]).all()


def test_lookup_tables_agree_with_the_direct_rule():
    """Small values go through per-code tables, large ones through the bit arithmetic:
    both paths must give the same codes (here on the same values)."""
    from econ_emd.econt import codes

    values = np.concatenate([np.arange(4096), np.random.default_rng(1).integers(0, 1 << 20, 5000)])
    for code in (E4M3, E5M3, E5M4):
        for drop in (0, 1, 3):
            direct = codes._encode(values, code, np.int64(drop))
            assert (encode(values, code, drop) == direct).all()
            c = np.arange(1 << code.width)
            assert (decode(c, code, drop) == codes._decode(c, code, np.int64(drop))).all()


def test_cells_keep_their_place_and_their_calibration_whatever_the_mux():
    """A cell is read from the input it enters on; the MUX only decides which CAL register
    calibrates it (the one of the TC the MUX makes of that input). A repeated MUX input is
    refused (its calibration would be ambiguous)."""
    from dataclasses import replace

    from econ_emd.base.errors import ConfigError
    from econ_emd.econt.emulator import cells_in_calq_order
    from econ_emd.geometry import econt_input_of_calq

    rx = read_rx(VECTORS / "testInput.csv.gz")[:50]
    base = AsicConfig(high_density=True)
    plain = cells_in_calq_order(base, rx)
    rng = np.random.default_rng(0)
    mux = rng.permutation(48)
    cal = np.full(48, 2048)
    tc = 7                                     # the TC the MUX makes of input mux[7]: half calibration
    cal[tc] = 1024
    scaled = cells_in_calq_order(replace(base, mux=tuple(int(m) for m in mux), cal=tuple(int(c) for c in cal)), rx)
    cell = int(np.flatnonzero(econt_input_of_calq() == mux[tc])[0])
    np.testing.assert_array_equal(np.delete(scaled, cell, axis=1), np.delete(plain, cell, axis=1))
    np.testing.assert_array_equal(scaled[:, cell], plain[:, cell] * 1024 >> 11)
    assert (plain[:, cell] > 0).any()
    with pytest.raises(ConfigError, match="Mux: input 0 is taken more than once"):
        cells_in_calq_order(replace(base, mux=(0, 0, *range(2, 48))), rx)
