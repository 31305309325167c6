"""What the ECON-T's output links carry: the autoencoder packet's bit budget per link count.

Each output link (eTx) carries 32 bits per bunch crossing. The autoencoder's packet is a
5-bit header (the BX field), the module sum as a 9-bit 5E4M code, then the latent bits the
mask keeps, right-aligned in what is left of the links: 32 N - 14 bits at N links, and at
most the 146 bits of 5 links (`ae_packet_bits`; the formatter, `econt.formatter`, fills
them). A latent is 9 bits in the ASIC (`econt.autoencoder`: N_LATENT latents of LATENT_BITS); at N
links each of the 16 latents gets the widest
field that fits: 3, 5, 7, 9 bits at 2, 3, 4, 5 links (`latent_bits_for_links`), the
table of the ECON-T autoencoder (`AE_LINK_COUNTS`: the link counts it is built for).

Every rule here is the one definition the models, the training and the configuration read
(the encoder's latent width, the link counts a config may name); `tests/test_architecture.py`
fails on a second definition elsewhere.
"""
from __future__ import annotations

from econ_emd.econt.autoencoder import LATENT_BITS, N_LATENT
from econ_emd.econt.codes import E5M4

#: bits each output link carries per bunch crossing
LINK_BITS = 32
#: the autoencoder packet's header: the 5-bit BX field
AE_HEADER_BITS = 5
#: the module sum beside the latents: a 5E4M code
AE_SUM_BITS = E5M4.width
#: an autoencoder packet fills at most this many links (more carry nothing more)
AE_MAX_LINKS = 5
#: the link counts the ECON-T autoencoder is built for (3, 5, 7, 9 bits per latent)
AE_LINK_COUNTS = (2, 3, 4, 5)


class LinkBudgetError(ValueError):
    """The latent code does not fit into the output links."""


def ae_packet_bits(n_links: int) -> int:
    """Latent bits the links carry after the header and the sum: 32 N - 14, at most 146."""
    return LINK_BITS * min(n_links, AE_MAX_LINKS) - AE_HEADER_BITS - AE_SUM_BITS


def latent_bits_for_links(n_links: int) -> int:
    """The latent width at `n_links` output links (one of `AE_LINK_COUNTS`)."""
    if n_links not in AE_LINK_COUNTS:
        raise LinkBudgetError(f"no latent width for {n_links} output links "
                              f"(the autoencoder runs at {', '.join(map(str, AE_LINK_COUNTS))})")
    return min(LATENT_BITS, ae_packet_bits(n_links) // N_LATENT)


def check_link_budget(n_links: int, latent_bits: int, n_latent: int = N_LATENT) -> dict:
    """Bits per bunch crossing: latents + sum + header must fit `n_links` x 32 bits."""
    need = n_latent * latent_bits + AE_SUM_BITS + AE_HEADER_BITS
    have = n_links * LINK_BITS
    if need > have:
        raise LinkBudgetError(
            f"{n_latent} latents x {latent_bits} bits + {AE_SUM_BITS}-bit sum + {AE_HEADER_BITS}-bit header = "
            f"{need} bits per bunch crossing, but {n_links} output links carry {have}")
    return {"bits_needed": need, "bits_available": have}
