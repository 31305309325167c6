"""ECON-T packets, the formatter's 16-bit frame words and the formatter buffer.

Each crossing's packet is a bit string (most significant bit first) cut into 16-bit words;
the frame of a crossing is 26 words: the packet's words, then the idle word. The buffer
(400 x 16 bits) takes the frame, writes `n_words` of it, and every crossing sends its first
2N words on the N output links (two words per 32-bit link word). Only threshold sum has
a variable length; when a frame would overflow threshold T1 (or the buffer is above T2
and the frame is at most T3 words), a two-word truncated packet is written instead.

The buffer follows the CMS emulator (`ASICBlocks/BufferBlock.py`) in every branch,
including three that only unusual registers reach:
* a cell never written holds -1 (the emulator's initial fill) and the link word is
  `first * 2^16 + second` of two cells, as it adds them; a crossing that reads such a
  cell (when truncated packets, which advance the level by 1, leave the 2N words read
  short, e.g. T1 below 2N) sends a negative word (`-0010001` in the vectors' CSV), and an
  idle word above 16 bits (a sync word above 11 bits) carries into its neighbour;
* the frame keeps all of its packet's words even where `n_words` is shorter (the
  repeater below 11 links), so a truncated packet can expose them;
* words that would land past the 400th cell are lost (the CMS emulator stops with a
  numpy broadcast error there: a frame written above cell 374, reachable only with T1
  above 374 or with no output link, which never drains the buffer; this is the product's
  reading of a buffer that cannot hold them), while the level keeps counting them as the
  T1/T2 comparisons do. With no output link every word sent is 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econ_emd.econt import algorithms as alg
from econ_emd.econt.codes import encode
from econ_emd.econt.links import N_ETX, bx_header
from econ_emd.econt.autoencoder import LATENT_BITS, N_LATENT
from econ_emd.econt.link_budget import ae_packet_bits as link_packet_bits
from econ_emd.econt.registers import AE_MASK_BITS, AsicConfig
from econ_emd.geometry import N_TC

FRAME_WORDS = 2 * N_ETX
BUFFER_WORDS = 400
#: what a buffer cell holds before anything is written to it (see the module doc)
UNWRITTEN = -1


class Bits:
    """A (n, n_bits) 0/1 matrix built field by field, most significant bit first."""

    def __init__(self, n: int):
        self.n = n
        self.parts: list[np.ndarray] = []

    def add(self, values, width: int) -> "Bits":
        v = np.asarray(values, dtype=np.int64)
        v = np.full((self.n, 1), v) if v.ndim == 0 else v.reshape(self.n, -1)
        nbytes = next(b for b in (1, 2, 4, 8) if width <= 8 * b)
        # big-endian bytes of each value, unpacked MSB first; the last `width` bits are it
        raw = np.ascontiguousarray(v.astype(f">u{nbytes}")).view(np.uint8)
        bits = np.unpackbits(raw.reshape(self.n, v.shape[1], nbytes), axis=2)
        self.parts.append(bits[:, :, 8 * nbytes - width:].reshape(self.n, -1))
        return self

    def add_bits(self, bits: np.ndarray) -> "Bits":
        self.parts.append(np.asarray(bits, dtype=np.uint8).reshape(self.n, -1))
        return self

    def matrix(self) -> np.ndarray:
        if not self.parts:
            return np.zeros((self.n, 0), dtype=np.uint8)
        return np.concatenate(self.parts, axis=1)


def to_words(bits: np.ndarray, align: int = 16) -> np.ndarray:
    """(n, n_words) 16-bit words of a bit matrix, zero-padded to a multiple of `align`."""
    n, length = bits.shape
    padded = -(-length // align) * align
    if padded != length:
        bits = np.concatenate([bits, np.zeros((n, padded - length), dtype=np.uint8)], axis=1)
    packed = np.packbits(bits, axis=1).astype(np.int64)       # big-endian bytes
    return (packed[:, 0::2] << 8) | packed[:, 1::2]


@dataclass
class Frames:
    """What the formatter hands the buffer, per crossing."""
    words: np.ndarray       # (n, 26) frame words (packet, then idle words)
    n_words: np.ndarray     # (n,) words of the packet
    truncated: np.ndarray   # (n, 2) the truncated packet (threshold sum only; else 0)


def _frames(words: np.ndarray, n_words, idle, truncated=None, lengths=None) -> Frames:
    """The 26-word frames: each row's packet words (`lengths` of them, default all of
    `words`), then idle words; `n_words` is how far the buffer's level advances."""
    n = len(words)
    frame = np.broadcast_to(np.asarray(idle, dtype=np.int64).reshape(-1, 1), (n, FRAME_WORDS)).copy()
    width = min(words.shape[1], FRAME_WORDS)
    n_words = np.broadcast_to(np.asarray(n_words, dtype=np.int64), (n,)).copy()
    if lengths is None:
        frame[:, :width] = words[:, :width]
    else:
        cols = np.arange(width)
        frame[:, :width] = np.where(cols[None, :] < np.asarray(lengths)[:, None], words[:, :width],
                                    frame[:, :width])
    if truncated is None:
        truncated = np.zeros((n, 2), dtype=np.int64)
    return Frames(words=frame, n_words=n_words, truncated=truncated)


