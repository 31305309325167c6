"""The equal-bandwidth stage (compare-econt): which front-end algorithm keeps a module best
at 2-5 output links, on the same rules (training/compare_econt.py, training/rebuild.py).

Two sets of modules, each with the training modules of its own kind for what a rule or a
reference code learns: the run's test modules (its train split for learning), and the
held-out simulated ttbar crossings (the training crossings for learning; the held-out ones
are read for judging only). Per link count: best choice, super trigger cells and threshold
sum with the product's rule and CMS's; the reference codes (sum only, the average module,
the linear code at the same bits); the product's autoencoder trained at that link count
(`compare_econt.seeds` training seeds, pooled); the CMS test-vector autoencoder at 5 links.
Then the summary weighted by the detector's link allocation, the verdicts, and the
low-energy signal study on the held-out crossings (training/signals.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from econ_emd.base.artifacts import atomic_write_text, save_figure
from econ_emd.training.compare_econt import Judged
from econ_emd.training.signals import SignalResponse

from .result import StageContext, StageResult, encoder_request, training_seeds

log = logging.getLogger("econ_emd")

DATASETS = {"generated": "the run's test modules", "crossings": "held-out simulated ttbar crossings (CMS vectors)"}
AUTOENCODER = "autoencoder (this product)"
CMS_AUTOENCODER = "CMS test-vector autoencoder (electron-trained)"
#: the link count of the CMS autoencoder's 9-bit latents
CMS_AUTOENCODER_LINKS = 5
#: the rows of the signal study: the product's rules of the algorithms, the autoencoder, and
#: the two reference codes that keep any shape
SIGNAL_ROWS = ("best_choice", "super_trigger_cells", "threshold_sum", "linear code", AUTOENCODER)


def _rows(d) -> dict[str, list[Judged]]:
    return {k: [Judged(**r) for r in v] for k, v in d.items()}


def _signals(d) -> list[SignalResponse]:
    return [SignalResponse(**s) for s in d]


@dataclass(kw_only=True)
class CompareEcontResult(StageResult):
    rows: dict[str, list[Judged]]              # dataset -> judged (algorithm, links)
    verdicts: dict[str, dict]                  # dataset -> links -> best row, the encoder against every row
    weighted: dict[str, dict[str, float]]      # dataset -> row -> median EMD weighted by the link allocation
    weights: dict[str, float]                  # links -> share of the detector's modules (of those studied)
    signals: list[SignalResponse] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    table: str = "compare_econt.md"
    DECODE = {"rows": _rows, "signals": _signals}

    def report_json(self, others) -> dict:
        return {"equal_bandwidth": {k: {f"{r.algorithm}@{r.n_links}": r.median_emd for r in v}
                                    for k, v in self.rows.items()},
                "equal_bandwidth_weighted": self.weighted}

    def report_markdown(self, others) -> list[str]:
        from econ_emd.base.tables import markdown_table

        md = ["## Which front-end algorithm keeps the module best, at equal output bandwidth", "",
              f"Median exact EMD (lower is better) per link count; the product's rule for every algorithm "
              f"(`training/rebuild.py`), CMS's beside it; the full tables with bootstrap intervals, by occupancy, "
              f"are in `compare_econt/{self.table}`.", ""]
        for name, rows in self.rows.items():
            links = sorted({r.n_links for r in rows})
            names = list(dict.fromkeys(r.algorithm for r in sorted(rows, key=lambda r: (r.kind, r.algorithm))))
            by = {(r.algorithm, r.n_links): r for r in rows}
            body = [[a, *(f"{by[a, n].median_emd:.3f}" if (a, n) in by else "-" for n in links),
                     f"{self.weighted[name][a]:.3f}" if a in self.weighted.get(name, {}) else "-"] for a in names]
            md += [f"### {DATASETS[name]}", "",
                   *markdown_table(["row", *(f"{n} links" for n in links), "weighted by the detector's links"], body),
                   ""]
            for n, v in self.verdicts[name].items():
                line = f"- {n} links: best {v['best']} ({v['best_median']:.3f})"
                if "encoder_vs" in v:
                    lost = [k for k, w in v["encoder_vs"].items() if not w["beats"]]
                    line += (f"; the autoencoder {v['encoder_median']:.3f} beats every other row" if not lost else
                             f"; the autoencoder {v['encoder_median']:.3f} loses to {', '.join(lost)}")
                md.append(line)
            md.append("")
        if self.signals:
            md += ["### Low-energy signals in the held-out crossings (an EM shower injected)", "",
                   *signals_markdown(self.signals), ""]
        return md


def signals_markdown(signals: list[SignalResponse]) -> list[str]:
    from econ_emd.base.tables import markdown_table

    energies = signals[0].energies_mip
    body = [[str(s.n_links), s.algorithm,
             *(f"{b:+.2f} / {r:.2f} / {p:.2f}" if np.isfinite(b) else f"lost ({e:.0%} found)"
               for b, r, p, e in zip(s.bias, s.resolution, s.position_cm, s.efficiency))]
            for s in sorted(signals, key=lambda s: (s.n_links, s.algorithm))]
    return ["Recovered signal energy in its region: bias / resolution (half the 16-84% width of recovered over "
            "true), and the 68% position error (cm), per injected energy:", "",
            *markdown_table(["links", "row", *(f"{e:g} MIP_T" for e in energies)], body)]


def _pooled(name: str, n: int, calq: np.ndarray, energies: list[np.ndarray], runner, note: str) -> Judged:
    """One row of several trainings: their modules pooled (every seed's rebuild of every
    module), so the median and its interval cover the spread between seeds too."""
    from econ_emd.training.compare_econt import judge

    return judge(name, n, np.concatenate([calq] * len(energies)), np.concatenate(energies), runner, note,
                 "autoencoder", seeds=len(energies))


def _autoencoders(ctx: StageContext, ds) -> dict[int, list[tuple]]:
    """link count -> [(encoder, decoder) per training seed]: the encoder stage's at its link
    count (seed 0), and with train_encoders the others, trained here (resumable)."""
    from econ_emd.training.encoder_run import reused_run, train_and_evaluate
    from econ_emd.training.encoder_train import DECODER_FILE, load_decoder, load_encoder

    def load(folder):
        return load_encoder(folder), load_decoder(folder / DECODER_FILE)

    b, e = ctx.cfg.compare_econt, ctx.cfg.encoder
    counts = b.link_counts if b.train_encoders else [e.links]
    seeds = training_seeds(ctx.cfg, b.seeds)
    frozen = runner = None
    models: dict[int, list[tuple]] = {}
    for n in counts:
        for k, seed in enumerate(seeds):
            out = ctx.out / f"encoder_{n}links" / f"seed_{k}"
            request = encoder_request(ctx.cfg, seed=seed, links=n, latent_bits=None)
            # the encoder stage's training, and the seed's trainings at the link counts before
            # (the asic kind's float start is the same at every link count), stand for an
            # equal request
            label = f"compare-econt[{n} links, seed {k}]"
            earlier = [ctx.out / f"encoder_{m}links" / f"seed_{k}" for m in counts[:counts.index(n)]]
            reuse_from = [ctx.folder("encoder"), *earlier]
            if reused_run(request, out, reuse_from, label) is None:
                if frozen is None:
                    frozen, runner = ctx.frozen_emd_cnn([e.loss]), ctx.emd_runner()
                train_and_evaluate(request, data=ds, out=out, frozen=frozen, runner=runner, label=label,
                                   reuse_from=reuse_from)
            models.setdefault(n, []).append(load(out))
    return models


def _sets(ctx: StageContext, ds) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (training modules, judged modules), integer CALQ."""
    from econ_emd.data.crossings import heldout_crossings, require_training, training_crossings
    from econ_emd.training.rebuild import integer_calq

    b = ctx.cfg.compare_econt
    test = integer_calq(ds["test"][: b.max_modules])
    out = {"generated": (integer_calq(ds["train"][: b.max_modules]), test[test.sum(1) > 0])}
    if b.heldout_crossings:
        train = require_training(training_crossings(), "the rebuild rules and reference codes")
        out["crossings"] = (integer_calq(train), integer_calq(heldout_crossings().charges))
    return out


