"""The question the ECON-T autoencoder was built for: a low-energy signal in a busy module.

An electromagnetic shower of known energy and position (the detector generator's own EM
shower, `data.detector.em_showers`) is injected into held-out crossings (one per crossing,
through the ECON-T's quantization), and every algorithm at every link count sends and
rebuilds the crossing with and without it. What the back end recovers of the signal is
the difference of the two rebuilt modules in the signal's region (the TCs within
`REGION_RADIUS` of its centre): its energy against the energy the shower put there
(`bias`: median ratio - 1; `resolution`: half the 16-84% width of the ratio), and the
distance from the injected centre to the energy-weighted centroid of the positive
difference (`position_cm`: its 68% quantile). A crossing whose rebuilt difference in the
region is not positive counts as lost (`efficiency`). Each is given per signal energy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from econ_emd.base.units import ADC_PER_MIP_T
from econ_emd.geometry import COORD_SCALE, tc_centres

#: signal energies injected, in MIP_T (the low end is what the autoencoder was built for)
SIGNAL_ENERGIES_MIP = (5.0, 10.0, 20.0, 50.0, 100.0)
#: the signal region: TCs within this distance (half pitches) of the injected centre (the
#: centre's TC and its two rings)
REGION_RADIUS = 4.1
#: injected centres are drawn this far (half pitches) from the module's centre at most, so
#: the region lies inside the module
CENTRE_RADIUS = 4.0


@dataclass(frozen=True, eq=False)       # holds arrays: compared by identity
class Injection:
    """Crossings with one signal each: the crossings, the crossings with the signal (CALQ),
    the signal's centre, its energy in MIP_T, the energy it put into its region (CALQ
    units, after quantization) and the region's TCs."""

    base: np.ndarray            # (n, 48)
    with_signal: np.ndarray     # (n, 48)
    centre: np.ndarray          # (n, 2), half pitches
    energy_mip: np.ndarray      # (n,)
    true_region_energy: np.ndarray   # (n,)
    region: np.ndarray          # (n, 48) bool


def inject(base_calq: np.ndarray, seed: int, energies_mip=SIGNAL_ENERGIES_MIP) -> Injection:
    """One EM shower per crossing: energies cycle through `energies_mip`, centres uniform in
    a disc of `CENTRE_RADIUS` around the module's centre; quantized as the ECON-T does
    (`data.detector.detector_calq`, high density, the crossings' own quantization)."""
    from econ_emd.data.detector import detector_calq, em_showers

    base = np.asarray(base_calq, dtype=np.float64)
    n = len(base)
    rng = np.random.default_rng(seed)
    energy_mip = np.resize(np.asarray(energies_mip, dtype=np.float64), n)
    rng.shuffle(energy_mip)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = CENTRE_RADIUS * np.sqrt(rng.random(n))
    centre = tc_centres().mean(0) + np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    deposits = em_showers(energy_mip * ADC_PER_MIP_T, centre, rng)
    with_signal = detector_calq(base + deposits, np.ones(n, dtype=bool))
    d = np.linalg.norm(tc_centres()[None, :, :] - centre[:, None, :], axis=2)
    region = d <= REGION_RADIUS
    true = ((with_signal - base) * region).sum(1)
    return Injection(base=base, with_signal=with_signal, centre=centre, energy_mip=energy_mip,
                     true_region_energy=true, region=region)


@dataclass
class SignalResponse:
    """What one algorithm at one link count recovers of the injected signals, per energy."""

    algorithm: str
    n_links: int
    energies_mip: list[float]
    n: list[int]
    efficiency: list[float]
    bias: list[float]
    resolution: list[float]
    position_cm: list[float]

    def to_json(self) -> dict:
        return asdict(self)


def response(name: str, n_links: int, rebuild: Callable[[np.ndarray], np.ndarray], inj: Injection) -> SignalResponse:
    """Rebuild the crossings with and without the signal by `rebuild` (CALQ -> energies) and
    measure what is recovered (module doc)."""
    diff = rebuild(inj.with_signal) - rebuild(inj.base)
    rec = (diff * inj.region).sum(1)
    positive = np.where(inj.region, np.maximum(diff, 0.0), 0.0)
    weight = positive.sum(1)
    c = tc_centres()
    centroid = (positive @ c) / np.where(weight > 0, weight, 1)[:, None]
    shift_cm = np.linalg.norm(centroid - inj.centre, axis=1) * COORD_SCALE
    found = (rec > 0) & (weight > 0) & (inj.true_region_energy > 0)
    ratio = rec / np.where(inj.true_region_energy > 0, inj.true_region_energy, 1)
    out = {k: [] for k in ("energies_mip", "n", "efficiency", "bias", "resolution", "position_cm")}
    for e in np.unique(inj.energy_mip):
        rows = (inj.energy_mip == e) & (inj.true_region_energy > 0)
        ok = rows & found
        out["energies_mip"].append(float(e))
        out["n"].append(int(rows.sum()))
        out["efficiency"].append(float(ok.sum() / max(rows.sum(), 1)))
        if ok.sum() >= 3:
            lo, mid, hi = np.percentile(ratio[ok], [16, 50, 84])
            out["bias"].append(float(mid - 1))
            out["resolution"].append(float((hi - lo) / 2))
            out["position_cm"].append(float(np.percentile(shift_cm[ok], 68)))
        else:
            out["bias"].append(float("nan"))
            out["resolution"].append(float("nan"))
            out["position_cm"].append(float("nan"))
    return SignalResponse(algorithm=name, n_links=n_links, **out)

