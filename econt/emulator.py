"""One ECON-T run: input link words and a configuration in, output link words out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econ_emd.econt import algorithms as alg
from econ_emd.econt import autoencoder
from econ_emd.econt import formatter as fmt
from econ_emd.econt.links import bx_counter, unpack_tc_codes
from econ_emd.econt.registers import AsicConfig


@dataclass(frozen=True)
class EmulatorOutput:
    tx: np.ndarray          # (n_bx, 13) output link words
    calq: np.ndarray        # (n_bx, 48) calibrated TC charges after the MUX
    bx: np.ndarray          # (n_bx,) bunch-crossing counter
    truncated: np.ndarray   # (n_bx,) the buffer sent a truncated packet


def frames_for(cfg: AsicConfig, q: np.ndarray, bx: np.ndarray, latents=None) -> fmt.Frames:
    if cfg.algorithm == 0:
        return fmt.threshold_sum_frames(q, bx, cfg)
    if cfg.algorithm == 1:
        return fmt.super_trigger_cell_frames(q, bx, cfg)
    if cfg.algorithm == 2:
        return fmt.best_choice_frames(q, bx, cfg)
    if cfg.algorithm == 3:
        return fmt.repeater_frames(q, bx, cfg)
    if latents is None:
        latents = autoencoder.encode(q, autoencoder.AeWeights.from_registers(cfg.ae_weight_words))
    return fmt.autoencoder_frames(latents, alg.module_sum_5e4m(q), bx, cfg)


def front_end(cfg: AsicConfig, rx: np.ndarray) -> np.ndarray:
    """(n_bx, 48) CALQ of input words: unpack, MUX, float-to-fix, calibrate."""
    return alg.calq(unpack_tc_codes(np.asarray(rx, dtype=np.int64), cfg.erx_msb_first), cfg)


def cells_in_calq_order(cfg: AsicConfig, rx: np.ndarray) -> np.ndarray:
    """(n_bx, 48) CALQ of every trigger cell in CALQ order, each read from the input TC it
    enters the ECON-T on (`geometry.econt_input_table`, CMS's packing of a module onto the
    input links: four TCs a word from the bits next to the header down), whatever the
    configuration's MUX does with it: the configuration gives the density and the
    calibration (each input gets the CAL register of the TC its MUX makes of it). Where a cell sits is a fact of the module, not of the
    algorithm's MUX (which orders TCs for the algorithm, and for the autoencoder of the
    golden vectors does not even give its slot layout)."""
    from dataclasses import replace

    from econ_emd.base.errors import ConfigError
    from econ_emd.geometry import econt_input_of_calq

    mux = np.asarray(cfg.mux, dtype=np.int64)
    if sorted(mux.tolist()) != list(range(len(mux))):
        twice = sorted({int(m) for m in mux if (mux == m).sum() > 1})
        raise ConfigError(f"Mux: input {twice[0] if twice else '?'} is taken more than once, so the "
                          "calibration of each input is ambiguous (the cells need every input once)")
    cal_of_input = np.empty(len(mux), dtype=np.int64)
    cal_of_input[mux] = np.asarray(cfg.cal, dtype=np.int64)
    inputs = econt_input_of_calq()
    placed = replace(cfg, mux=tuple(int(i) for i in inputs), cal=tuple(int(c) for c in cal_of_input[inputs]),
                     erx_msb_first=True)
    return front_end(placed, rx)


#: crossings formatted at once: the packets' bit matrices (up to ~400 bytes a crossing)
#: stay small however long the input is; the buffer then runs over all of them
CHUNK = 1 << 16


def _all_frames(cfg: AsicConfig, q: np.ndarray, bx: np.ndarray, latents) -> fmt.Frames:
    n = len(q)
    # int32: an idle word, (BX << 11) + a 16-bit sync word, can exceed 16 bits
    words = np.empty((n, fmt.FRAME_WORDS), dtype=np.int32)
    n_words = np.empty(n, dtype=np.int64)
    truncated = np.empty((n, 2), dtype=np.int32)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        part = frames_for(cfg, q[lo:hi], bx[lo:hi], None if latents is None else latents[lo:hi])
        words[lo:hi], n_words[lo:hi], truncated[lo:hi] = part.words, part.n_words, part.truncated
    return fmt.Frames(words=words, n_words=n_words, truncated=truncated)


def emulate(cfg: AsicConfig, rx: np.ndarray, latents: np.ndarray | None = None) -> EmulatorOutput:
    """The output words of every crossing of `rx` ((n_bx, 12) input words)."""
    rx = np.asarray(rx, dtype=np.int64)
    q = front_end(cfg, rx)
    bx = bx_counter(rx)
    tx, truncated = fmt.buffer(_all_frames(cfg, q, bx, latents), cfg)
    return EmulatorOutput(tx=tx, calq=q, bx=bx, truncated=truncated)
