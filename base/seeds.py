"""Every random stream of a run, derived in one place from the run seed and a purpose.

A purpose names what the stream is for. The derivations below are the ones the project has
always used, kept exactly so that a run with a given seed reproduces its earlier results
bit for bit: some purposes offset the run seed, others put it in a SeedSequence beside a
tag (and the caller's keys, e.g. pair kind and split).
"""
from __future__ import annotations

import numpy as np

#: purpose -> ("offset", n): SeedSequence(run_seed + n); ("tag", t): SeedSequence([run_seed, t, *keys])
PURPOSES: dict[str, tuple[str, int]] = {
    "synthetic_modules": ("offset", 0),     # the run's synthetic data set
    "split": ("tag", 1),                    # train/val/test permutation
    "label_pairs": ("tag", 2),              # keys: pair kind index, split index
    "emd_cnn_training": ("offset", 0),
    "encoder_training": ("offset", 0),
    "encoder_epoch": ("tag", 3),            # keys: epoch (of a training seeded by encoder_training)
    "encoder_seed": ("tag", 4),             # keys: k >= 1, the comparison's k-th training seed
    "asic_revive": ("tag", 5),              # the asic float start's revived latents (of a training's seed)
    "firmware_extra_modules": ("offset", 1),  # synthetic modules topping up the bit-accuracy check
    "neemo_random_pairs": ("offset", 17),
    "neemo_potential": ("offset", 0),
    "neemo_kmeans": ("offset", 0),
}


#: the largest run seed: every offset purpose's integer seed (run seed + offset) must stay
#: below 2^32, what numpy's legacy seeding, scikit-learn and TensorFlow's ops all accept
MAX_RUN_SEED = 2**32 - 1 - max(v for kind, v in PURPOSES.values() if kind == "offset")


def derive_seed(run_seed: int, purpose: str, *keys: int) -> np.random.SeedSequence:
    """The SeedSequence of `purpose` for this run (np.random.default_rng takes it directly)."""
    try:
        kind, value = PURPOSES[purpose]
    except KeyError:
        raise ValueError(f"unknown seed purpose {purpose!r} (known: {', '.join(PURPOSES)})") from None
    if kind == "offset":
        if keys:
            raise ValueError(f"seed purpose {purpose!r} takes no keys")
        return np.random.SeedSequence(run_seed + value)
    return np.random.SeedSequence([run_seed, value, *keys])


def as_int(seq: np.random.SeedSequence) -> int:
    """An integer seed for libraries that take one (TensorFlow, scikit-learn): the entropy
    itself for an offset purpose, so those libraries see the same integer as before."""
    if isinstance(seq.entropy, int):
        return seq.entropy
    return int(seq.generate_state(1, np.uint32)[0])


def seed_int(run_seed: int, purpose: str) -> int:
    """`as_int(derive_seed(run_seed, purpose))`: the integer seed of an offset purpose."""
    return as_int(derive_seed(run_seed, purpose))
