"""The training numerics are pinned before TensorFlow starts (base/numerics.py), and a value
the user exported wins."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from econ_emd.base.numerics import PINNED_ENVIRONMENT

PROBE = ("import json, os, econ_emd, tensorflow as tf; "
         "print(json.dumps({k: os.environ.get(k) for k in %r}))" % list(PINNED_ENVIRONMENT))


def _run(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in PINNED_ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_pins_the_numerics():
    assert _run({}) == PINNED_ENVIRONMENT


def test_an_exported_value_wins():
    seen = _run({"TF_NUM_INTRAOP_THREADS": "1"})
    assert seen["TF_NUM_INTRAOP_THREADS"] == "1"
    assert seen["ONEDNN_MAX_CPU_ISA"] == PINNED_ENVIRONMENT["ONEDNN_MAX_CPU_ISA"]


TRAIN = """
import hashlib, os, sys
import econ_emd
os.sched_setaffinity(0, {cores})
import numpy as np
from econ_emd.data.synthetic import generate
from econ_emd.training import encoder_train as et
from econ_emd.training.losses import get_loss
from econ_emd.training.params import EncoderParams
modules = generate(3000, seed=4)
params = EncoderParams(kind="qkeras", links=2, epochs=2, batch_size=128, patience=5)
t = et.train_autoencoder(modules[:2500], modules[2500:], params, get_loss("mse", None, params), 7, None, "probe")
h = hashlib.sha256()
for w in t.encoder.get_weights() + t.decoder.get_weights():
    h.update(np.ascontiguousarray(w).tobytes())
print(h.hexdigest())
"""


def test_a_seeded_training_gives_the_same_weights_on_one_core_and_on_two():
    """The claim of base/numerics.py on this machine: the intra-op split does not follow the
    cores the process may use (unpinned, TensorFlow takes one thread per core and the
    weights change with the core count)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        import pytest

        pytest.skip("one core: nothing to compare")
    base = {k: v for k, v in os.environ.items() if k not in PINNED_ENVIRONMENT}
    digests = []
    for use in ({cores[0]}, set(cores[:2])):
        out = subprocess.run([sys.executable, "-c", TRAIN.format(cores=use)],
                             env={**base, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
                             timeout=600, check=True)
        digests.append(out.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]