def _header4(bx: np.ndarray) -> np.ndarray:
    """The 4-bit header of best choice and STC: the top bit and low 3 bits of the 5-bit one."""
    h = bx_header(bx)
    return ((h >> 4) << 3) | (h & 7)


def best_choice_frames(q: np.ndarray, bx: np.ndarray, cfg: AsicConfig) -> Frames:
    n_tc = alg.BC_TCS_PER_LINKS[cfg.n_etx]
    bc = alg.best_choice(q, cfg.effective_drop_lsb, n_tc)
    n = len(q)
    bits = Bits(n).add(_header4(bx), 4).add(bc.sum_all if cfg.use_sum else bc.sum_not_sent, 8)
    # kept TCs in address order: their addresses (few) or a 48-bit map, then their codes
    order = bc.kept_addresses
    if n_tc < 8:
        bits.add(order, 6)
    else:
        bits.add_bits(bc.kept)
    bits.add(np.take_along_axis(bc.codes, order, axis=1), 7)
    words = to_words(bits.matrix())
    n_words = 2 * cfg.n_etx if cfg.n_etx < N_ETX else FRAME_WORDS - 1
    return _frames(words, n_words, 0)


def super_trigger_cell_frames(q: np.ndarray, bx: np.ndarray, cfg: AsicConfig) -> Frames:
    """Header, then (STC types) the addresses of the groups' largest TCs, then the group
    sums in the type's float code (`algorithms.STC_FORMATS`), in 32-bit words."""
    f = alg.STC_FORMATS[cfg.stc_type]
    table = alg.STC_GROUPS_PER_LINKS[cfg.stc_type]
    n = len(q)
    if cfg.n_etx > len(table):
        # more links than the type uses: nothing is sent, two idle words per crossing
        return _frames(np.zeros((n, 0), dtype=np.int64), 2, 0)
    n_groups = table[cfg.n_etx - 1]
    stc = alg.super_trigger_cells(q, f.size)
    sums = stc.sums[:, :n_groups]
    sums = encode(sums >> cfg.effective_drop_lsb if f.drop_lsb else sums, f.code)
    bits = Bits(n).add(_header4(bx), alg.STC_HEADER_BITS)
    if f.address_bits:
        bits.add(stc.address[:, :n_groups], f.address_bits)
    bits.add(sums, f.code.width)
    words = to_words(bits.matrix(), align=32)
    return _frames(words, words.shape[1], 0)


