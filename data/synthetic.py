"""Synthetic HGCAL-like module data: the embedded default when no real data is given.

Real CMS simulation (ttbar, PU200) is not redistributable, so the project ships a
generator that reproduces the features that matter for compression and EMD: localized
showers of widely varying energy on the hexagonal TC geometry, a diffuse pile-up floor,
noise and zero suppression, integer ADC charges, and an occupancy spread from 1 to 48 TCs
with most modules sparse.

The model, per module (all parameters in `SyntheticParams`, lengths in half TC pitches):

1. Showers. With probability `shower_probability` a module holds one shower plus
   Poisson(`extra_showers_mean`) more. Each shower's energy follows a falling power law
   dN/dE ~ E^-`spectrum_index` on [`energy_min_mip`, `energy_max_mip`] (MIP_T).
   Its centre is a random TC centre plus a uniform offset within `centre_spread`, so
   showers straddle module edges and lose energy outside.
2. Lateral profile, sampled as discrete energy hits (n = `hits_per_mip` * E, clipped to
   [`hits_min`, `hits_max`], each carrying E/n), which gives shower-to-shower fluctuations:
   EM-like (`em_fraction`): a core with exponential radius `em_core_radius` carrying
   `em_core_fraction` of the energy plus a halo of radius `em_halo_radius`; hadron-like:
   1..`had_subclusters_max` sub-clusters offset by ~`had_subcluster_spread`, each with
   exponential radius `had_radius` and a random share of the energy. A 2D exponential
   profile rho(r) ~ exp(-r/R) is sampled as r ~ Gamma(2, R).
3. Hits go to the TC whose centre is nearest (hex cells); hits farther than 1.2 from every
   centre fall outside the module and are lost.
4. Pile-up: every TC receives Poisson(mu) hits of exponential energy (mean
   `pileup_hit_mip`), with mu per module log-uniform in [`pileup_mu_min`, `pileup_mu_max`]
   (modules closer to the beam see more pile-up).
5. Electronics: charge = energy * `adc_per_mip` + Gaussian noise (`noise_sigma_adc`),
   rounded to integers, values below `zero_suppression_adc` set to 0, saturated at
   `adc_max`.
6. Modules with no TC above 1 MIP_T are regenerated, so every module has occupancy >= 1.

Deterministic per seed: the same (seed, n_modules, params) give the same array.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from econ_emd.geometry import N_TC, tc_centres
from econ_emd.base.units import ADC_PER_MIP_T

from .params import SyntheticParams

#: hits farther than this from every TC centre fall outside the module.
OUTSIDE_RADIUS = 1.2
_GRID_STEP = 0.05
_BATCH = 8192


@lru_cache(maxsize=1)
def _cell_lookup() -> tuple[np.ndarray, np.ndarray, float]:
    """A fine grid over the module mapping each grid cell to its nearest TC (or -1)."""
    c = tc_centres()
    lo = c.min(0) - OUTSIDE_RADIUS - _GRID_STEP
    hi = c.max(0) + OUTSIDE_RADIUS + _GRID_STEP
    nx, ny = np.ceil((hi - lo) / _GRID_STEP).astype(int)
    gx = lo[0] + (np.arange(nx) + 0.5) * _GRID_STEP
    gy = lo[1] + (np.arange(ny) + 0.5) * _GRID_STEP
    px, py = np.meshgrid(gx, gy, indexing="ij")
    d2 = (px[..., None] - c[:, 0]) ** 2 + (py[..., None] - c[:, 1]) ** 2
    nearest = d2.argmin(-1)
    nearest[d2.min(-1) > OUTSIDE_RADIUS**2] = -1
    return nearest.astype(np.int16), lo, _GRID_STEP


def _assign_hits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """TC index of each hit position, -1 outside the module."""
    table, lo, step = _cell_lookup()
    ix = np.floor((x - lo[0]) / step).astype(np.int64)
    iy = np.floor((y - lo[1]) / step).astype(np.int64)
    inside = (ix >= 0) & (ix < table.shape[0]) & (iy >= 0) & (iy < table.shape[1])
    out = np.full(x.shape, -1, dtype=np.int64)
    out[inside] = table[ix[inside], iy[inside]]
    return out


def _shower_energies(rng: np.random.Generator, n: int, p: SyntheticParams) -> np.ndarray:
    """Truncated power law on [emin, emax] by inverse CDF."""
    a = 1.0 - p.spectrum_index
    u = rng.random(n)
    lo, hi = p.energy_min_mip**a, p.energy_max_mip**a
    return (lo + u * (hi - lo)) ** (1.0 / a)


def _deposit_showers(rng: np.random.Generator, n_mod: int, p: SyntheticParams) -> np.ndarray:
    """Energy (MIP_T) per TC from showers, shape (n_mod, 48)."""
    energy = np.zeros((n_mod, N_TC))
    has = rng.random(n_mod) < p.shower_probability
    n_showers = np.where(has, 1 + rng.poisson(p.extra_showers_mean, n_mod), 0)
    owner = np.repeat(np.arange(n_mod), n_showers)  # module of each shower
    n_sh = owner.size
    if n_sh == 0:
        return energy
    e_sh = _shower_energies(rng, n_sh, p)
    centres = tc_centres()[rng.integers(0, N_TC, n_sh)]
    ang = rng.uniform(0, 2 * np.pi, n_sh)
    rad = p.centre_spread * np.sqrt(rng.random(n_sh))
    cx = centres[:, 0] + rad * np.cos(ang)
    cy = centres[:, 1] + rad * np.sin(ang)

    n_hits = np.clip(np.round(e_sh * p.hits_per_mip), p.hits_min, p.hits_max).astype(np.int64)
    hit_shower = np.repeat(np.arange(n_sh), n_hits)
    n_tot = hit_shower.size
    is_em = (rng.random(n_sh) < p.em_fraction)[hit_shower]

    # EM: core or halo radius per hit.
    core = rng.random(n_tot) < p.em_core_fraction
    radius = np.where(core, p.em_core_radius, p.em_halo_radius)
    # Hadronic: each hit belongs to one of the shower's sub-clusters.
    n_sub = rng.integers(1, p.had_subclusters_max + 1, n_sh)
    sub_off = rng.normal(0.0, p.had_subcluster_spread, (n_sh, p.had_subclusters_max, 2))
    sub_off[:, 0] = 0.0  # the leading sub-cluster sits at the shower centre
    sub_w = rng.dirichlet(np.ones(p.had_subclusters_max), n_sh)
    sub_w = np.where(np.arange(p.had_subclusters_max) < n_sub[:, None], sub_w, 0.0)
    sub_w /= sub_w.sum(1, keepdims=True)
    cdf = np.cumsum(sub_w, 1)[hit_shower]
    sub_idx = np.minimum((rng.random(n_tot)[:, None] > cdf).sum(1), p.had_subclusters_max - 1)
    off = np.where(is_em[:, None], 0.0, sub_off[hit_shower, sub_idx])
    radius = np.where(is_em, radius, p.had_radius)

    r = rng.gamma(2.0, 1.0, n_tot) * radius
    phi = rng.uniform(0, 2 * np.pi, n_tot)
    hx = cx[hit_shower] + off[:, 0] + r * np.cos(phi)
    hy = cy[hit_shower] + off[:, 1] + r * np.sin(phi)
    tc = _assign_hits(hx, hy)
    keep = tc >= 0
    e_hit = (e_sh / n_hits)[hit_shower]
    np.add.at(energy, (owner[hit_shower][keep], tc[keep]), e_hit[keep])
    return energy


def _pileup(rng: np.random.Generator, n_mod: int, p: SyntheticParams) -> np.ndarray:
    if p.pileup_mu_max <= 0:
        return np.zeros((n_mod, N_TC))
    lo = np.log(max(p.pileup_mu_min, 1e-12))
    mu = np.exp(rng.uniform(lo, np.log(p.pileup_mu_max), n_mod))
    n_hits = rng.poisson(mu[:, None] * np.ones((1, N_TC)))
    # Sum of k exponentials with mean m is Gamma(k, m); Gamma(0) is 0.
    safe = np.maximum(n_hits, 1)
    return np.where(n_hits > 0, rng.gamma(safe, p.pileup_hit_mip), 0.0)


def _digitize(rng: np.random.Generator, energy: np.ndarray, p: SyntheticParams) -> np.ndarray:
    q = energy * p.adc_per_mip + rng.normal(0.0, p.noise_sigma_adc, energy.shape)
    q = np.rint(q)
    q[q < p.zero_suppression_adc] = 0.0
    return np.minimum(q, p.adc_max)


def _generate_batch(rng: np.random.Generator, n_mod: int, p: SyntheticParams) -> np.ndarray:
    energy = _deposit_showers(rng, n_mod, p) + _pileup(rng, n_mod, p)
    return _digitize(rng, energy, p)


def occupancy(charges: np.ndarray, adc_per_mip: float = ADC_PER_MIP_T) -> np.ndarray:
    """Number of TCs above 1 MIP_T in each module."""
    return (np.asarray(charges) > adc_per_mip).sum(-1)


def generate(n_modules: int, seed: int | np.random.SeedSequence, params: SyntheticParams | None = None,
             max_rounds: int = 100) -> np.ndarray:
    """(n_modules, 48) float64 integer-valued ADC charges, every module with occupancy >= 1.

    `seed`: an integer or a SeedSequence (base.seeds.derive_seed); an integer n gives the
    same modules as SeedSequence(n)."""
    p = params or SyntheticParams()
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    seq = np.random.SeedSequence(seq.entropy, spawn_key=seq.spawn_key)   # spawning must not mutate the caller's
    out = np.empty((n_modules, N_TC))
    start = 0
    for child in seq.spawn((n_modules + _BATCH - 1) // _BATCH):
        rng = np.random.default_rng(child)
        n = min(_BATCH, n_modules - start)
        batch = _generate_batch(rng, n, p)
        for _ in range(max_rounds):
            empty = occupancy(batch, p.adc_per_mip) == 0
            if not empty.any():
                break
            batch[empty] = _generate_batch(rng, int(empty.sum()), p)
        else:
            raise ValueError(
                "synthetic parameters produce almost only empty modules (no TC above 1 MIP_T); "
                "raise data.synthetic.shower_probability or the pile-up level")
        out[start:start + n] = batch
        start += n
    return out
