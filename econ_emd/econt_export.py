"""`econ-emd econt export ENCODER -o init.yaml`: the ECON-T configuration that loads an
encoder trained in the ASIC's arithmetic (`encoder.kind: asic`) into the ASIC.

The file (`econt.export`) holds the register image of the encoder's weights, the mask of
the latent bits its link count sends (the top b of each), algorithm select 4, the active
output links, and the module's MUX, calibration and density. The MUX gives each AE slot
the input its cell enters on (`econt.export.placement_mux`: CMS's packing of a module onto
the input links); calibration and density come from `--module`, an `init.yaml` of the
module (any algorithm's: each input keeps the calibration it gives it), or by default unit
gain at low density (the registers' power-on values).

Nothing is written unless the configuration is proven first:
- the round trips: register values -> words -> values, words -> weights -> words, and the
  written text read back by the emulator's reader with every register equal;
- the emulator on link words: `--check` synthetic modules and the 3,564 simulated crossings
  shipped with the package, turned into input link words (4E3M codes on the links the MUX
  reads), run through `econt.emulator.emulate` on the configuration (what `econ-emd econt
  run` does); every latent bit of every packet must equal the Keras model's transmitted
  latents, computed from the CALQ the emulator's front end made of the words.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from econ_emd.base.errors import CheckFailed, UserError

log = logging.getLogger("econ_emd")

#: synthetic modules the export checks the configuration on, by default
CHECK_MODULES = 10_000
#: the seed of those modules (a fixed set: the same check on every export)
CHECK_SEED = 29


@dataclass(frozen=True)
class ExportResult:
    path: Path
    n_links: int
    latent_bits: int
    mask: str
    crossings_checked: int
    bits_checked: int


def _encoder(path: str):
    from econ_emd.models.asic_encoder import is_asic_encoder, transmitted_bits
    from econ_emd.training.encoder_train import load_encoder

    model = load_encoder(path)
    if not is_asic_encoder(model):
        raise UserError(f"{path}: not an encoder in the ASIC's arithmetic (train one with encoder.kind: asic); "
                        "only such an encoder computes what the ASIC's registers compute")
    return model, transmitted_bits(model)


def _module(path: str | None):
    """The module's configuration (calibration, density) from an init.yaml, or None."""
    if path is None:
        return None
    from econ_emd.econt.registers import load_config

    return load_config(path)


def _links(requested: int | None, latent_bits: int) -> int:
    from econ_emd.econt.link_budget import AE_LINK_COUNTS, latent_bits_for_links

    table = {n: latent_bits_for_links(n) for n in AE_LINK_COUNTS}
    trained_for = next((n for n, b in table.items() if b == latent_bits), None)
    if trained_for is None:
        raise UserError(f"the encoder sends {latent_bits}-bit latents, which no link count of the ASIC's table "
                        f"sends ({table})")
    if requested is None:
        return trained_for
    if requested not in table:
        raise UserError(f"--links {requested}: the autoencoder runs at {min(table)}-{max(table)} output links")
    if requested != trained_for:
        raise UserError(f"--links {requested}: the encoder was trained to send {latent_bits}-bit latents, which the "
                        f"ASIC sends at {trained_for} links ({table[requested]} bits at {requested})")
    return requested


def link_words(calq: np.ndarray, cfg) -> np.ndarray:
    """(n, 12) input words of modules given as integer CALQ in CALQ order: each cell's 4E3M
    code (after the density's dropped bits) on the input it enters the ASIC on
    (`geometry.econt_input_table`), in the configuration's word order."""
    from econ_emd.econt.codes import E4M3, encode
    from econ_emd.econt.links import pack_tc_codes
    from econ_emd.geometry import econt_input_of_calq

    codes = encode(np.asarray(calq, dtype=np.int64), E4M3, 3 if cfg.high_density else 1)
    inputs = np.zeros_like(codes)
    inputs[:, econt_input_of_calq()] = codes
    return pack_tc_codes(inputs, msb_first=cfg.erx_msb_first)


def check_modules(n: int) -> np.ndarray:
    """The modules of the check: `n` synthetic ones and the shipped simulated crossings,
    as integer CALQ in CALQ order."""
    from econ_emd.data.synthetic import generate
    from econ_emd.econt.vectors import simulated_calq
    from econ_emd.training.rebuild import integer_calq

    parts = [integer_calq(generate(n, seed=CHECK_SEED))] if n else []
    return np.concatenate([*parts, simulated_calq()])