def link_weights(link_counts) -> dict[int, float]:
    """The share of the detector's modules (of those at the studied link counts) that run
    each link count, from the detector's link allocation (`data.allocation`)."""
    from econ_emd.data.allocation import embedded_allocation

    per = embedded_allocation().modules_per_link_count()
    total = sum(per.get(n, 0) for n in link_counts)
    return {n: per.get(n, 0) / total for n in link_counts}


def run_compare_econt(ctx: StageContext) -> CompareEcontResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training import compare_econt as ce
    from econ_emd.training import rebuild as rb
    from econ_emd.training import signals as sg
    from econ_emd.training.encoder_train import reconstruct

    b = ctx.cfg.compare_econt
    ds = load_dataset(ctx.folder("data"))
    runner = ctx.emd_runner()
    models = {n: m for n, m in _autoencoders(ctx, ds).items() if n in b.link_counts}

    def encoder_energies(n: int, q: np.ndarray) -> list[np.ndarray]:
        return [ce.autoencoder_energies(q, reconstruct(enc, dec, q.astype(np.float64))[1]) for enc, dec in models[n]]

    rows: dict[str, list[Judged]] = {}
    signals: list[SignalResponse] = []
    sets = _sets(ctx, ds)
    for name, (train, test) in sets.items():
        shapes, linear = rb.fit_shapes(train), rb.LinearCode.fit(train)
        judged = []
        for n in b.link_counts:
            judged += ce.conventional(test, n, b.threshold_adc, b.drop_lsb, shapes, runner)
            judged += ce.references(test, n, shapes, linear, runner)
            if n in models:
                judged.append(_pooled(AUTOENCODER, n, test, encoder_energies(n, test), runner,
                                      f"{ctx.cfg.encoder.kind}, {ctx.cfg.encoder.loss} loss, "
                                      f"{len(models[n])} seed(s) pooled"))
            if b.cms_autoencoder and n == CMS_AUTOENCODER_LINKS:
                from econ_emd.econt.vectors import cms_autoencoder_weights

                judged.append(ce.judge(CMS_AUTOENCODER, n, test, ce.cms_autoencoder_energies(test, *cms_autoencoder_weights()),
                                       runner, "the vectors' weights, the ASIC's arithmetic", "autoencoder"))
            log.info("compare-econt[%s, %d links]: %s", name, n,
                     ", ".join(f"{r.algorithm} {r.median_emd:.3f}" for r in judged if r.n_links == n))
            if name == "crossings" and b.signals:
                inj = sg.inject(test, ctx.cfg.seed, b.signal_energies_mip)
                rebuilds = {"best_choice": lambda q: rb.best_choice_energies(q.astype(np.int64), n, b.drop_lsb, "learned", shapes),
                            "super_trigger_cells": lambda q: rb.super_trigger_cell_energies(q.astype(np.int64), n, b.drop_lsb,
                                                                                              "learned", shapes),
                            "threshold_sum": lambda q: rb.threshold_sum_energies(q.astype(np.int64), n, b.threshold_adc,
                                                                                 b.drop_lsb, "learned", shapes)[0],
                            "linear code": lambda q: linear.energies(q.astype(np.int64), n)}
                if n in models:
                    rebuilds[AUTOENCODER] = lambda q: np.mean(encoder_energies(n, q), axis=0)
                signals += [sg.response(k, n, f, inj) for k, f in rebuilds.items()]
        rows[name] = judged
    weights = link_weights(b.link_counts)
    weighted = {k: ce.weighted_summary(v, weights) for k, v in rows.items()}
    verdicts = {k: ce.verdicts(v, AUTOENCODER) for k, v in rows.items()}
    plots = [_plot(rows, ctx.out / "compare_econt.png")]
    if signals:
        plots.append(_plot_signals(signals, ctx.out / "signals.png"))
    text = "\n".join([*(ce.markdown(v, DATASETS[k]) for k, v in rows.items()),
                      *(["### Low-energy signals", "", *signals_markdown(signals), ""] if signals else [])])
    atomic_write_text(ctx.out / "compare_econt.md", text)
    return CompareEcontResult(rows=rows, verdicts=verdicts, weighted=weighted,
                              weights={str(k): v for k, v in weights.items()}, signals=signals, plots=plots,
                              details={"n_modules": {k: int(len(t)) for k, (_, t) in sets.items()},
                                       "autoencoder_link_counts": sorted(models)})


