import numpy as np
import pytest

from econ_emd.econt.codes import E5M4, decode, encode
from econ_emd.econt.normalization import sumlog2_normalize, sumlog2_scale


def test_sumlog2_sum_in_one_two(modules):
    n = sumlog2_normalize(modules)
    s = n.sum(1)
    assert (s >= 1).all() and (s < 2).all()
    # the divisor is an exact power of two
    scale = sumlog2_scale(modules)
    np.testing.assert_array_equal(np.log2(scale), np.round(np.log2(scale)))


def test_sumlog2_exact_powers():
    x = np.zeros((3, 48))
    x[0, 0] = 1
    x[1, :2] = [512, 511]      # sum 1023 -> divide by 512
    x[2, 5] = 1024             # sum 1024 -> divide by 1024
    np.testing.assert_array_equal(sumlog2_scale(x), [1, 512, 1024])


def test_sumlog2_rejects_zero_sum():
    with pytest.raises(ValueError):
        sumlog2_scale(np.zeros((1, 48)))


def test_sum_code_small_values_exact_and_nine_bits():
    """The module sum beside the latents is the 5E4M code (the one definition, econt.codes)."""
    s = np.arange(0, 16)
    np.testing.assert_array_equal(decode(encode(s, E5M4), E5M4), s)
    big = np.array([16, 17, 31, 32, 1000, 2**22 * 48])
    assert (encode(big, E5M4) < 2**9).all()


def test_sum_code_relative_error_and_monotonic():
    s = np.unique(np.round(np.logspace(0, 8, 5000))).astype(np.int64)
    dec = decode(encode(s, E5M4), E5M4)            # the centre of each code's bin
    assert (np.abs(dec - s) / s).max() < 2**-4
    assert (np.diff(encode(s, E5M4)) >= 0).all()


def test_sum_code_hand_example():
    # 1000 = 0b1111101000: bit length 10, exponent 10 - 4 = 6, mantissa 0b1111 (after the
    # implicit leading one); decoded at the bin centre: 0b11111 << 5 plus half of 2**5
    assert int(encode(1000, E5M4)) == (6 << 4) | 0b1111
    assert int(decode((6 << 4) | 0b1111, E5M4)) == (0b11111 << 5) + 16
