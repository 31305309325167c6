"""Calibrate the detector generator on the training part of the simulated crossings, and
judge it on the held-out part.

    python -m econ_emd.data.detector_fit            # refit: prints the CALIBRATION block of data/detector.py
    python -m econ_emd.data.detector_fit --report   # the realism table on the held-out crossings

The fit first places the beam from the training crossings' per-cell mean map (the
gradient of the minimum bias), then minimizes `fit_loss` between modules generated at
the calibrated module's place and the training crossings: L2 distances between the
cumulative distributions of the cell charges, the occupancy and the module sum (smoother
in the parameters than the KS statistics the realism table reports), the log ratio of
their upper tails, the correlation curve and the per-cell means, weighted by
`FIT_WEIGHTS`. The search runs over the fitted parameters, each mapped to an unbounded
scale (logarithm of a positive value, logit of a fraction): an evolution strategy from
the stored calibration for global moves, then Nelder-Mead, with common random numbers
(one seed for every trial). It reads the crossings only through `require_training`,
which refuses held-out rows. The stored calibration is this command's output (about
3,000 trials of 8,000 modules, ~20 minutes on a busy 2-core machine).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from .crossings import Crossings, heldout_crossings, require_training, training_crossings
from econ_emd.geometry import N_TC, tc_centres

from .detector import CALIBRATION, DetectorModel, generate_detector
from .realism import DISTANCE_COLUMNS, ModuleStatistics, RealismDistances, module_statistics, distances

#: weight of each term of the fit's loss: the L2 distances between the cumulative
#: distributions (spectrum, occupancy, module sum), the RMS log ratio of the survival
#: fractions of the spectrum and the sum at their upper quantiles (`TAIL_LEVELS`: the
#: energetic cells and crossings that the L2 distances hardly see), the correlation curve's
#: RMS difference and the per-cell means' relative RMS difference
FIT_WEIGHTS = {"spectrum": 1.0, "occupancy": 1.0, "sum": 1.0, "spectrum_tail": 0.03, "sum_tail": 0.03,
               "correlation": 3.0, "cell_mean": 0.3}
TAIL_LEVELS = (90.0, 97.0, 99.0, 99.7, 99.9)
#: how each fitted parameter is mapped to an unbounded scale (the rest: logarithm)
_FRACTIONS = {"mb_share"}
_ABOVE_ONE = {"shower_index"}
#: the parameters found from the per-cell mean map before the rest is fitted
BEAM_FIELDS = ("beam_distance", "beam_angle")
FIT_MODULES = 8_000
FIT_SEED = 20240530
#: the search: an evolution strategy (ES_POPULATION trials a generation, the best ES_PARENTS
#: recombined, per-parameter step sizes adapted, starting at ES_STEP on the unbounded scale)
#: for global moves, then Nelder-Mead to polish
ES_GENERATIONS = 120
ES_POPULATION = 14
ES_PARENTS = 7
ES_STEP = 0.2
FIT_MAX_EVALS = 1500
REPORT_MODULES = 50_000
REPORT_SEED = 7


def _to_free(name: str, value: float) -> float:
    if name in _FRACTIONS:
        return float(np.log(value / (1.0 - value)))
    if name in _ABOVE_ONE:
        return float(np.log(value - 1.0))
    return float(np.log(value))


def _from_free(name: str, x: float) -> float:
    if name in _FRACTIONS:
        return float(1.0 / (1.0 + np.exp(-x)))
    if name in _ABOVE_ONE:
        return float(1.0 + np.exp(x))
    return float(np.exp(x))


def fitted_names() -> tuple[str, ...]:
    """The parameters the loss minimization fits (the beam comes from the mean map)."""
    return tuple(n for n in DetectorModel.fitted_fields() if n not in BEAM_FIELDS)


def _cdf_l2(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> float:
    """RMS over `points` of the difference of the empirical CDFs of x and y."""
    fx = np.searchsorted(np.sort(x), points, side="right") / x.size
    fy = np.searchsorted(np.sort(y), points, side="right") / y.size
    return float(np.sqrt(np.mean((fx - fy) ** 2)))


def _tail_log_ratio(x: np.ndarray, y: np.ndarray, points: np.ndarray) -> float:
    """RMS over `points` of log(survival fraction of x / that of y), each floored at 1/size."""
    sx = np.maximum(1.0 - np.searchsorted(np.sort(x), points, side="right") / x.size, 1.0 / x.size)
    sy = np.maximum(1.0 - np.searchsorted(np.sort(y), points, side="right") / y.size, 1.0 / y.size)
    return float(np.sqrt(np.mean(np.log(sx / sy) ** 2)))


@dataclass(frozen=True, eq=False)   # holds arrays: compared by identity
class FitTarget:
    """The training part's statistics and the points its CDFs are compared at."""

    stats: ModuleStatistics
    spectrum_points: np.ndarray
    sum_points: np.ndarray
    occupancy_points: np.ndarray
    spectrum_tail_points: np.ndarray
    sum_tail_points: np.ndarray

    @classmethod
    def of(cls, charges: np.ndarray) -> "FitTarget":
        st = module_statistics(charges)
        spectrum = np.unique(st.spectrum)
        return cls(stats=st, spectrum_points=spectrum[spectrum <= np.percentile(st.spectrum, 99.9)],
                   sum_points=np.percentile(st.module_sum, np.arange(1, 100)),
                   occupancy_points=np.arange(N_TC + 1),
                   spectrum_tail_points=np.percentile(st.spectrum, TAIL_LEVELS),
                   sum_tail_points=np.percentile(st.module_sum, TAIL_LEVELS))


