"""The autoencoder against ECON-T's own algorithms at equal output bandwidth, on the same
rules, and the reference codes every front-end algorithm must beat.

For N output links, each algorithm sends what the ASIC sends at N links, and the module is
rebuilt from that alone (`training.rebuild`: the product's rule, `learned`, which fills
what a packet does not say with what training modules of the same kind say, and CMS's own
rules, `cmssw`, beside it); the product's autoencoder is its decoder's pattern scaled to
the transmitted 5E4M module sum; the reference codes (sum only, the average module, a
linear code at the autoencoder's bits) are rebuilt the same way. Every module is judged by
exact EMD (unit-sum images), with a bootstrap interval of the median, by occupancy, the
ratio of rebuilt to true module energy, and the shift of the energy-weighted centroid.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from econ_emd.geometry import tc_centres

from .evaluation import Distribution, evaluate_reconstruction
from .rebuild import RULES, transmitted_sum

#: bootstrap resamples of the medians' intervals
BOOTSTRAP = 400


def autoencoder_energies(calq: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """The decoder's pattern rescaled to the transmitted (5E4M) module sum."""
    r = np.maximum(np.asarray(recon, dtype=np.float64), 0)
    total = transmitted_sum(calq)
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


def median_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = BOOTSTRAP) -> list[float]:
    """The 16-84% bootstrap interval of the median (modules resampled)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return [float("nan"), float("nan")]
    meds = np.median(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1)
    lo, hi = np.percentile(meds, [16, 84])
    return [float(lo), float(hi)]


@dataclass
class Judged:
    """One row: an algorithm (with its rule) at N links on one set of modules."""

    algorithm: str
    n_links: int
    emd: dict = field(default_factory=dict)            # Evaluation as JSON
    median_interval: list = field(default_factory=list)  # 16-84% bootstrap interval of the median
    occupancy_intervals: list = field(default_factory=list)  # per occupancy bin, the same
    energy_ratio: dict = field(default_factory=dict)   # Distribution as JSON
    centroid_shift_cm: dict = field(default_factory=dict)
    note: str = ""
    kind: str = "algorithm"                             # algorithm | reference | autoencoder
    #: several trainings pooled in one row: each one's median, in seed order (the spread
    #: between seeds that the pooled median and its interval fold together)
    seed_medians: list = field(default_factory=list)

    @property
    def median_emd(self) -> float:
        return self.emd["overall"]["median"]


def judge(name: str, n_links: int, calq: np.ndarray, energies: np.ndarray, runner=None, note: str = "",
          kind: str = "algorithm", seed: int = 0, seeds: int = 1) -> Judged:
    """One row judged by exact EMD; `seeds` > 1: the modules are that many trainings'
    rebuilds of the same modules one after the other, and each one's median is kept too."""
    from econ_emd.data.synthetic import occupancy

    from .evaluation import OCC_BINS

    charges = calq.astype(np.float64)
    evaluation, emd = evaluate_reconstruction(charges, energies.copy(), runner)
    rng = np.random.default_rng(seed)
    occ = occupancy(charges)
    occ_ci = [median_interval(emd[(occ >= lo) & (occ < hi)], rng) for lo, hi in zip(OCC_BINS[:-1], OCC_BINS[1:])]
    ratio = energies.sum(1) / charges.sum(1)
    shift = centroid_shift(charges, energies)
    per_seed = [float(np.median(part)) for part in np.array_split(emd, seeds)] if seeds > 1 else []
    if per_seed:
        note = f"{note}; seeds' medians {min(per_seed):.3f}-{max(per_seed):.3f}"
    return Judged(name, n_links, evaluation.to_json(), median_interval(emd, rng), occ_ci,
                  asdict(Distribution.of(ratio)), asdict(Distribution.of(shift[np.isfinite(shift)])), note, kind,
                  per_seed)


def row_name(algorithm: str, rule: str) -> str:
    """The table's name of an algorithm rebuilt by a rule (the product's rule unmarked)."""
    return algorithm if rule == "learned" else f"{algorithm} (CMS rule)"


def conventional(calq: np.ndarray, n_links: int, threshold: int, drop_lsb: int, shapes, runner=None) -> list[Judged]:
    """The ASIC's three conventional algorithms at N links, each with both rebuild rules."""
    from econ_emd.econt import algorithms as alg

    from . import rebuild as rb

    out = []
    for rule in RULES:
        s = shapes if rule == "learned" else None
        ts, truncated = rb.threshold_sum_energies(calq, n_links, threshold, drop_lsb, rule, s)
        out += [judge(row_name("best_choice", rule), n_links, calq,
                      rb.best_choice_energies(calq, n_links, drop_lsb, rule, s), runner,
                      f"{alg.BC_TCS_PER_LINKS[n_links]} TCs"),
                judge(row_name("super_trigger_cells", rule), n_links, calq,
                      rb.super_trigger_cell_energies(calq, n_links, drop_lsb, rule, s), runner,
                      f"type {rb.stc_type_for(n_links)}"),
                judge(row_name("threshold_sum", rule), n_links, calq, ts, runner, f"{100 * truncated:.1f}% truncated")]
    return out