def packet_agreement(model, cfg, calq: np.ndarray) -> tuple[int, int]:
    """(crossings whose every sent latent bit equals the model's, bits compared per
    crossing): the emulator on the link words of `calq` against the Keras model on the CALQ
    the emulator's front end made of the same words."""
    from econ_emd.geometry import calq_from_ae_slots
    from econ_emd.econt.autoencoder import LATENT_BITS
    from econ_emd.econt.emulator import emulate
    from econ_emd.econt.formatter import autoencoder_sent_bits, read_autoencoder_packet
    from econ_emd.models.asic_encoder import encoder_image, transmitted_integers, transmitted_bits

    out = emulate(cfg, link_words(calq, cfg))
    _, sent = read_autoencoder_packet(out.tx, cfg)
    z = model.predict(encoder_image(calq_from_ae_slots(out.calq)), batch_size=4096, verbose=0)
    b = transmitted_bits(model)
    keras = transmitted_integers(z, b)
    lat, bit = autoencoder_sent_bits(cfg)
    expected = (keras[:, lat] >> (bit - (LATENT_BITS - b))) & 1
    return int((expected == sent).all(axis=1).sum()), int(len(lat))


def run_export(encoder: str, output: str, links: int | None = None, module: str | None = None,
               check: int = CHECK_MODULES) -> ExportResult:
    """`econ-emd econt export`: the encoder file's configuration, checked on `check`
    synthetic modules and the shipped simulated crossings."""
    out = Path(output)
    if out.is_dir():
        raise UserError(f"--output {output}: is a directory (name the init.yaml to write)")
    folder = next((p for p in out.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise UserError(f"--output {output}: {folder} is not a folder")
    if check < 0:
        raise UserError(f"--check {check}: a number of modules, 0 or more")
    model, _ = _encoder(encoder)
    return export_config(model, out, check_modules(check), links=links, module=module,
                         source=str(Path(encoder).resolve()))


def export_config(model, out: Path, calq: np.ndarray, links: int | None = None, module: str | None = None,
                  source: str = "", final: Path | None = None) -> ExportResult:
    """Write the configuration that runs the asic encoder `model` to `out`, only after the
    round trips hold and the emulator's packets on the link words of `calq` (integer CALQ,
    CALQ order) equal the model's transmitted latents, every bit (`CheckFailed` otherwise;
    nothing written). The one export of the product: `econ-emd econt export` and the
    pipeline's export stage call it. `final`: where the file lives once the caller's work
    folder is renamed into place (the log names it, not the work folder)."""
    from econ_emd.base.artifacts import atomic_write_text
    from econ_emd.econt.export import (autoencoder_config, calibration_of, config_yaml, mask_hex, placement_mux,
                                       round_trip_errors)
    from econ_emd.models.asic_encoder import asic_weights, transmitted_bits

    bits = transmitted_bits(model)
    n_links = _links(links, bits)
    given = _module(module)
    mux = placement_mux()
    try:
        cal = calibration_of(mux, given)
    except ValueError as exc:
        raise UserError(f"--module {module}: {exc}") from None
    weights = asic_weights(model)
    cfg = autoencoder_config(weights, n_links, bits, mux, cal, bool(given and given.high_density))
    comment = (f"ECON-T autoencoder configuration written by econ-emd\n"
               f"encoder: {source}\n"
               f"{n_links} output links, the top {bits} bits of each 9-bit latent (mask {mask_hex(cfg.ae_mask)})\n"
               f"module: {Path(module).resolve() if module else 'CAL 2048, low density'}; the MUX from the cells' "
               f"inputs (CMS's packing)\n"
               f"checked: every latent bit of {len(calq):,} crossings equals the Keras model's")
    text = config_yaml(cfg, comment)
    errors = round_trip_errors(cfg, weights, text)
    if errors:
        raise CheckFailed(f"econt export: the configuration does not survive its round trips: {'; '.join(errors)}")
    identical, n_bits = packet_agreement(model, cfg, calq)
    if identical != len(calq):
        raise CheckFailed(f"econt export: the emulator's packets differ from the Keras model's latents in "
                          f"{len(calq) - identical:,} of {len(calq):,} crossings; nothing written")
    atomic_write_text(out, text)
    log.info("econt export: %s: %d links, %d-bit latents (mask %s); every latent bit of %s crossings "
             "(%d bits each) equals the Keras model's", final or out, n_links, bits, mask_hex(cfg.ae_mask),
             f"{len(calq):,}", n_bits)
    return ExportResult(out, n_links, bits, mask_hex(cfg.ae_mask), len(calq), n_bits)
