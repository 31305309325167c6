"""Busy HGCAL modules as the detector sees them at 200 pileup, calibrated on simulated ttbar.

The synthetic generator (`data/synthetic.py`) makes sparse modules: a few showers on a thin
pile-up floor. A module near the beam at 200 pileup is nothing like that: in the 3,564
simulated ttbar crossings of the CMS vectors every cell holds charge and the median
crossing has 46 of 48 TCs above 1 MIP_T. This generator models what fills such a module,
and is calibrated on the training part of those crossings (`data/crossings.py`; the fit:
`python -m econ_emd.data.detector_fit`, which never reads the held-out part).

The model, per module (parameters in `DetectorModel`, the fitted values in `CALIBRATION`;
energies in ADC of the TC's uncompressed charge, lengths in half TC pitches):

1. Minimum bias. A crossing-wide pileup level L ~ Gamma(shape `mb_level_shape`, mean 1)
   (the number of interactions and their jets vary from crossing to crossing; this gives
   the weak correlation of far-apart cells). Each TC receives Poisson(L * lambda_j)
   deposits (lambda_j = `mb_deposits_per_tc` at the calibrated place), each of
   `mb_deposit_min_adc` plus a Lomax (Pareto II) draw of scale `mb_deposit_scale_adc`
   whose survival falls as E^-`mb_deposit_tail`: particles' energies follow a power law,
   which gives the cells' long tail (1% of the crossings' cells are above 1,728 ADC, six
   times their median) without the spatial correlation a broad shower would bring.
   A fraction `mb_share` of every deposit spreads to the other TCs with weights
   exp(-d / `mb_share_radius`) (the lateral size of the low-energy particles' showers: the
   short-range correlation of neighbouring cells). Each TC's received weights are
   normalized, so a cell at the module's edge receives as much as one inside (the cells
   beyond the edge deposit like those inside).
2. Position. Minimum-bias particles are spread evenly in pseudorapidity, so at a radius r
   from the beam and a depth z their number per unit area falls as
   1 / (r^2 sqrt(1 + r^2/z^2)) and their energy grows as cosh(eta) = sqrt(1 + z^2/r^2):
   the energy per unit area goes as z / r^3. Each TC's rate and deposit energy follow
   these laws at its own distance from the beam, relative to the calibrated module's
   (the gradient across a module near the beam is the module's largest spatial pattern).
   The calibrated module's distance to the beam and direction are fitted from that
   gradient (`beam_distance`, `beam_angle`); its depth is not recorded in the vectors
   (`REFERENCE_LAYER`).
3. Showers (jets of the hard collision and energetic pileup particles): Poisson(
   `showers_per_module`) per module, centres uniform in a disc of `shower_centre_radius`
   around the module centre (showers beside the module leak in), energies from a falling
   power law E^-`shower_index` on [`shower_energy_min_adc`, `shower_energy_max_adc`] (low
   energies included: most showers are small). A fraction `em_fraction` is
   electromagnetic (an exponential core of radius `em_core_radius` with
   `em_core_fraction` of the energy, and a halo of `em_halo_radius`); the rest hadronic
   (1..`had_subclusters_max` sub-clusters of radius `had_radius` offset by
   ~`had_subcluster_spread`, sharing the energy at random). A TC's share of a shower
   fluctuates as Gamma(mean e, variance `shower_quantum_adc` * e).
4. The detector's own quantization: the summed energy rounded to an integer charge, sent
   as the HGCROC's 7-bit 4E3M code after dropping `DROPPED_LSBS` bits (3 in high-density
   modules, 1 in low-density ones) and expanded again by the ECON-T (the bin centre): the
   CALQ of the ASIC with unit calibration, as in the vectors.

Deterministic per seed: the same (seed, n, positions, model) give the same array.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace
from functools import lru_cache

import numpy as np

from econ_emd.base.errors import DataError
from econ_emd.geometry import N_TC, TC_PITCH, distance_matrix, tc_centres
from econ_emd.econt.codes import E4M3, decode, encode

from .allocation import MODULE_PITCH_CM, Allocation, embedded_allocation, layer_z_cm, read_allocation

#: bits the HGCROC drops before the 4E3M code, and the ECON-T restores (its float-to-fix):
#: high-density modules 3, low-density 1 (the CMS ECON-T emulator's FloatToFix)
DROPPED_LSBS = {True: 3, False: 1}
#: largest uncompressed TC charge the code chain takes (22 bits, the ECON-T's CALQ width)
CHARGE_MAX = (1 << 22) - 1
#: centimetres per length unit of the model (half a TC pitch)
CM_PER_UNIT = TC_PITCH / 2.0
#: pileup of the calibration sample
REFERENCE_PILEUP = 200.0
#: the calibrated module's layer is not recorded in the vectors; its depth is taken as
#: layer 5's, the default layer of the CMS script that extracted module crossings from
#: simulation (ECONT_Emulator getDataFromMC.py). It enters only through z/r in cosh(eta).
REFERENCE_LAYER = 5

_BATCH = 8192
#: spawn key of the placement's random stream (far above the batches' 0, 1, 2, ...)
PLACEMENT_STREAM = 1 << 30


@dataclass(frozen=True)
class DetectorModel:
    """The generator's parameters (see the module docstring for the model)."""

    # minimum bias
    mb_deposits_per_tc: float
    mb_level_shape: float
    mb_deposit_min_adc: float
    mb_deposit_scale_adc: float
    mb_deposit_tail: float
    mb_share: float
    mb_share_radius: float
    # the calibrated module's place: distance to the beam (half pitches) and its direction
    beam_distance: float
    beam_angle: float
    # showers
    showers_per_module: float
    shower_energy_min_adc: float
    shower_index: float
    shower_quantum_adc: float
    # shower kinds, shapes and ranges: physics choices, not fitted
    em_fraction: float = 0.5
    shower_energy_max_adc: float = 2.0e5
    shower_centre_radius: float = 9.0      # module circumradius ~8 + 1
    em_core_radius: float = 0.6            # 90% of an exponential profile within 3.9 R ~ the Moliere radius (2.8 cm)
    em_halo_radius: float = 2.5
    em_core_fraction: float = 0.8
    had_radius: float = 2.0
    had_subclusters_max: int = 4
    had_subcluster_spread: float = 3.0

    @staticmethod
    def fitted_fields() -> tuple[str, ...]:
        """The fields the calibration fits (those without a default), in order."""
        return tuple(f.name for f in fields(DetectorModel) if f.default is MISSING)

    def with_values(self, **values) -> "DetectorModel":
        return replace(self, **values)


