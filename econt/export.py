"""The ECON-T configuration that runs an autoencoder: its register image, written as the
`init.yaml` of the CMS test vectors (numpy only; the application turns a trained encoder
into register values, `econ_emd.econt_export`).

What the ASIC needs to run an encoder (every register `econt.registers` reads for it):
- `Algorithm.Global.select: 4` (the autoencoder) and `density` (the float-to-fix of the
  input codes: 1 bit dropped at low density, 3 at high density);
- `Encoder`: the 2,144 six-bit weights in 12 blocks (`econt.registers.ae_register_words`;
  the dense kernel output-major, `econt.autoencoder.AeWeights.to_register_values`);
- `FormatterBuffer.Global`: `active_etxs`, the output links (a mask of contiguous links,
  in this spelling), and `keep_auto_encoder_bits`, the 144-bit mask of the latent bits
  the packet keeps (latent 15 first, MSB first). An encoder trained to send b bits per
  latent keeps the top b bits of each (`top_bits_mask`), and the link count must carry all
  16 b of them (`econt.link_budget.ae_packet_bits`);
- `Mux`: which input trigger cell goes to each AE slot, and `Cal`, its calibration (2048 =
  1.0). The MUX follows from where each cell enters the ASIC (`geometry.econt_input_table`,
  CMS's packing of a module onto the input links) and the slot the autoencoder's image
  gives it (`geometry.ae_slot_of_calq`): `placement_mux`.
The spelling is the newer one of the vectors (`ConfigAlgo`, `FormatterBuffer`, `Mux`, `Cal`,
`Encoder`, as `mc_ttbar/AE/init.yaml`), whose input words carry TC 4l+k of link l from the
bits next to the header down: the order of that packing.
"""
from __future__ import annotations

import numpy as np
import yaml

from econ_emd.geometry import N_TC, ae_slot_of_calq, econt_input_of_calq

from .autoencoder import LATENT_BITS, N_LATENT, AeWeights
from .link_budget import ae_packet_bits
from .registers import AE_MASK_BITS, AE_WORD_BITS, AsicConfig, ae_register_values, ae_register_words

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
    if N_LATENT * b > ae_packet_bits(cfg.n_etx):
        raise ValueError(f"{cfg.n_etx} links carry {ae_packet_bits(cfg.n_etx)} latent bits, not the {N_LATENT * b} "
                         f"of {N_LATENT} latents x {b} bits")
    return b


def placement_mux() -> tuple[int, ...]:
    """The MUX that gives the autoencoder its image of a module: AE slot ae_slot_of_calq[c]
    takes the input cell c enters the ASIC on (`geometry.econt_input_table`)."""
    mux = np.empty(N_TC, dtype=np.int64)
    mux[ae_slot_of_calq()] = econt_input_of_calq()
    return tuple(int(m) for m in mux)


def calibration_of(mux: tuple[int, ...], module: AsicConfig | None) -> tuple[int, ...]:
    """The CAL registers under `mux` that give every input the calibration `module` gives it
    (a register follows its input through the two MUXes); unit gain without a module."""
    if module is None:
        return (CAL_ONE,) * N_TC
    theirs = np.asarray(module.mux)
    if sorted(theirs.tolist()) != list(range(N_TC)):
        raise ValueError("the module's MUX takes an input more than once: its calibration per input is ambiguous")
    cal_of_input = np.empty(N_TC, dtype=np.int64)
    cal_of_input[theirs] = module.cal
    return tuple(int(c) for c in cal_of_input[np.asarray(mux)])


def autoencoder_config(weights: AeWeights, n_links: int, latent_bits: int, mux: tuple[int, ...] | None = None,
                       cal: tuple[int, ...] | None = None, high_density: bool = False) -> AsicConfig:
    """The configuration running `weights` at `n_links` output links, sending the top
    `latent_bits` of each latent (ValueError if the links cannot carry them)."""
    cfg = AsicConfig(algorithm=AUTOENCODER, high_density=high_density, n_etx=n_links,
                     mux=tuple(mux) if mux is not None else placement_mux(),
                     cal=tuple(cal) if cal is not None else (CAL_ONE,) * N_TC,
                     ae_mask=top_bits_mask(latent_bits),
                     ae_weight_words=ae_register_words(weights.to_register_values()), erx_msb_first=True)
    sent_latent_bits(cfg)
    return cfg


def config_document(cfg: AsicConfig) -> dict:
    """The registers of an autoencoder configuration as the vectors' newer spelling."""
    if cfg.algorithm != AUTOENCODER or cfg.ae_weight_words is None:
        raise ValueError("an autoencoder configuration (algorithm 4 with its weights) is expected")
    if not cfg.erx_msb_first:
        raise ValueError("the newer spelling reads input words from the bits next to the header down")
    return {
        "Cal": {i: int(c) for i, c in enumerate(cfg.cal)},
        "ConfigAlgo": {"Global": {"alg_high_density": int(cfg.high_density), "alg_type": AUTOENCODER}},
        "Encoder": {b: dict(zip(AE_WORD_BITS, map(int, words))) for b, words in enumerate(cfg.ae_weight_words)},
        "FormatterBuffer": {"Global": {"active_etxs": (1 << int(cfg.n_etx)) - 1,
                                       "keep_auto_encoder_bits": int(cfg.ae_mask)}},
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