def fit_terms(st: ModuleStatistics, target: FitTarget) -> dict[str, float]:
    """The terms of the fit's loss for generated statistics `st`."""
    ref = target.stats
    return {"spectrum": _cdf_l2(st.spectrum, ref.spectrum, target.spectrum_points),
            "occupancy": _cdf_l2(st.occupancy, ref.occupancy, target.occupancy_points),
            "sum": _cdf_l2(st.module_sum, ref.module_sum, target.sum_points),
            "spectrum_tail": _tail_log_ratio(st.spectrum, ref.spectrum, target.spectrum_tail_points),
            "sum_tail": _tail_log_ratio(st.module_sum, ref.module_sum, target.sum_tail_points),
            "correlation": float(np.sqrt(np.mean((st.correlation - ref.correlation) ** 2))),
            "cell_mean": float(np.sqrt(np.mean((st.cell_mean / ref.cell_mean - 1.0) ** 2)))}


def fit_loss(st: ModuleStatistics, target: FitTarget) -> float:
    terms = fit_terms(st, target)
    return float(sum(FIT_WEIGHTS[k] * v for k, v in terms.items()))


def fit_beam(cell_mean: np.ndarray) -> tuple[float, float]:
    """(distance, angle) of the beam in the module's frame that best explain the per-cell
    mean charge by the minimum bias's energy law (mean ~ r^-3, r the TC's distance from
    the beam): least squares in log over a grid, then refined."""
    from scipy.optimize import minimize

    c = tc_centres()
    centre = c.mean(0)
    log_mean = np.log(cell_mean)

    def sse(d: float, phi: float) -> float:
        r = np.hypot(c[:, 0] - centre[0] - d * np.cos(phi), c[:, 1] - centre[1] - d * np.sin(phi))
        resid = log_mean + 3.0 * np.log(r)
        return float(((resid - resid.mean()) ** 2).sum())

    grid = [(sse(d, phi), d, phi) for d in np.geomspace(10.0, 1000.0, 60)
            for phi in np.linspace(-np.pi, np.pi, 144, endpoint=False)]
    _, d0, phi0 = min(grid)
    res = minimize(lambda x: sse(np.exp(x[0]), x[1]), [np.log(d0), phi0], method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-10})
    return float(np.exp(res.x[0])), float(np.arctan2(np.sin(res.x[1]), np.cos(res.x[1])))


@dataclass(frozen=True)
class FitResult:
    model: DetectorModel
    loss: float
    terms: dict[str, float]
    evaluations: int


def _evolve(loss, x0: np.ndarray, generations: int, seed: int) -> np.ndarray:
    """The best point an evolution strategy finds from `x0` (weighted recombination of the
    best ES_PARENTS of ES_POPULATION trials, step sizes adapted per parameter)."""
    rng = np.random.default_rng(seed)
    weights = np.log(ES_PARENTS + 0.5) - np.log(np.arange(1, ES_PARENTS + 1))
    weights /= weights.sum()
    x, step = x0.copy(), np.full(x0.size, ES_STEP)
    best_value, best_x = loss(x0), x0.copy()
    for _ in range(generations):
        z = rng.standard_normal((ES_POPULATION, x.size))
        trials = x + step * z
        values = np.array([loss(t) for t in trials])
        order = np.argsort(values)
        if values[order[0]] < best_value:
            best_value, best_x = float(values[order[0]]), trials[order[0]].copy()
        chosen = z[order[:ES_PARENTS]]
        x = x + step * (weights @ chosen)
        step = np.clip(step * np.exp(0.15 * (np.sqrt(weights @ chosen**2) - 1.0)), 0.01, 1.0)
    return best_x


