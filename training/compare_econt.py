"""The autoencoder against ECON-T's own algorithms at equal output bandwidth.

For N output links, each algorithm sends what the ASIC sends at N links, and the module is
rebuilt from that alone (the "decoded energies"):
- best choice: the BC_TCS_PER_LINKS[N] largest TCs (after DropLSB), each at its 4E3M value,
  and the packet's 5E3M sum of the TCs not sent spread evenly over them;
- super trigger cells: the ASIC's STC type that covers the whole module at N links (N = 2:
  three STC16 with 5E4M sums; N = 3: twelve CTC4 with 4E3M sums and no address, spread
  evenly over their 4 TCs; N = 4: twelve STC4, 4E3M; N >= 5: twelve STC4, 5E4M), each
  group's energy on its address TC (the largest);
- threshold sum: the TCs at or above the threshold at their 4E3M value (and the sum of
  those below spread evenly over them, as for best choice), through the
  formatter buffer drained at 2N words per crossing (T1 = 24 N words, as the CMS
  threshold-sum vectors set it; T2/T3 off); a truncated crossing carries only its module
  sum, spread evenly over the 48 TCs;
- the autoencoder: the decoder's output on the latents (already cut to the link count's
  bits by the encoder's quantizer), rescaled to the transmitted 5E4M module sum.
Codes are read back at the centre of their bin, and a zero code as zero (`received`).
Every algorithm sees the same integer CALQ, MUXed so that runs of 4 TCs are 2x2 blocks
(`geometry.stc_order`). The module is judged by exact EMD (unit-sum images), the
ratio of decoded to true module energy, and the shift of the energy-weighted centroid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from econ_emd.geometry import stc_order, tc_centres
from econ_emd.econt import algorithms as alg
from econ_emd.econt import formatter as fmt
from econ_emd.econt.codes import E4M3, E5M3, E5M4, decode, encode
from econ_emd.econt.registers import AsicConfig

from .evaluation import Distribution, evaluate_reconstruction

ALGORITHMS = ("best_choice", "super_trigger_cells", "threshold_sum")
#: STC type covering all 48 TCs at N links (N >= 5: type 0)
STC_TYPE_FOR_LINKS = {1: 1, 2: 1, 3: 2, 4: 3}


def stc_type_for(n_links: int) -> int:
    return STC_TYPE_FOR_LINKS.get(n_links, 0)


def integer_calq(charges: np.ndarray) -> np.ndarray:
    """The integer CALQ the ASIC sees (charges rounded, saturated at 22 bits)."""
    return np.clip(np.rint(charges), 0, (1 << 22) - 1).astype(np.int64)


def received(codes: np.ndarray, code, drop: int = 0) -> np.ndarray:
    """What the back end rebuilds from transmitted codes: the bin centre, and 0 for a zero
    code (an empty TC or group, rather than half a bin of energy everywhere)."""
    return np.where(codes == 0, 0, decode(codes, code, drop)).astype(np.float64)


def _muxed(calq: np.ndarray) -> np.ndarray:
    return calq[:, stc_order()]


def _unmux(energies: np.ndarray) -> np.ndarray:
    out = np.empty_like(energies)
    out[:, stc_order()] = energies
    return out


def _with_remainder(kept: np.ndarray, energies: np.ndarray, remainder: np.ndarray) -> np.ndarray:
    """Kept TCs at their values; the packet's sum of the TCs not sent spread evenly over them."""
    n_rest = (~kept).sum(1)
    share = np.where(n_rest > 0, remainder / np.maximum(n_rest, 1), 0)
    return np.where(kept, energies, share[:, None])


def best_choice_energies(calq: np.ndarray, n_links: int, drop_lsb: int) -> np.ndarray:
    q = _muxed(calq)
    bc = alg.best_choice(q, drop_lsb, alg.BC_TCS_PER_LINKS[n_links])
    rest = received(bc.sum_not_sent, E5M3, drop_lsb)     # the sum is of the sorter's (dropped) values
    return _unmux(_with_remainder(bc.kept, received(bc.codes, E4M3, drop_lsb), rest))


