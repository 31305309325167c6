"""How the back end rebuilds a module from what an ECON-T algorithm sent, and the reference
codes every algorithm is measured against.

Each conventional algorithm is rebuilt by one of two rules (`RULES`):

* ``learned`` (the product's: the best its packet allows): what the packet says is used
  as it is, and what it does not say is filled with what training modules of the same kind
  say on average (`RebuildShapes`, fitted on training data only). The remainder a best-
  choice or threshold-sum packet carries (the 5E3M sum of the TCs it did not send) is
  spread over the unsent TCs in proportion to the training modules' mean charge per TC; a
  super trigger cell's sum is shared over its TCs by the mean shares of the training
  modules' groups with the same group and address (the address is the group's largest TC),
  a coarse trigger cell's (no address) by the mean shares of its group; a truncated
  threshold-sum crossing's module sum by the mean charge per TC.
* ``cmssw``: the rules of CMS's own code, shown beside: unsent TCs are zero (best choice
  and threshold sum, as CMS's evaluation of the algorithms does), a super trigger cell's
  sum sits on its address TC (CMSSW), a coarse trigger cell's sum is shared evenly.

So every algorithm gets the same kind of prior knowledge, and the comparison does not rest
on one algorithm's rule being kinder than another's. The reference codes, at the
autoencoder's bits: ``sum only`` (the module sum, every TC equal), ``average module`` (the
module sum in the training modules' average shape, whatever the input), and a ``linear
code`` (principal components of the training modules, 16 coefficients of the link
count's latent width, the same bits as the autoencoder's latents).

Every function takes integer CALQ (n, 48) in CALQ order and returns rebuilt energies in
CALQ order. The algorithms see the module MUXed so that runs of 4 TCs are 2x2 blocks
(`geometry.stc_order`), as an ECON-T set up for super trigger cells does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econ_emd.econt import algorithms as alg
from econ_emd.econt import formatter as fmt
from econ_emd.econt.codes import E4M3, E5M3, E5M4, decode, encode
from econ_emd.econt.link_budget import latent_bits_for_links
from econ_emd.econt.registers import AsicConfig
from econ_emd.geometry import N_TC, stc_order

#: the rebuild rules of the conventional algorithms: the product's, and CMS's own
RULES = ("learned", "cmssw")
#: the algorithms rebuilt by a rule
ALGORITHMS = ("best_choice", "super_trigger_cells", "threshold_sum")
#: STC type covering all 48 TCs at N links (N >= 5: type 0)
STC_TYPE_FOR_LINKS = {1: 1, 2: 1, 3: 2, 4: 3}
#: principal components of the linear code: one per autoencoder latent
LINEAR_COMPONENTS = 16
#: the linear code's coefficient range: these percentiles of the training coefficients
LINEAR_RANGE_PERCENTILES = (0.5, 99.5)


def stc_type_for(n_links: int) -> int:
    return STC_TYPE_FOR_LINKS.get(n_links, 0)


def integer_calq(charges: np.ndarray) -> np.ndarray:
    """The integer CALQ the ASIC sees (charges rounded, saturated at 22 bits)."""
    return np.clip(np.rint(charges), 0, (1 << 22) - 1).astype(np.int64)


def received(codes: np.ndarray, code, drop: int = 0) -> np.ndarray:
    """What the back end reads from transmitted codes: the bin centre, and 0 for a zero
    code (an empty TC or group, rather than half a bin of energy everywhere)."""
    return np.where(codes == 0, 0, decode(codes, code, drop)).astype(np.float64)


def _muxed(calq: np.ndarray) -> np.ndarray:
    return np.asarray(calq)[:, stc_order()]


def _unmux(energies: np.ndarray) -> np.ndarray:
    out = np.empty_like(energies)
    out[:, stc_order()] = energies
    return out


@dataclass(frozen=True, eq=False)       # holds arrays: compared by identity
class RebuildShapes:
    """What the back end knows before any packet arrives, from training modules only.

    `cell_profile`: (48,) mean share of the module sum per TC, in MUXed order.
    `group_shapes[size]`: (groups, size + 1, size) the mean share of each TC of a group of
    `size` (4 or 16) given the group and its address (index `size`: any address, for the
    coarse trigger cells that send none)."""

    cell_profile: np.ndarray
    group_shapes: dict[int, np.ndarray]


def _unit(x: np.ndarray) -> np.ndarray:
    s = x.sum(axis=-1, keepdims=True)
    return np.divide(x, s, out=np.full_like(x, 1.0 / x.shape[-1]), where=s > 0)


def fit_shapes(train_calq: np.ndarray) -> RebuildShapes:
    """The mean shapes of training modules (never test modules: the caller's contract)."""
    q = _muxed(np.asarray(train_calq, dtype=np.float64))
    q = q[q.sum(1) > 0]
    if not len(q):
        raise ValueError("fitting rebuild shapes needs training modules with charge")
    profile = _unit(q).mean(axis=0)
    shapes = {}
    for size in (4, 16):
        groups = N_TC // size
        blocks = q.reshape(len(q), groups, size)
        shares = _unit(blocks)                                          # (n, groups, size)
        has = blocks.sum(axis=2) > 0
        address = alg.super_trigger_cells(q.astype(np.int64), size).address  # (n, groups)
        table = np.empty((groups, size + 1, size))
        for g in range(groups):
            live = has[:, g]
            pooled = shares[live, g].mean(axis=0) if live.any() else np.full(size, 1.0 / size)
            table[g, size] = pooled
            for a in range(size):
                sel = live & (address[:, g] == a)
                table[g, a] = shares[sel, g].mean(axis=0) if sel.any() else pooled
        shapes[size] = table
    return RebuildShapes(cell_profile=profile, group_shapes=shapes)


def _spread(kept: np.ndarray, energies: np.ndarray, remainder: np.ndarray, rule: str,
            shapes: RebuildShapes | None) -> np.ndarray:
    """Kept TCs at their values; the remainder over the others by `rule` (cmssw: dropped)."""
    if rule == "cmssw":
        return np.where(kept, energies, 0.0)
    weight = np.where(kept, 0.0, shapes.cell_profile[None, :])
    total = weight.sum(axis=1, keepdims=True)
    even = np.where(kept, 0.0, 1.0)
    weight = np.where(total > 0, weight / np.where(total > 0, total, 1), even / np.maximum(even.sum(1, keepdims=True), 1))
    return np.where(kept, energies, remainder[:, None] * weight)


def _check_rule(rule: str, shapes: RebuildShapes | None) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown rebuild rule {rule!r} (choose from {', '.join(RULES)})")
    if rule == "learned" and shapes is None:
        raise ValueError("the learned rule needs the training modules' shapes (fit_shapes)")


def best_choice_energies(calq: np.ndarray, n_links: int, drop_lsb: int, rule: str = "learned",
                         shapes: RebuildShapes | None = None) -> np.ndarray:
    _check_rule(rule, shapes)
    q = _muxed(calq)
    bc = alg.best_choice(q, drop_lsb, alg.BC_TCS_PER_LINKS[n_links])
    rest = received(bc.sum_not_sent, E5M3, drop_lsb)     # the sum is of the sorter's (dropped) values
    return _unmux(_spread(bc.kept, received(bc.codes, E4M3, drop_lsb), rest, rule, shapes))


def super_trigger_cell_energies(calq: np.ndarray, n_links: int, drop_lsb: int, rule: str = "learned",
                                shapes: RebuildShapes | None = None) -> np.ndarray:
    _check_rule(rule, shapes)
    t = stc_type_for(n_links)
    f = alg.STC_FORMATS[t]
    q = _muxed(calq)
    stc = alg.super_trigger_cells(q, f.size)
    n, groups = stc.sums.shape
    sums = stc.sums >> drop_lsb if f.drop_lsb else stc.sums
    energy = received(encode(sums, f.code), f.code, drop_lsb if f.drop_lsb else 0)
    if rule == "learned":
        table = shapes.group_shapes[f.size]                           # (groups, size + 1, size)
        key = stc.address if f.address_bits else np.full((n, groups), f.size)
        share = table[np.arange(groups)[None, :], key]               # (n, groups, size)
        out = energy[:, :, None] * share
    elif f.address_bits:
        out = np.zeros((n, groups, f.size))
        np.put_along_axis(out, stc.address[:, :, None], energy[:, :, None], axis=2)
    else:
        out = np.repeat((energy / f.size)[:, :, None], f.size, axis=2)
    return _unmux(out.reshape(n, N_TC))


#: threshold-sum buffer of the comparison: T1 = 24 N words (as the CMS threshold-sum
#: vectors set it), T2/T3 off
def _ts_config(n_links: int, threshold: int, drop_lsb: int) -> AsicConfig:
    return AsicConfig(algorithm=0, high_density=True, n_etx=n_links, threshold=(threshold,) * N_TC,
                      drop_lsb=drop_lsb, buff_t1=min(24 * n_links, fmt.BUFFER_WORDS), buff_t2=511, buff_t3=0)


def threshold_sum_energies(calq: np.ndarray, n_links: int, threshold: int, drop_lsb: int, rule: str = "learned",
                           shapes: RebuildShapes | None = None) -> tuple[np.ndarray, float]:
    """Rebuilt energies and the fraction of crossings the buffer truncated (a truncated
    crossing carries only its module sum: spread by the rule, zero for cmssw)."""
    _check_rule(rule, shapes)
    q = _muxed(calq)
    cfg = _ts_config(n_links, threshold, drop_lsb)
    frames = fmt.threshold_sum_frames(q, np.arange(len(q)) % 3564, cfg)
    _, truncated = fmt.buffer(frames, cfg)
    ts = alg.threshold_sum(q, cfg.threshold, drop_lsb)
    energies = _spread(ts.kept, received(ts.codes, E4M3, drop_lsb), received(ts.sum_not_sent, E5M3), rule, shapes)
    total = received(ts.sum_all, E5M3)
    nothing = np.zeros_like(ts.kept)
    energies[truncated] = _spread(nothing[truncated], np.zeros((int(truncated.sum()), N_TC)), total[truncated],
                                  rule, shapes)
    return _unmux(energies), float(truncated.mean())


def transmitted_sum(calq: np.ndarray) -> np.ndarray:
    """The module sum as the autoencoder's packet carries it (5E4M), read back."""
    return received(alg.module_sum_5e4m(np.asarray(calq, dtype=np.int64)), E5M4)


def sum_only_energies(calq: np.ndarray) -> np.ndarray:
    """Reference: only the module sum is sent; every TC gets an equal share."""
    return np.repeat((transmitted_sum(calq) / N_TC)[:, None], N_TC, axis=1)


def average_module_energies(calq: np.ndarray, shapes: RebuildShapes) -> np.ndarray:
    """Reference: the module sum in the training modules' average shape, whatever the input."""
    return transmitted_sum(calq)[:, None] * _unmux(shapes.cell_profile[None, :].repeat(len(calq), axis=0))


@dataclass(frozen=True, eq=False)       # holds arrays: compared by identity
class LinearCode:
    """A linear code of the module's shape at the autoencoder's bits: the training modules'
    principal components (of unit-sum modules), each coefficient quantized uniformly to
    `bits` bits over the training coefficients' range; rebuilt as the mean shape plus the
    quantized coefficients' components, negative TCs cut to zero, scaled to the
    transmitted module sum."""

    mean: np.ndarray          # (48,)
    components: np.ndarray    # (k, 48), orthonormal rows
    low: np.ndarray           # (k,) coefficient range
    high: np.ndarray

    @classmethod
    def fit(cls, train_calq: np.ndarray, n_components: int = LINEAR_COMPONENTS) -> "LinearCode":
        x = _unit(np.asarray(train_calq, dtype=np.float64))
        x = x[np.asarray(train_calq).sum(1) > 0]
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[:n_components]
        coef = (x - mean) @ comps.T
        low, high = np.percentile(coef, LINEAR_RANGE_PERCENTILES, axis=0)
        return cls(mean=mean, components=comps, low=low, high=high)

    def quantize(self, coef: np.ndarray, bits: int) -> np.ndarray:
        levels = (1 << bits) - 1
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        k = np.clip(np.rint((coef - self.low) / span * levels), 0, levels)
        return self.low + k / levels * span

    def energies(self, calq: np.ndarray, n_links: int) -> np.ndarray:
        x = _unit(np.asarray(calq, dtype=np.float64))
        coef = self.quantize((x - self.mean) @ self.components.T, latent_bits_for_links(n_links))
        shape = np.maximum(self.mean + coef @ self.components, 0.0)
        return transmitted_sum(calq)[:, None] * _unit(shape)