#: fitted on the training part of the simulated crossings by
#: `python -m econ_emd.data.detector_fit` (which prints this block); distances in docs/reference.md
CALIBRATION = DetectorModel(
    mb_deposits_per_tc=2.603032746675602,
    mb_level_shape=50.6947532446008,
    mb_deposit_min_adc=20.28941759907013,
    mb_deposit_scale_adc=226.93261654989053,
    mb_deposit_tail=2.9111956598595343,
    mb_share=0.09280811301578318,
    mb_share_radius=0.39292447043601103,
    beam_distance=58.26414319666289,
    beam_angle=-0.34363545586990557,
    showers_per_module=0.6550981105743164,
    shower_energy_min_adc=365.0713865872407,
    shower_index=2.1179802172792614,
    shower_quantum_adc=4.038057597915401,
)


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class Placement:
    """Where generated modules sit: per module, the beam's position in the module's frame
    (distance in half pitches, direction in radians), the depth z (half pitches), the
    density, and what the detector calls the place (layer, wafer u/v, ECON-T links; -1
    where unknown)."""

    beam_distance: np.ndarray   # (n,) float
    beam_angle: np.ndarray      # (n,) float
    z: np.ndarray               # (n,) float
    high_density: np.ndarray    # (n,) bool
    layer: np.ndarray           # (n,) int
    wafer_u: np.ndarray         # (n,) int
    wafer_v: np.ndarray         # (n,) int
    links: np.ndarray           # (n,) int

    def __len__(self) -> int:
        return int(self.beam_distance.size)

    def take(self, idx) -> "Placement":
        return Placement(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class DetectorModules:
    charges: np.ndarray         # (n, 48) float64 CALQ, CALQ order
    placement: Placement


def layer_z_units(layer: int | np.ndarray) -> np.ndarray:
    """Depth of `layer` in half pitches."""
    return layer_z_cm(layer) / CM_PER_UNIT


def reference_placement(n: int, model: DetectorModel = CALIBRATION) -> Placement:
    """`n` copies of the calibrated module's place (high density, links unknown)."""
    return Placement(beam_distance=np.full(n, model.beam_distance), beam_angle=np.full(n, model.beam_angle),
                     z=np.full(n, float(layer_z_units(REFERENCE_LAYER))), high_density=np.ones(n, bool),
                     layer=np.full(n, REFERENCE_LAYER), wafer_u=np.full(n, -1), wafer_v=np.full(n, -1),
                     links=np.full(n, -1))


def allocation_placement(alloc: Allocation, n: int, rng: np.random.Generator,
                         links: list[int] | None = None, layers: list[int] | None = None) -> Placement:
    """`n` places drawn from the detector's modules, each module equally likely (modules
    without an ECON-T link send no trigger data and are never drawn). The module's
    distance from the beam follows from its ring; the direction of the beam in the
    module's frame is drawn uniformly (the orientation of the TC grid in the detector is
    not modelled)."""
    keep = (alloc.links > 0) & (alloc.modules > 0)
    if links is not None:
        keep &= np.isin(alloc.links, links)
    if layers is not None:
        keep &= np.isin(alloc.layer, layers)
    if not keep.any():
        raise DataError(f"the allocation ({alloc.source}) has no module with "
                        f"{'links ' + str(links) if links else 'a link'}"
                        f"{' in layers ' + str(layers) if layers else ''}")
    rows = np.flatnonzero(keep)
    weight = alloc.modules[rows].astype(np.float64)
    pick = rows[rng.choice(rows.size, size=n, p=weight / weight.sum())]
    return Placement(beam_distance=np.sqrt(alloc.ring2[pick]) * MODULE_PITCH_CM / CM_PER_UNIT,
                     beam_angle=rng.uniform(-np.pi, np.pi, n), z=layer_z_units(alloc.layer[pick]),
                     high_density=alloc.high_density[pick].copy(), layer=alloc.layer[pick].copy(),
                     wafer_u=alloc.wafer_u[pick].copy(), wafer_v=alloc.wafer_v[pick].copy(),
                     links=alloc.links[pick].copy())


def build_placement(params, n: int, seed: np.random.SeedSequence) -> Placement:
    """The places of `n` modules as `params` (a `DetectorParams`) asks; the random choice
    of places uses its own stream of `seed`, apart from the modules' contents."""
    if params.placement == "reference":
        return reference_placement(n)
    alloc = read_allocation(params.allocation_path) if params.allocation_path else embedded_allocation()
    rng = np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, PLACEMENT_STREAM)))
    return allocation_placement(alloc, n, rng, params.links, params.layers)