def super_trigger_cell_energies(calq: np.ndarray, n_links: int, drop_lsb: int) -> np.ndarray:
    t = stc_type_for(n_links)
    q = _muxed(calq)
    size = 16 if t == 1 else 4
    stc = alg.super_trigger_cells(q, size)
    n, groups = stc.sums.shape
    if t in (0, 1):
        energy = received(encode(stc.sums, E5M4), E5M4)
    else:
        energy = received(encode(stc.sums >> drop_lsb, E4M3), E4M3, drop_lsb)
    out = np.zeros((n, groups, size), dtype=np.float64)
    if t == 2:
        out[:] = (energy / size)[:, :, None]
    else:
        np.put_along_axis(out, stc.address[:, :, None], energy[:, :, None], axis=2)
    return _unmux(out.reshape(n, 48))


def threshold_sum_energies(calq: np.ndarray, n_links: int, threshold: int, drop_lsb: int) -> tuple[np.ndarray, float]:
    """Decoded energies and the fraction of crossings the buffer truncated."""
    q = _muxed(calq)
    cfg = AsicConfig(algorithm=0, high_density=True, n_etx=n_links, threshold=(threshold,) * 48,
                     drop_lsb=drop_lsb, buff_t1=min(24 * n_links, 400), buff_t2=511, buff_t3=0)
    frames = fmt.threshold_sum_frames(q, np.arange(len(q)) % 3564, cfg)
    _, truncated = fmt.buffer(frames, cfg)
    ts = alg.threshold_sum(q, cfg.threshold, drop_lsb)
    energies = _with_remainder(ts.kept, received(ts.codes, E4M3, drop_lsb), received(ts.sum_not_sent, E5M3))
    spread = received(ts.sum_all, E5M3) / 48
    energies[truncated] = spread[truncated, None]
    return _unmux(energies), float(truncated.mean())


