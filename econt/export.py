"""The ECON-T configuration that runs an autoencoder: its register image, written as the
`init.yaml` of the CMS test vectors (numpy only; the application turns a trained encoder
into register values, `econ_emd.econt_export`).

What the ASIC needs to run an encoder (every register `econt.registers` reads for it):
- `Algorithm.Global.select: 4` (the autoencoder) and `density` (the float-to-fix of the
  input codes: 1 bit dropped at low density, 3 at high density);
- `Encoder`: the 2,144 six-bit weights in 12 blocks (`econt.registers.ae_register_words`;
  the dense kernel output-major, `econt.autoencoder.AeWeights.to_register_values`);
- `FormatterBuffer.Global`: `active_etxs`, the output links (a count, in this spelling),
  and `mask_ae` / `mask_ae2`, the 144-bit mask of the latent bits the packet keeps (the
  high 128 and the low 16 bits; latent 15 first, MSB first). An encoder trained to send b
  bits per latent keeps the top b bits of each (`top_bits_mask`), and the link count must
  carry all 16 b of them (`econt.formatter.ae_packet_bits`);
- `Mux`: which input trigger cell goes to each AE slot (the module's wiring), and `Cal`,
  its calibration (2048 = 1.0).
The spelling is the older one of the vectors (`Algorithm`, `FormatterBuffer`, `Mux`, `Cal`,
`Encoder`, as `mc_ttbar/AE_8x8_c8_S2_ele_qkeras/init.yaml`), whose input words carry TC
4l+k of link l in bits 7k.. (`econt.links.pack_tc_codes` with its default order).
"""
from __future__ import annotations

import numpy as np
import yaml

from econ_emd.base.geometry import ae_slot_of_calq

from .autoencoder import LATENT_BITS, N_LATENT, AeWeights
from .formatter import ae_packet_bits
from .registers import AE_MASK_BITS, AE_WORD_BITS, AsicConfig, N_TC, ae_register_values, ae_register_words

AUTOENCODER = 4
#: the calibration register's unit gain
CAL_ONE = 2048


def top_bits_mask(latent_bits: int) -> int:
    """The 144-bit `mask_ae` keeping the top `latent_bits` of each 9-bit latent (bit 143 is
    latent 15's MSB, bit 0 latent 0's LSB)."""
    if not 1 <= latent_bits <= LATENT_BITS:
        raise ValueError(f"latent bits {latent_bits}: 1..{LATENT_BITS}")
    one_latent = ((1 << latent_bits) - 1) << (LATENT_BITS - latent_bits)
    return sum(one_latent << (LATENT_BITS * i) for i in range(N_LATENT))


def sent_latent_bits(cfg: AsicConfig) -> int:
    """How many bits of each latent a configuration's packet carries whole (b if the mask
    keeps the top b bits of every latent and all 16 b fit the links; else ValueError)."""
    for b in range(LATENT_BITS, 0, -1):
        if cfg.ae_mask == top_bits_mask(b):
            break
    else:
        raise ValueError(f"mask_ae {cfg.ae_mask:036x} does not keep the top bits of every latent")
    if N_LATENT * b > ae_packet_bits(cfg):
        raise ValueError(f"{cfg.n_etx} links carry {ae_packet_bits(cfg)} latent bits, not the {N_LATENT * b} "
                         f"of {N_LATENT} latents x {b} bits")
    return b


def calq_order_mux() -> tuple[int, ...]:
    """The MUX of a module whose input links carry its trigger cells in CALQ order (input TC
    c is CALQ c, the product's own order): AE slot ae_slot_of_calq[c] takes input c."""
    mux = np.empty(N_TC, dtype=np.int64)
    mux[ae_slot_of_calq()] = np.arange(N_TC)
    return tuple(int(m) for m in mux)


def autoencoder_config(weights: AeWeights, n_links: int, latent_bits: int, mux: tuple[int, ...] | None = None,
                       cal: tuple[int, ...] | None = None, high_density: bool = False) -> AsicConfig:
    """The configuration running `weights` at `n_links` output links, sending the top
    `latent_bits` of each latent (ValueError if the links cannot carry them)."""
    cfg = AsicConfig(algorithm=AUTOENCODER, high_density=high_density, n_etx=n_links,
                     mux=tuple(mux) if mux is not None else calq_order_mux(),
                     cal=tuple(cal) if cal is not None else (CAL_ONE,) * N_TC,
                     ae_mask=top_bits_mask(latent_bits),
                     ae_weight_words=ae_register_words(weights.to_register_values()))
    sent_latent_bits(cfg)
    return cfg


def config_document(cfg: AsicConfig) -> dict:
    """The registers of an autoencoder configuration as the vectors' older spelling."""
    if cfg.algorithm != AUTOENCODER or cfg.ae_weight_words is None:
        raise ValueError("an autoencoder configuration (algorithm 4 with its weights) is expected")
    low = (1 << 16) - 1
    return {
        "Algorithm": {"Global": {"density": int(cfg.high_density), "select": AUTOENCODER}},
        "Cal": {i: int(c) for i, c in enumerate(cfg.cal)},
        "Encoder": {b: dict(zip(AE_WORD_BITS, map(int, words))) for b, words in enumerate(cfg.ae_weight_words)},
        "FormatterBuffer": {"Global": {"active_etxs": int(cfg.n_etx), "mask_ae": cfg.ae_mask >> 16,
                                       "mask_ae2": cfg.ae_mask & low}},
        "Mux": {i: int(m) for i, m in enumerate(cfg.mux)},
    }


def config_yaml(cfg: AsicConfig, comment: str = "") -> str:
    """The init.yaml text (sections and registers in sorted order, as the vectors list them);
    `comment` lines go first, each as a YAML comment."""
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    return head + yaml.safe_dump(config_document(cfg), sort_keys=True, default_flow_style=False)


def round_trip_errors(cfg: AsicConfig, weights: AeWeights, text: str) -> list[str]:
    """What differs after the round trips an exported configuration must survive: register
    values -> register words -> values, words -> weights, and the written text parsed back
    by the emulator's reader (every register equal). Empty when all hold."""
    from .registers import parse_config

    errors = []
    values = weights.to_register_values()
    if not np.array_equal(ae_register_values(ae_register_words(values)), values):
        errors.append("register values -> words -> values differ")
    if AeWeights.from_registers(cfg.ae_weight_words) != weights:
        errors.append("the register words hold other weights")
    if ae_register_words(AeWeights.from_registers(cfg.ae_weight_words).to_register_values()) != cfg.ae_weight_words:
        errors.append("register words -> weights -> words differ")
    parsed = parse_config(yaml.safe_load(text), "exported configuration")
    if parsed != cfg:
        fields = [f for f in cfg.__dataclass_fields__ if getattr(parsed, f) != getattr(cfg, f)]
        errors.append(f"the written file reads back with other registers: {', '.join(fields)}")
    return errors


def mask_hex(mask: int) -> str:
    return f"0x{mask:0{AE_MASK_BITS // 4}x}"