# --- position laws -------------------------------------------------------------------

def _rate_law(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Particles per unit area (arbitrary scale) at distance r from the beam, depth z."""
    return 1.0 / (r * r * np.sqrt(1.0 + (r / z) ** 2))


def _energy_law(r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Energy per particle (arbitrary scale): cosh(eta)."""
    return np.sqrt(1.0 + (z / r) ** 2)


def _tc_distances_to_beam(pl: Placement) -> np.ndarray:
    """(n, 48) distance of every TC from the beam (half pitches)."""
    c = tc_centres()
    centre = c.mean(0)
    bx = centre[0] + pl.beam_distance * np.cos(pl.beam_angle)
    by = centre[1] + pl.beam_distance * np.sin(pl.beam_angle)
    return np.hypot(c[:, 0] - bx[:, None], c[:, 1] - by[:, None])


# --- minimum bias --------------------------------------------------------------------

@lru_cache(maxsize=16)
def _share_matrix(share: float, radius: float) -> np.ndarray:
    """(48, 48) K with E_received = E_deposited @ K: a TC keeps 1 - share of its deposits
    and receives share x its weight-normalized neighbourhood's."""
    d = distance_matrix()
    w = np.exp(-d / radius)
    np.fill_diagonal(w, 0.0)
    w /= w.sum(0, keepdims=True)
    k = share * w + (1.0 - share) * np.eye(N_TC)
    k.setflags(write=False)
    return k


def _minimum_bias(rng: np.random.Generator, pl: Placement, m: DetectorModel, ref_rate: float,
                  ref_energy: float, pileup: float) -> np.ndarray:
    r = _tc_distances_to_beam(pl)
    z = pl.z[:, None]
    level = rng.gamma(m.mb_level_shape, 1.0 / m.mb_level_shape, (len(pl), 1))
    lam = m.mb_deposits_per_tc * (pileup / REFERENCE_PILEUP) * level * _rate_law(r, z) / ref_rate
    n_dep = rng.poisson(lam).ravel()
    # Each deposit: min + a Lomax (Pareto II) draw, whose survival falls as E^-tail.
    u = rng.random(int(n_dep.sum()))
    energy = m.mb_deposit_min_adc + m.mb_deposit_scale_adc * np.expm1(-np.log1p(-u) / m.mb_deposit_tail)
    cell = np.repeat(np.arange(n_dep.size), n_dep)
    deposited = np.bincount(cell, weights=energy, minlength=n_dep.size).reshape(r.shape)
    deposited *= _energy_law(r, z) / ref_energy
    return deposited @ _share_matrix(m.mb_share, m.mb_share_radius)


# --- showers -------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _profile_norm(radius: float) -> float:
    """1 / (sum over an infinite TC lattice of exp(-d / radius)) for a profile centred on
    a TC: the share of a TC at distance d is exp(-d / radius) times this."""
    a, b = np.array([0.0, 2.0]), np.array([np.sqrt(3.0), -1.0])
    k = np.arange(-60, 61)
    u, v = np.meshgrid(k, k, indexing="ij")
    p = u[..., None] * a + v[..., None] * b
    return 1.0 / float(np.exp(-np.hypot(p[..., 0], p[..., 1]) / radius).sum())


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, index: float) -> np.ndarray:
    a = 1.0 - index
    u = rng.random(n)
    if abs(a) < 1e-9:
        return lo * (hi / lo) ** u
    return (lo**a + u * (hi**a - lo**a)) ** (1.0 / a)