def references(calq: np.ndarray, n_links: int, shapes, linear, runner=None) -> list[Judged]:
    """The reference codes at N links: sum only, the average module, the linear code."""
    from . import rebuild as rb

    return [judge("sum only", n_links, calq, rb.sum_only_energies(calq), runner, "every TC equal", "reference"),
            judge("average module", n_links, calq, rb.average_module_energies(calq, shapes), runner,
                  "the training modules' mean shape", "reference"),
            judge("linear code", n_links, calq, linear.energies(calq, n_links), runner,
                  f"16 principal components x {rb.latent_bits_for_links(n_links)} bits", "reference")]


def weighted_summary(rows: list[Judged], weights: dict[int, float]) -> dict[str, float]:
    """Per row name present at every weighted link count: the median exact EMD averaged
    over link counts with the detector's weights (how many modules run each)."""
    names = {r.algorithm for r in rows}
    out = {}
    for name in sorted(names):
        by_n = {r.n_links: r.median_emd for r in rows if r.algorithm == name}
        if set(weights) <= set(by_n):
            out[name] = float(sum(w * by_n[n] for n, w in weights.items()) / sum(weights.values()))
    return out


def verdicts(rows: list[Judged], encoder: str) -> dict[str, dict]:
    """Per link count: the best row, whether `encoder` beats each reference code and each
    algorithm (its median below theirs), and by how much."""
    out = {}
    for n in sorted({r.n_links for r in rows}):
        here = {r.algorithm: r for r in rows if r.n_links == n}
        best = min(here.values(), key=lambda r: r.median_emd)
        v = {"best": best.algorithm, "best_median": best.median_emd}
        if encoder in here:
            e = here[encoder].median_emd
            v["encoder_median"] = e
            v["encoder_vs"] = {name: {"ratio": e / r.median_emd, "beats": e < r.median_emd}
                               for name, r in here.items() if name != encoder}
        out[str(n)] = v
    return out


def markdown(rows: list[Judged], title: str) -> str:
    """Two tables: overall (exact EMD median with its bootstrap interval and 16-84% band,
    energy ratio, centroid shift), and the median exact EMD by occupancy."""
    from econ_emd.base.tables import markdown_table

    def band(d):
        return f"{d['median']:.3f} ({d['p16']:.3f}-{d['p84']:.3f})" if d.get("n") else "-"

    ordered = sorted(rows, key=lambda r: (r.n_links, r.median_emd))
    table = [[str(r.n_links), r.algorithm, f"{r.median_emd:.3f} [{r.median_interval[0]:.3f}, {r.median_interval[1]:.3f}]",
              band(r.emd["overall"]), band(r.energy_ratio), band(r.centroid_shift_cm), r.note] for r in ordered]
    head = ["links", "algorithm", "median exact EMD [16-84% bootstrap]", "exact EMD (16-84% of modules)",
            "energy ratio", "centroid shift cm", "note"]
    bins = ordered[0].emd["by_occupancy"] if ordered else []
    live = [i for i, b in enumerate(bins) if any(r.emd["by_occupancy"][i]["n"] for r in ordered)]
    occ_head = ["links", "algorithm", *(f"occ {bins[i]['lo']:g}-{bins[i]['hi']:g}" for i in live)]
    occ = [[str(r.n_links), r.algorithm, *(f"{r.emd['by_occupancy'][i]['median']:.3f} "
                                           f"[{r.occupancy_intervals[i][0]:.3f}, {r.occupancy_intervals[i][1]:.3f}]"
                                           if r.emd["by_occupancy"][i]["n"] else "-" for i in live)]
           for r in ordered]
    return "\n".join([f"### {title}", "", *markdown_table(head, table), "",
                      "Median exact EMD by occupancy (TCs above 1 MIP_T), with its 16-84% bootstrap interval:", "",
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
    """The CMS test-vector autoencoder (an electron-trained model, the vectors' README says)
    as the ECON-T computes it, then its decoder: the published weights on the registers'
    1/32 grid as QKeras quantizes them (nearest step, the dense kernel as trained:
    `econt.autoencoder.AeWeights.from_keras`), the block's exact arithmetic on the module
    in AE-slot order (its 9-bit latents), the float decoder, rescaled to the transmitted
    5E4M module sum."""
    import tensorflow as tf

    from econ_emd.econt import autoencoder as ae
    from econ_emd.geometry import ae_slots_from_calq, image8x8_to_calq

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

