"""The ECON-T output-link budget (no TensorFlow here: the config checks it at load time).

Each output eLink carries 32 bits per bunch crossing; the 16 latents, the 9-bit module sum
and a header must fit. The latent width follows the number of eLinks:
2 -> 3 bits, 3 -> 5, 4 -> 7, 5 -> 9.
"""
from __future__ import annotations

N_LATENT = 16
ELINK_BITS = 32
SUM_BITS = 9
#: bits of the per-bunch-crossing header travelling with the latents
HEADER_BITS = 4
LATENT_BITS_FOR_ELINKS = {2: 3, 3: 5, 4: 7, 5: 9}


class ElinkBudgetError(ValueError):
    """The latent code does not fit into the output eLinks."""


def elink_preset(n_elinks: int) -> int:
    """Latent bits for a number of output eLinks (2-5)."""
    try:
        return LATENT_BITS_FOR_ELINKS[n_elinks]
    except KeyError:
        raise ElinkBudgetError(f"no preset for {n_elinks} eLinks (choose 2, 3, 4 or 5)") from None


def check_elink_budget(n_elinks: int, latent_bits: int, n_latent: int = N_LATENT) -> dict:
    """Bits per bunch crossing: latents + sum + header must fit n_elinks x 32 bits."""
    need = n_latent * latent_bits + SUM_BITS + HEADER_BITS
    have = n_elinks * ELINK_BITS
    if need > have:
        raise ElinkBudgetError(
            f"{n_latent} latents x {latent_bits} bits + {SUM_BITS}-bit sum + {HEADER_BITS}-bit header = "
            f"{need} bits per bunch crossing, but {n_elinks} eLinks carry {have}")
    return {"bits_needed": need, "bits_available": have}