def _showers(rng: np.random.Generator, pl: Placement, m: DetectorModel, rate_factor: np.ndarray,
             energy_factor: np.ndarray) -> np.ndarray:
    n_mod = len(pl)
    energy = np.zeros((n_mod, N_TC))
    n_sh = rng.poisson(m.showers_per_module * rate_factor)
    owner = np.repeat(np.arange(n_mod), n_sh)
    if owner.size == 0:
        return energy
    e_sh = _power_law(rng, owner.size, m.shower_energy_min_adc, m.shower_energy_max_adc,
                      m.shower_index) * energy_factor[owner]
    centre = tc_centres().mean(0)
    ang = rng.uniform(0.0, 2 * np.pi, owner.size)
    rad = m.shower_centre_radius * np.sqrt(rng.random(owner.size))
    cx, cy = centre[0] + rad * np.cos(ang), centre[1] + rad * np.sin(ang)
    is_em = rng.random(owner.size) < m.em_fraction

    # Every shower is a set of blobs (centre, energy, radius): EM = core + halo at one
    # centre, hadronic = 1..max sub-clusters around it.
    k_max = m.had_subclusters_max
    n_sub = rng.integers(1, k_max + 1, owner.size)
    share = rng.dirichlet(np.ones(k_max), owner.size)
    share = np.where(np.arange(k_max) < n_sub[:, None], share, 0.0)
    share /= share.sum(1, keepdims=True)
    offset = rng.normal(0.0, m.had_subcluster_spread, (owner.size, k_max, 2))
    offset[:, 0] = 0.0
    had_share = np.where(is_em[:, None], 0.0, share)
    em_share = np.zeros((owner.size, 2))
    em_share[is_em] = (m.em_core_fraction, 1.0 - m.em_core_fraction)
    blob_share = np.concatenate([em_share, had_share], 1)                   # (s, 2 + k_max)
    blob_radius = np.array([m.em_core_radius, m.em_halo_radius] + [m.had_radius] * k_max)
    blob_dx = np.concatenate([np.zeros((owner.size, 2)), offset[..., 0]], 1)
    blob_dy = np.concatenate([np.zeros((owner.size, 2)), offset[..., 1]], 1)
    np.add.at(energy, *_blobs(owner, e_sh, cx, cy, blob_share, blob_dx, blob_dy, blob_radius))
    return _fluctuate(rng, energy, m)


def _blobs(owner: np.ndarray, e_sh: np.ndarray, cx: np.ndarray, cy: np.ndarray, blob_share: np.ndarray,
           blob_dx: np.ndarray, blob_dy: np.ndarray, blob_radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, deposits) of showers as blobs onto the TCs: each blob's energy over the TC
    lattice by an exponential profile of its radius (normalized as if centred on a TC)."""
    s_idx, b_idx = np.nonzero(blob_share > 0)
    c = tc_centres()
    d = np.hypot(c[:, 0] - (cx[s_idx] + blob_dx[s_idx, b_idx])[:, None],
                 c[:, 1] - (cy[s_idx] + blob_dy[s_idx, b_idx])[:, None])
    rad_b = blob_radius[b_idx]
    norms = np.array([_profile_norm(float(x)) for x in blob_radius])[b_idx]
    dep = (e_sh[s_idx] * blob_share[s_idx, b_idx] * norms)[:, None] * np.exp(-d / rad_b[:, None])
    return owner[s_idx], dep


def _fluctuate(rng: np.random.Generator, energy: np.ndarray, m: DetectorModel) -> np.ndarray:
    """Each TC's share of a shower fluctuated: Gamma with variance quantum x mean."""
    shape = energy / m.shower_quantum_adc
    return np.where(energy > 0, rng.gamma(np.maximum(shape, 1e-12), m.shower_quantum_adc), 0.0)