def _plot(rows: dict[str, list[Judged]], path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(6.0 * len(rows), 4.4), squeeze=False)
    for ax, (name, judged) in zip(axes[0], rows.items()):
        for algo in sorted({r.algorithm for r in judged}):
            pts = sorted((r for r in judged if r.algorithm == algo), key=lambda r: r.n_links)
            if len(pts) < 2 and "CMS" not in algo:
                continue
            n = [r.n_links for r in pts]
            med = np.array([r.median_emd for r in pts])
            lo = med - np.array([r.median_interval[0] for r in pts])
            hi = np.array([r.median_interval[1] for r in pts]) - med
            style = "--" if "CMS rule" in algo or pts[0].kind == "reference" else "-"
            ax.errorbar(n, med, yerr=[lo, hi], fmt="o" + style, capsize=3, label=algo, lw=1)
        ax.set_xlabel("output links (eTx)")
        ax.set_ylabel("median exact EMD (16-84% bootstrap)")
        ax.set_title(DATASETS[name], fontsize=10)
        ax.set_xticks(sorted({r.n_links for r in judged}))
        ax.legend(fontsize=6)
    save_figure(fig, path)
    return path.name


def _plot_signals(signals: list[SignalResponse], path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = sorted({s.n_links for s in signals})
    fig, axes = plt.subplots(2, len(links), figsize=(3.6 * len(links), 6.2), squeeze=False, sharex=True)
    for j, n in enumerate(links):
        for s in (s for s in signals if s.n_links == n):
            axes[0, j].plot(s.energies_mip, s.resolution, "o-", label=s.algorithm)
            axes[1, j].plot(s.energies_mip, s.position_cm, "o-", label=s.algorithm)
        axes[0, j].set_title(f"{n} links", fontsize=10)
        axes[1, j].set_xlabel("injected energy (MIP_T)")
        for ax in axes[:, j]:
            ax.set_xscale("log")
    axes[0, 0].set_ylabel("energy resolution (16-84% / 2)")
    axes[1, 0].set_ylabel("position error, 68% (cm)")
    axes[0, 0].legend(fontsize=6)
    save_figure(fig, path)
    return path.name