def autoencoder_energies(calq: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """The decoder's output rescaled to the transmitted (5E4M) module sum."""
    r = np.maximum(np.asarray(recon, dtype=np.float64), 0)
    total = received(alg.module_sum_5e4m(calq), E5M4)
    s = r.sum(1)
    return np.where(s[:, None] > 0, r * (total / np.where(s > 0, s, 1))[:, None], 0)


def centroid_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (cm) between the energy-weighted centroids of two modules (NaN if one is empty)."""
    from econ_emd.geometry import COORD_SCALE

    c = tc_centres() * COORD_SCALE
    sa, sb = a.sum(1), b.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ca = (a @ c) / sa[:, None]
        cb = (b @ c) / sb[:, None]
    return np.linalg.norm(ca - cb, axis=1)


@dataclass
class Judged:
    algorithm: str
    n_links: int
    emd: dict = field(default_factory=dict)            # Evaluation as JSON
    energy_ratio: dict = field(default_factory=dict)   # Distribution as JSON
    centroid_shift_cm: dict = field(default_factory=dict)
    note: str = ""

    @property
    def median_emd(self) -> float:
        return self.emd["overall"]["median"]


def judge(name: str, n_links: int, calq: np.ndarray, energies: np.ndarray, runner=None, note: str = "") -> Judged:
    charges = calq.astype(np.float64)
    evaluation, _ = evaluate_reconstruction(charges, energies.copy(), runner)
    ratio = energies.sum(1) / charges.sum(1)
    shift = centroid_shift(charges, energies)
    return Judged(name, n_links, evaluation.to_json(), asdict(Distribution.of(ratio)),
                  asdict(Distribution.of(shift[np.isfinite(shift)])), note)


def conventional(calq: np.ndarray, n_links: int, threshold: int, drop_lsb: int, runner=None) -> list[Judged]:
    """The ASIC's three conventional algorithms at N links, judged."""
    ts, truncated = threshold_sum_energies(calq, n_links, threshold, drop_lsb)
    return [judge("best_choice", n_links, calq, best_choice_energies(calq, n_links, drop_lsb), runner,
                  f"{alg.BC_TCS_PER_LINKS[n_links]} TCs"),
            judge("super_trigger_cells", n_links, calq, super_trigger_cell_energies(calq, n_links, drop_lsb),
                  runner, f"type {stc_type_for(n_links)}"),
            judge("threshold_sum", n_links, calq, ts, runner, f"{100 * truncated:.1f}% truncated")]


def markdown(rows: list[Judged], title: str) -> str:
    """Two tables: overall (exact EMD, energy ratio, centroid shift: median and 16-84%), and
    the median exact EMD by occupancy (TCs above 1 MIP_T)."""
    from econ_emd.base.tables import markdown_table

    def band(d):
        return f"{d['median']:.3f} ({d['p16']:.3f}-{d['p84']:.3f})" if d.get("n") else "-"

    ordered = sorted(rows, key=lambda r: (r.n_links, r.median_emd))
    table = [[str(r.n_links), r.algorithm, band(r.emd["overall"]), band(r.energy_ratio),
              band(r.centroid_shift_cm), r.note] for r in ordered]
    head = ["links", "algorithm", "exact EMD median (16-84%)", "energy ratio", "centroid shift cm", "note"]
    bins = ordered[0].emd["by_occupancy"] if ordered else []
    occ_head = ["links", "algorithm", *(f"occ {b['lo']:g}-{b['hi']:g} (n={b['n']})" for b in bins)]
    occ = [[str(r.n_links), r.algorithm, *(f"{b['median']:.3f}" if b["n"] else "-" for b in r.emd["by_occupancy"])]
           for r in ordered]
    return "\n".join([f"### {title}", "", *markdown_table(head, table), "",
                      "Median exact EMD by occupancy (TCs above 1 MIP_T):", "",
                      *markdown_table(occ_head, occ), ""])


def _weights(path: str) -> dict[str, list[np.ndarray]]:
    """Layer name -> [kernel, bias] of a Keras weights-only HDF5 file."""
    import h5py

    from econ_emd.base.errors import ModelFileError

    try:
        with h5py.File(path, "r") as h:
            out = {}
            for name in h.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                group = h[name]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    out[name] = [np.asarray(group[n]) for n in names]
            return out
    except (OSError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a Keras weights file ({exc})") from None


def cms_autoencoder_energies(calq: np.ndarray, encoder_h5: str, decoder_h5: str) -> np.ndarray:
    """The CMS autoencoder as the ECON-T computes it, then its decoder: the published weights
    on the registers' 1/32 grid as QKeras quantizes them (nearest step, the dense kernel as
    trained: `econt.autoencoder.AeWeights.from_keras`), the block's exact arithmetic on the
    module in AE-slot order (its 9-bit latents), the float decoder, rescaled to the
    transmitted 5E4M module sum."""
    import tensorflow as tf

    from econ_emd.geometry import ae_slots_from_calq, image8x8_to_calq
    from econ_emd.econt import autoencoder as ae

    enc_w, dec_w = _weights(encoder_h5), _weights(decoder_h5)
    weights = ae.AeWeights.from_keras(*enc_w["conv2d"], *enc_w["encoded_vector"])
    q = np.asarray(calq, dtype=np.int64)
    z = ae.encode(ae_slots_from_calq(q), weights) * 2.0 ** -ae.DENSE_FRACTION
    decoder = tf.keras.Sequential([
        tf.keras.Input((16,)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Reshape((4, 4, 8)),
        tf.keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
        tf.keras.layers.Conv2DTranspose(1, 3, padding="same"),
        tf.keras.layers.Activation("sigmoid")])
    for layer, name in zip([decoder.layers[0], decoder.layers[2], decoder.layers[3]],
                           ["dense", "conv2d_transpose", "conv2d_transpose_1"]):
        layer.set_weights(dec_w[name])
    recon = image8x8_to_calq(decoder.predict(z.astype(np.float32), batch_size=4096, verbose=0))
    return autoencoder_energies(calq, recon)
