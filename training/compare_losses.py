"""The loss comparison: rows trained with the same seeds, their paired statistics, the
ratios the goals name, the table and the plot (the `compare_losses` stage)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from econ_emd.base.tables import markdown_table

from .encoder_run import EncoderRun

#: the baselines the EMD-CNN loss is compared with, in the order the ratios are reported
BASELINES = ("telescope", "wmse", "mse", "sinkhorn")


@dataclass
class PairedComparison:
    """Loss A against loss B on the same test modules and seeds."""

    a: str
    b: str
    n: int                  # (module, seed) pairs compared
    a_better: float         # fraction of them where A's exact EMD is lower
    ties: float
    median_ratio: float     # median EMD of A / of B (all seeds pooled)
    ci_low: float           # 95% bootstrap interval of the ratio (modules resampled)
    ci_high: float


def paired_comparison(a: np.ndarray, b: np.ndarray, names: tuple[str, str], n_boot: int,
                      rng: np.random.Generator) -> PairedComparison:
    """a, b: (seeds, modules) exact EMD of two losses' reconstructions of the same modules
    (seed i of A against seed i of B). The bootstrap resamples modules (the same ones for
    both losses and every seed), so the interval keeps the pairing."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison of {names}: shapes {a.shape} and {b.shape} differ")
    n_mod = a.shape[1]
    ratios = np.empty(n_boot)
    for lo in range(0, n_boot, 64):
        idx = rng.integers(0, n_mod, (min(64, n_boot - lo), n_mod))
        ra = np.median(a[:, idx].transpose(1, 0, 2).reshape(len(idx), -1), axis=1)
        rb = np.median(b[:, idx].transpose(1, 0, 2).reshape(len(idx), -1), axis=1)
        ratios[lo:lo + len(idx)] = ra / rb
    lo_ci, hi_ci = np.percentile(ratios, [2.5, 97.5])
    return PairedComparison(names[0], names[1], int(a.size), float((a < b).mean()), float((a == b).mean()),
                            float(np.median(a) / np.median(b)), float(lo_ci), float(hi_ci))


@dataclass
class LossRow:
    """One row of the comparison: a loss trained with the same seeds as every other row."""

    name: str
    runs: list[EncoderRun]           # one per seed, in seed order
    settings: dict                   # learning_rate, epochs (cap), source ("search" | "tuned" | ...)

    @property
    def medians(self) -> list[float]:
        return [r.evaluation.overall.median for r in self.runs]

    @property
    def means(self) -> list[float]:
        return [r.evaluation.overall.mean for r in self.runs]

    def to_json(self) -> dict:
        return {"settings": self.settings, "median_per_seed": self.medians, "mean_per_seed": self.means,
                "median_over_seeds": float(np.median(self.medians)), "spread": spread(self.medians),
                "runs": [{k: v for k, v in r.to_json().items() if k != "history"} for r in self.runs]}

    @classmethod
    def from_json(cls, name: str, d: dict) -> "LossRow":
        return cls(name, [EncoderRun.from_json(r) for r in d["runs"]], d["settings"])


def spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "max": float(v.max()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def comparison_ratios(rows: dict[str, LossRow], main: str, float_row: str | None) -> dict[str, float]:
    """The ratios the goals name, each of the median over seeds: main / every other row, the
    worst seed's ratio to the best baseline, and the quantized / float mean EMD."""
    med = {k: float(np.median(r.medians)) for k, r in rows.items()}
    ratios = {}
    if main not in rows:
        return ratios
    others = [k for k in rows if k not in (main, float_row)]
    for other in others:
        ratios[f"median {main} / {other}"] = med[main] / med[other]
    baselines = [k for k in others if k in BASELINES]
    if baselines:
        best = min(baselines, key=lambda k: med[k])
        per_seed = np.array(rows[main].medians) / np.array(rows[best].medians)
        ratios[f"median {main} / best baseline ({best})"] = med[main] / med[best]
        ratios[f"worst seed {main} / {best}"] = float(per_seed.max())
    if float_row in rows:
        ratios[f"mean quantized / float ({main})"] = float(np.mean(rows[main].means) / np.mean(rows[float_row].means))
    return ratios


def comparison_markdown(rows: dict[str, LossRow], ratios: dict[str, float],
                        paired: list[PairedComparison], search: dict | None = None) -> str:
    """Per loss: the median exact EMD of every seed, the median over seeds and its spread,
    by occupancy; the paired comparisons; the settings each loss trained with and, with a
    search, every candidate's validation score."""
    n_seeds = max(len(r.runs) for r in rows.values())
    # occupancy bins without a test module (busy data has no module of 1-2 TCs) are left out
    first = next(iter(rows.values())).runs[0].evaluation.by_occupancy
    live = [i for i, b in enumerate(first) if b.n]
    head = ["loss", "quantized", *[f"seed {i}" for i in range(n_seeds)], "median over seeds", "min-max",
            "mean EMD", *[f"occ {first[i].lo}-{first[i].hi}" for i in live]]
    body = []
    for name, r in rows.items():
        occ = [np.median([run.evaluation.by_occupancy[i].median for run in r.runs
                          if run.evaluation.by_occupancy[i].n]) for i in live]
        sp = spread(r.medians)
        body.append([name, "yes" if r.runs[0].quantized else "no", *[f"{m:.3f}" for m in r.medians],
                     f"{np.median(r.medians):.3f}", f"{sp['min']:.3f}-{sp['max']:.3f}",
                     f"{np.mean(r.means):.3f}", *[f"{v:.3f}" for v in occ]])
    lines = ["Median exact EMD on the test modules, per training seed (the same seeds and split for every loss):", "",
             *markdown_table(head, body), ""]
    lines += ["Paired, module by module (same modules, same seed): how often A's reconstruction is closer, "
              "and the median ratio with its 95% bootstrap interval:", "",
              *markdown_table(["A", "B", "A closer", "ties", "median A / B", "95% interval"],
                              [[p.a, p.b, f"{100 * p.a_better:.1f}%", f"{100 * p.ties:.1f}%", f"{p.median_ratio:.3f}",
                                f"{p.ci_low:.3f}-{p.ci_high:.3f}"] for p in paired]), ""]
    lines += ["Training settings (learning rate; epoch cap with early stopping on the validation loss, "
              "best epoch kept):", "",
              *markdown_table(["loss", "learning rate", "epoch cap", "chosen by", "epochs run (best) per seed"],
                              [[n, f"{r.settings['learning_rate']:g}", r.settings["epochs"], r.settings["source"],
                                ", ".join(f"{run.epochs_run} ({run.best_epoch})" for run in r.runs)]
                               for n, r in rows.items()]), ""]
    if search:
        lines += ["The search (seed 0, validation split; * beyond the candidates, tried because the best "
                  "lay on their edge):", "",
                  *markdown_table(["loss", "learning rate", "validation median", "validation mean",
                                   "epochs run (best)", "chosen"],
                                  [[loss, f"{t['learning_rate']:g}{' *' if t.get('beyond_the_grid') else ''}",
                                    f"{t['val_median']:.3f}", f"{t['val_mean']:.3f}",
                                    f"{t['epochs_run']} ({t['best_epoch']})",
                                    "yes" if t["learning_rate"] == s["chosen"]["learning_rate"] else ""]
                                   for loss, s in search.items() for t in s["trials"]]), ""]
    lines += [f"- {k}: {v:.3f}" for k, v in ratios.items()]
    return "\n".join(lines) + "\n"


def plot_emd_vs_occupancy_seeds(rows: dict[str, LossRow], path) -> None:
    """Median exact EMD per occupancy bin, one line per loss at the median over seeds, its
    band the seeds' lowest and highest value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from econ_emd.base.artifacts import save_figure

    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    bins = next(iter(rows.values())).runs[0].evaluation.by_occupancy
    live = [i for i, b in enumerate(bins) if b.n]
    x = np.arange(len(live))
    for name, r in rows.items():
        per_seed = np.array([[run.evaluation.by_occupancy[i].median for i in live] for run in r.runs])
        mid = np.median(per_seed, axis=0)
        ax.plot(x, mid, marker="o", label=f"{name} ({len(r.runs)} seeds)")
        ax.fill_between(x, per_seed.min(0), per_seed.max(0), alpha=0.2)
    ax.set_xticks(x, [f"{bins[i].lo}-{bins[i].hi}" for i in live])
    ax.set(xlabel="occupancy (TCs above 1 MIP_T)", ylabel="median exact EMD (input, reconstruction)",
           title="Loss comparison: median over seeds, band = seeds' range")
    ax.legend(fontsize=8)
    save_figure(fig, path)