def em_showers(energy_adc: np.ndarray, centres: np.ndarray, rng: np.random.Generator,
               model: DetectorModel = CALIBRATION) -> np.ndarray:
    """(n, 48) ADC deposits of one electromagnetic shower per row, of `energy_adc` (n,) at
    `centres` (n, 2), in the units of `geometry.tc_centres` (half TC pitches), for injecting
    a known signal: the generator's EM shape (core and halo) and fluctuations, its mean
    deposits scaled to sum to `energy_adc` over the module's 48 TCs (a shower centred inside
    the module, wherever between the TCs its centre falls, puts its energy in the module)."""
    energy_adc = np.asarray(energy_adc, dtype=np.float64)
    n = len(energy_adc)
    centres = np.asarray(centres, dtype=np.float64).reshape(n, 2)
    share = np.tile([model.em_core_fraction, 1.0 - model.em_core_fraction], (n, 1))
    zeros = np.zeros((n, 2))
    radius = np.array([model.em_core_radius, model.em_halo_radius])
    mean = np.zeros((n, N_TC))
    np.add.at(mean, *_blobs(np.arange(n), np.ones(n), centres[:, 0], centres[:, 1], share, zeros, zeros, radius))
    mean *= (energy_adc / mean.sum(1))[:, None]
    return _fluctuate(rng, mean, model)


# --- the detector's quantization -----------------------------------------------------

def detector_calq(energy: np.ndarray, high_density: np.ndarray) -> np.ndarray:
    """CALQ the ECON-T computes for TC charges `energy` (ADC, float): rounded, 4E3M-coded
    after dropping the density's LSBs, expanded again (bin centre), unit calibration."""
    q = np.clip(np.rint(energy), 0, CHARGE_MAX).astype(np.int64)
    out = np.empty(q.shape, dtype=np.int64)
    for hd in (True, False):
        rows = np.asarray(high_density) == hd
        if rows.any():
            out[rows] = decode(encode(q[rows], E4M3, DROPPED_LSBS[hd]), E4M3, DROPPED_LSBS[hd])
    return out.astype(np.float64)


# --- the generator -------------------------------------------------------------------

def _reference_laws(m: DetectorModel) -> tuple[float, float]:
    z = float(layer_z_units(REFERENCE_LAYER))
    r = np.array([m.beam_distance])
    return float(_rate_law(r, np.array([z]))[0]), float(_energy_law(r, np.array([z]))[0])


def _batch(rng: np.random.Generator, pl: Placement, m: DetectorModel, pileup: float) -> np.ndarray:
    ref_rate, ref_energy = _reference_laws(m)
    mb = _minimum_bias(rng, pl, m, ref_rate, ref_energy, pileup)
    rate_factor = _rate_law(pl.beam_distance, pl.z) / ref_rate
    energy_factor = _energy_law(pl.beam_distance, pl.z) / ref_energy
    sh = _showers(rng, pl, m, rate_factor, energy_factor)
    return detector_calq(mb + sh, pl.high_density)


def generate_detector(n_modules: int, seed: int | np.random.SeedSequence, placement: Placement | None = None,
                      model: DetectorModel = CALIBRATION, pileup: float = REFERENCE_PILEUP) -> DetectorModules:
    """`n_modules` modules (CALQ, (n, 48) float64) at `placement` (default: the calibrated
    module's place), deterministic per seed (an integer n gives the same modules as
    SeedSequence(n))."""
    pl = placement if placement is not None else reference_placement(n_modules, model)
    if len(pl) != n_modules:
        raise ValueError(f"placement holds {len(pl)} modules, asked for {n_modules}")
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    seq = np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key)   # spawning must not mutate the caller's
    out = np.empty((n_modules, N_TC))
    for k, child in enumerate(seq.spawn((n_modules + _BATCH - 1) // _BATCH)):
        sl = slice(k * _BATCH, min((k + 1) * _BATCH, n_modules))
        out[sl] = _batch(np.random.default_rng(child), pl.take(sl), model, pileup)
    return DetectorModules(charges=out, placement=pl)