def fit(training: Crossings, start: DetectorModel = CALIBRATION, n_modules: int = FIT_MODULES,
        seed: int = FIT_SEED, generations: int = ES_GENERATIONS, max_evals: int = FIT_MAX_EVALS,
        progress=None) -> FitResult:
    """The model closest to `training` (which must be the training part): the beam from
    its per-cell mean map (`fit_beam`), then the rest from `start` by an evolution strategy
    and Nelder-Mead on `fit_loss`, with common random numbers (one seed for every trial)."""
    from scipy.optimize import minimize

    charges = require_training(training, "the detector generator's calibration")
    target = FitTarget.of(charges)
    distance, angle = fit_beam(target.stats.cell_mean)
    start = start.with_values(beam_distance=distance, beam_angle=angle)
    names = fitted_names()

    def model_of(x) -> DetectorModel:
        return start.with_values(**{n: _from_free(n, v) for n, v in zip(names, x)})

    def loss(x) -> float:
        m = model_of(x)
        value = fit_loss(module_statistics(generate_detector(n_modules, seed, model=m).charges), target)
        if progress is not None:
            progress(value, m)
        return value

    x0 = np.array([_to_free(n, getattr(start, n)) for n in names])
    if generations > 0:
        x0 = _evolve(loss, x0, generations, seed)
    res = minimize(loss, x0, method="Nelder-Mead",
                   options={"maxfev": max_evals, "xatol": 1e-3, "fatol": 1e-6, "adaptive": True})
    best = model_of(res.x)
    terms = fit_terms(module_statistics(generate_detector(n_modules, seed, model=best).charges), target)
    return FitResult(model=best, loss=float(sum(FIT_WEIGHTS[k] * v for k, v in terms.items())), terms=terms,
                     evaluations=int(res.nfev) + generations * ES_POPULATION + (generations > 0))


def calibration_block(model: DetectorModel) -> str:
    """The `CALIBRATION = DetectorModel(...)` source of data/detector.py for `model`."""
    lines = ["CALIBRATION = DetectorModel("]
    lines += [f"    {n}={getattr(model, n)!r}," for n in DetectorModel.fitted_fields()]
    return "\n".join(lines + [")"])


@dataclass(frozen=True)
class RealismRow:
    name: str
    n_modules: int
    distances: RealismDistances


def realism_table(n_generated: int = REPORT_MODULES, seed: int = REPORT_SEED,
                  model: DetectorModel = CALIBRATION) -> list[RealismRow]:
    """Distances to the held-out crossings of: the detector generator, the sparse synthetic
    generator (data/synthetic.py, default parameters) and, as the floor set by the
    crossings' own statistics, the training part."""
    from .synthetic import generate

    held = module_statistics(heldout_crossings().charges)
    train = training_crossings()
    rows = [("detector generator", generate_detector(n_generated, seed, model=model).charges),
            ("synthetic generator (sparse)", generate(n_generated, seed)),
            ("training crossings (floor)", train.charges)]
    return [RealismRow(name, int(q.shape[0]), distances(module_statistics(q), held)) for name, q in rows]


def realism_markdown(rows: list[RealismRow]) -> list[str]:
    from econ_emd.base.tables import markdown_table

    head = ["vs held-out crossings", "modules", *(name for name, _ in DISTANCE_COLUMNS)]
    body = [[r.name, f"{r.n_modules:,}", *(fmt.format(getattr(r.distances, name)) for name, fmt in DISTANCE_COLUMNS)]
            for r in rows]
    return markdown_table(head, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m econ_emd.data.detector_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print the realism table (held-out crossings) and stop")
    parser.add_argument("--modules", type=int, default=FIT_MODULES, help="generated modules per trial")
    parser.add_argument("--generations", type=int, default=ES_GENERATIONS, help="evolution-strategy generations")
    parser.add_argument("--max-evals", type=int, default=FIT_MAX_EVALS, help="Nelder-Mead trials")
    parser.add_argument("--seed", type=int, default=FIT_SEED)
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(realism_markdown(realism_table())))
        return 0
    count, best = [0], [np.inf]

    def progress(value: float, model: DetectorModel) -> None:
        count[0] += 1
        if value < best[0]:
            best[0] = value
            if count[0] > 1:
                print(f"  trial {count[0]}: objective {value:.4f}\n{calibration_block(model)}", file=sys.stderr)

    result = fit(training_crossings(), n_modules=args.modules, seed=args.seed, generations=args.generations,
                 max_evals=args.max_evals, progress=progress)
    print(f"# loss {result.loss:.5f} after {result.evaluations} trials ("
          + ", ".join(f"{k} {v:.5f}" for k, v in result.terms.items()) + ")")
    print(calibration_block(result.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
