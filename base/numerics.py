"""The numerics TensorFlow trains with, fixed before it is imported, so that a training
seed gives the same weights on any x86-64 machine.

Why: TensorFlow on CPU repeats a seeded run on one machine, but its weights still
depend on the oneDNN kernels the CPU selects (AVX2 against AVX-512 sums in another order)
and on how many threads split each reduction. Measured on this project (docs/measured.md,
"Repeatability"): capping oneDNN at AVX2 and fixing the intra-op threads at 2 gave identical
EMD-CNN and encoder weights on 1 and 2 cores, with 1 or 4 inter-op threads, and with or
without TensorFlow's op-determinism flag; leaving either free changed the encoders' exact
EMD by up to 6%. The flag itself is not set: on CPU it changed no weight, and it makes every
unseeded random op (an initializer outside a seeded training) an error. What still varies:
another CPU family (ARM, or x86 without AVX2), another TensorFlow or oneDNN build.

Each setting is a default: a value the user exported wins (e.g. TF_NUM_INTRAOP_THREADS=16
to train faster on a big machine, at the price of other weights). Importing `econ_emd`
applies them; a program that imported TensorFlow first keeps whatever TensorFlow chose.
"""
from __future__ import annotations

import os

#: environment defaults read by TensorFlow / oneDNN when they start
PINNED_ENVIRONMENT: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",      # the same kernels on AVX2 and AVX-512 machines
    "TF_NUM_INTRAOP_THREADS": "2",     # reductions split the same way whatever the core count
}


def pin_numerics() -> dict[str, str]:
    """Set the defaults that are not set yet; return the values in force."""
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in PINNED_ENVIRONMENT}
