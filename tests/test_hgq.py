"""The resource-aware (HGQ) encoder: a tiny one trained, frozen into its proxy model, and
exported bit for bit through hls4ml (compiled predict and the g++ C simulation) and the
RTL traced from it (Verilator); the latents keep the ECON-T field."""
from __future__ import annotations

import numpy as np
import pytest

from econ_emd.models.arch import HgqArch

pytest.importorskip("HGQ")


@pytest.fixture(scope="module")
def frozen_proxy(tmp_path_factory):
    import tensorflow as tf

    from econ_emd.models.hgq_encoder import build_hgq_encoder, freeze, latent_max, training_callbacks
    from econ_emd.training.encoder_train import encoder_inputs

    tf.keras.utils.set_random_seed(3)
    arch = HgqArch(beta=1e-5, init_bits=4, input_bits=6, latent_bits=7)
    enc = build_hgq_encoder(arch)
    rng = np.random.default_rng(0)
    charges = rng.gamma(0.4, 60, (600, 48)) + 1
    x = encoder_inputs(charges)
    target = rng.random((600, 16)).astype(np.float32) * 1.5
    clip = tf.keras.layers.ReLU(max_value=latent_max(arch))
    model = tf.keras.Model(enc.input, clip(enc.output))
    model.compile(tf.keras.optimizers.Adam(3e-3), "mse")
    model.fit(x, target, epochs=3, batch_size=64, verbose=0, callbacks=training_callbacks())
    proxy, ebops = freeze(enc, x, arch)
    return proxy, ebops, charges, arch


def test_the_latents_keep_the_ecot_field(frozen_proxy):
    from econ_emd.firmware.proxy_trace import proxy_output_format

    proxy, ebops, charges, arch = frozen_proxy
    from econ_emd.training.encoder_train import encoder_inputs

    z = proxy.predict(encoder_inputs(charges, proxy), verbose=0)
    fmt = proxy_output_format(proxy)
    assert not fmt.signed and fmt.integer <= 1 and fmt.fraction == arch.latent_bits - arch.latent_integer
    lsb = 2.0 ** -fmt.fraction
    assert z.min() >= 0 and z.max() <= 2 - lsb and np.array_equal(np.rint(z / lsb) * lsb, z)
    assert ebops > 0


def test_a_tiny_resource_aware_encoder_converts_bit_exactly(frozen_proxy, tmp_path):
    """hls4ml compiled predict, the g++ C simulation and the Verilator RTL simulation (of
    the Verilog traced from the proxy, value by value) all equal the proxy model on every
    module, to the last bit, through the one firmware flow; the trained widths differ from
    value to value, else this would not test the per-value quantization."""
    from econ_emd.firmware import csim
    from econ_emd.firmware.flow import build_firmware
    from econ_emd.firmware.params import FirmwareParams, RtlParams
    from econ_emd.training.encoder_train import encoder_inputs

    proxy, _, charges, _ = frozen_proxy
    quantizers = [layer for layer in proxy.layers if type(layer).__name__ == "FixedPointQuantizer"
                  and int(np.prod(layer.bits.shape))]
    widths = {int(b) for layer in quantizers for b in np.ravel(layer.bits.numpy())}
    assert len(widths) > 2, widths
    x = encoder_inputs(charges, proxy)
    y = proxy.predict(x, verbose=0)
    build = build_firmware(proxy, x, y, tmp_path, firmware=FirmwareParams(), rtl=RtlParams(),
                           products=("hls", "csim", "rtl"))
    pred = csim.predict_check(build.hls.hls_model, x, y, build.hls.output_lsb)
    assert pred.bit_exact_fraction == 1.0 and pred.n_modules == 600
    tb = build.csim.accuracy
    assert tb.bit_exact_fraction == 1.0 and tb.max_abs_diff_lsb == 0
    sim = build.rtl.simulation
    assert sim.bit_exact_fraction == 1.0 and sim.latency_cycles is not None and build.rtl.check_passed
    assert build.rtl.synthesis is None          # not asked for: no Yosys whatever rtl.synthesize says
