"""The simulated ttbar crossings split once: a training/validation part and a held-out part.

The 3,564 crossings of one simulated module at 200 pileup (`econt.vectors.simulated_calq`)
are the only detector-like data the product ships. Everything fitted or trained on them
(the detector generator's calibration, an encoder trained on crossings) may read only the
training/validation part; the held-out part is what every verdict on real-like data is
judged on. The split is fixed and needs no seed: crossing `i` (0-based, in the order of
the vectors' input file) is held out when `i` is odd, so each part has 1,782 crossings
spread evenly over the orbit (the crossings are independent events: the module sum has
no correlation between neighbouring crossings, |r| < 0.04 at lags 1-29).

Every user goes through `training_crossings()` / `heldout_crossings()`; both return a
`Crossings` that names its part, and code that fits or trains calls
`require_training(crossings, purpose)`, which refuses the held-out part.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

#: crossings in the shipped vectors (one LHC orbit)
N_CROSSINGS = 3564
#: the two parts; a crossing is held out when its index modulo HELDOUT_PERIOD is HELDOUT_RESIDUE
PARTS = ("training", "heldout")
HELDOUT_PERIOD = 2
HELDOUT_RESIDUE = 1

Part = Literal["training", "heldout"]


class HeldOutAccess(RuntimeError):
    """Code that fits or trains was handed held-out crossings."""


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class Crossings:
    """One part of the simulated crossings: CALQ charges (read-only) and their row indices."""

    charges: np.ndarray   # (n, 48) float64 CALQ, CALQ order
    index: np.ndarray     # (n,) 0-based crossing numbers in the vectors' file
    part: Part

    def __len__(self) -> int:
        return int(self.index.size)


def part_indices(part: Part) -> np.ndarray:
    """The crossing numbers of `part` (the fixed rule of this module's docstring)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")
    every = np.arange(N_CROSSINGS)
    held = every % HELDOUT_PERIOD == HELDOUT_RESIDUE
    return every[held if part == "heldout" else ~held]


@lru_cache(maxsize=1)
def _all_charges() -> np.ndarray:
    """All crossings, read once; only `_part` slices them (the one reader of the file)."""
    from econ_emd.econt.vectors import simulated_calq

    charges = np.asarray(simulated_calq(), dtype=np.float64)
    if charges.shape[0] != N_CROSSINGS:
        raise RuntimeError(f"the shipped vectors hold {charges.shape[0]} crossings, expected {N_CROSSINGS}")
    charges.setflags(write=False)
    return charges


def _part(part: Part) -> Crossings:
    idx = part_indices(part)
    charges = _all_charges()[idx]
    charges.setflags(write=False)
    idx.setflags(write=False)
    return Crossings(charges=charges, index=idx, part=part)


def training_crossings() -> Crossings:
    """The training/validation part (even crossings): what calibration and training read."""
    return _part("training")


def heldout_crossings() -> Crossings:
    """The held-out part (odd crossings): for judging only, never for fitting or training."""
    return _part("heldout")


def require_training(crossings: Crossings, purpose: str) -> np.ndarray:
    """The charges of `crossings` if they are the training part, else `HeldOutAccess`.

    Checks the rows themselves, not only the label, so a held-out row smuggled into a
    training-labelled object is refused too."""
    held = crossings.index % HELDOUT_PERIOD == HELDOUT_RESIDUE
    if crossings.part != "training" or held.any():
        raise HeldOutAccess(f"{purpose} may read only the training part of the simulated crossings "
                            f"(got {int(held.sum())} held-out crossings)")
    return crossings.charges