def repeater_frames(q: np.ndarray, bx: np.ndarray, cfg: AsicConfig) -> Frames:
    codes = alg.repeater(q, cfg.effective_drop_lsb)
    words = to_words(Bits(len(q)).add(bx_header(bx), 5).add(codes, 7).matrix())
    return _frames(words, 2 * cfg.n_etx, 0)


def autoencoder_sent_bits(cfg: AsicConfig) -> tuple[np.ndarray, np.ndarray]:
    """(latent, bit) of each latent bit the packet carries, in packet order: the 144 bits
    latent 15 first (MSB first), those the mask keeps, the last 18 + 32 (N - 1) of them
    (at most 146 bits fit after the header and the sum)."""
    pos = np.arange(N_LATENT * LATENT_BITS)
    latent = N_LATENT - 1 - pos // LATENT_BITS
    bit = LATENT_BITS - 1 - pos % LATENT_BITS
    mask_bits = np.array([(cfg.ae_mask >> (AE_MASK_BITS - 1 - i)) & 1 for i in range(AE_MASK_BITS)], dtype=bool)
    keep = np.flatnonzero(mask_bits)[-ae_packet_bits(cfg):] if ae_packet_bits(cfg) else np.zeros(0, np.int64)
    return latent[keep], bit[keep]


def ae_packet_bits(cfg: AsicConfig) -> int:
    """Latent bits the links carry after the 5-bit header and the 9-bit sum."""
    return link_packet_bits(cfg.n_etx)


def autoencoder_frames(latents: np.ndarray, sum_code: np.ndarray, bx: np.ndarray,
                       cfg: AsicConfig) -> Frames:
    """Header, 9-bit 5E4M sum, then the latent bits the mask keeps (latent 15 first),
    right-aligned in the bits the links carry (18 + 32 (N - 1), at most 146)."""
    n = len(latents)
    lat, bit = autoencoder_sent_bits(cfg)
    n_bits = ae_packet_bits(cfg)
    sent = ((np.asarray(latents, dtype=np.int64)[:, lat] >> bit) & 1).astype(np.uint8)
    if sent.shape[1] < n_bits:
        sent = np.concatenate([np.zeros((n, n_bits - sent.shape[1]), np.uint8), sent], axis=1)
    bits = Bits(n).add(bx_header(bx), 5).add(sum_code, 9).add_bits(sent).matrix()
    words = to_words(bits)
    return _frames(words, words.shape[1], 0)


def read_autoencoder_packet(tx: np.ndarray, cfg: AsicConfig) -> tuple[np.ndarray, np.ndarray]:
    """(module-sum codes (n,), sent latent bits (n, n_sent) in `autoencoder_sent_bits` order)
    of output link words, for a crossing whose packet starts its frame (the autoencoder's
    fixed-size packets never wait in the buffer)."""
    n = len(tx)
    stream = np.zeros((n, 32 * cfg.n_etx), dtype=np.uint8)
    for link in range(cfg.n_etx):
        word = np.asarray(tx[:, link], dtype=np.int64)
        stream[:, 32 * link:32 * (link + 1)] = (word[:, None] >> np.arange(31, -1, -1)) & 1
    sum_code = stream[:, 5:14] @ (1 << np.arange(8, -1, -1))
    lat, _ = autoencoder_sent_bits(cfg)
    n_bits = ae_packet_bits(cfg)
    start = 14 + n_bits - len(lat)
    return sum_code.astype(np.int64), stream[:, start:start + len(lat)]


def threshold_sum_frames(q: np.ndarray, bx: np.ndarray, cfg: AsicConfig) -> Frames:
    """Variable length: no TC above threshold (type 000, one word), 1-7 (010: count and
    6-bit addresses), 8 or more (100: the 48-bit map); then the kept TCs' 4E3M codes."""
    ts = alg.threshold_sum(q, cfg.threshold, cfg.effective_drop_lsb)
    n = len(q)
    header = bx_header(bx)
    idle = (header << 11) + cfg.tx_sync_word
    n_kept = ts.kept.sum(axis=1)
    mod_sum = ts.sum_all if cfg.use_sum else ts.sum_not_sent
    order = np.argsort(~ts.kept, axis=1, kind="stable")
    kept_codes = np.take_along_axis(ts.codes, order, axis=1)
    kept_codes = np.where(np.arange(N_TC)[None, :] < n_kept[:, None], kept_codes, 0)
    words = np.zeros((n, FRAME_WORDS), dtype=np.int64)
    n_words = np.zeros(n, dtype=np.int64)
    for count in np.unique(n_kept):
        rows = np.flatnonzero(n_kept == count)
        kind = 0b000 if count == 0 else 0b010 if count < 8 else 0b100
        b = Bits(len(rows)).add(header[rows], 5).add(kind, 3).add(mod_sum[rows], 8)
        if 0 < count < 8:
            b.add(count, 3).add(order[rows, :count], 6).add(kept_codes[rows, :count], 7)
        elif count >= 8:
            b.add_bits(ts.kept[rows]).add(kept_codes[rows, :count], 7)
        w = to_words(b.matrix())
        words[rows, :w.shape[1]] = w
        n_words[rows] = w.shape[1]
    truncated = np.stack([(header << 11) | (0b110 << 8) | ts.sum_all, idle], axis=1)
    return _frames(words, n_words, idle, truncated, lengths=n_words)


def buffer(frames: Frames, cfg: AsicConfig) -> tuple[np.ndarray, np.ndarray]:
    """(n, 13) output link words and (n,) truncation flags, crossing by crossing."""
    n = len(frames.words)
    read = 2 * cfg.n_etx
    t1, t2, t3 = cfg.buff_t1, cfg.buff_t2, cfg.buff_t3
    out = np.zeros((n, N_ETX), dtype=np.int64)
    flags = np.zeros(n, dtype=bool)
    nw = frames.n_words
    if read and (nw <= read).all() and (nw <= t1).all():
        # the buffer empties every crossing (never above T2, never past T1): each crossing
        # sends the head of its own frame
        sent = frames.words[:, :read].astype(np.int64)
    else:
        sent = _buffer_loop(frames, read, t1, t2, t3, flags)
    if read:
        pairs = sent.reshape(n, cfg.n_etx, 2)
        out[:, :cfg.n_etx] = (pairs[:, :, 0] << 16) + pairs[:, :, 1]
    return out, flags


def _buffer_loop(frames: Frames, read: int, t1: int, t2: int, t3: int,
                 flags: np.ndarray) -> np.ndarray:
    """The buffer crossing by crossing (levels carry over); fills `flags`, returns the
    (n, read) words sent. Branches as the CMS emulator's Buffer (module doc)."""
    n = len(frames.words)
    sent = np.zeros((n, read), dtype=np.int64)
    contents = np.full(BUFFER_WORDS, UNWRITTEN, dtype=np.int64)
    words = frames.words.astype(np.int64)
    truncated = frames.truncated.astype(np.int64)
    clear_bit8 = np.array([~(1 << 8), -1], dtype=np.int64)
    set_bit8 = np.array([1 << 8, 0], dtype=np.int64)
    nw = frames.n_words.astype(np.int64).tolist()
    wp = 0
    for i in range(n):
        size = nw[i]
        if wp + size > t1:
            data, advance, flags[i] = truncated[i] & clear_bit8, 1, True
        elif wp > t2 and size <= t3:
            data, advance, flags[i] = truncated[i] | set_bit8, 1, True
        else:
            data, advance = words[i], size
        end = wp + len(data)
        if end <= BUFFER_WORDS:
            contents[wp:end] = data
        elif wp < BUFFER_WORDS:
            contents[wp:] = data[:BUFFER_WORDS - wp]
        wp += advance
        if read:
            sent[i] = contents[:read]
            contents[:BUFFER_WORDS - read] = contents[read:]
            wp = max(wp - read, 0)
    return sent
