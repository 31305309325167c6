"""The equal-bandwidth stage (compare-econt): the trained encoder against ECON-T's best
choice, super trigger cells and threshold sum, at 2-5 output links, on the synthetic test
modules and on the simulated crossings of the CMS vectors (training/compare_econt.py holds
the rules)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from econ_emd.base.artifacts import atomic_write_text, save_figure
from econ_emd.training.compare_econt import Judged

from .result import StageContext, StageResult, encoder_request

log = logging.getLogger("econ_emd")

DATASETS = {"synthetic": "synthetic test modules", "simulated": "simulated ttbar crossings (CMS vectors)"}
AUTOENCODER = "autoencoder (this product)"
CMS_AUTOENCODER = "CMS autoencoder (AE_8x8_c8_S2_ele)"
#: the link count of the CMS autoencoder's 9-bit latents
CMS_AUTOENCODER_LINKS = 5


def _rows(d) -> dict[str, list[Judged]]:
    return {k: [Judged(**r) for r in v] for k, v in d.items()}


@dataclass(kw_only=True)
class CompareEcontResult(StageResult):
    rows: dict[str, list[Judged]]          # dataset -> judged (algorithm, links)
    winners: dict[str, dict[str, str]]     # dataset -> links -> "algorithm (median; next: x, +y%)"
    plots: list[str] = field(default_factory=list)
    table: str = "compare_econt.md"
    DECODE = {"rows": _rows}

    def report_json(self, others) -> dict:
        return {"equal_bandwidth": {k: {f"{r.algorithm}@{r.n_links}": r.median_emd for r in v}
                                    for k, v in self.rows.items()}}

    def report_markdown(self, others) -> list[str]:
        from econ_emd.training.compare_econt import markdown

        md = ["## The encoder against ECON-T's algorithms at equal output bandwidth", ""]
        for name, rows in self.rows.items():
            md += [markdown(rows, f"{DATASETS[name]}: exact EMD, module-energy ratio, centroid shift"), ""]
            md += [f"- {links} links: {w}" for links, w in self.winners[name].items()] + [""]
        return md


def _winners(rows: list[Judged]) -> dict[str, str]:
    out = {}
    for n in sorted({r.n_links for r in rows}):
        ranked = sorted((r for r in rows if r.n_links == n), key=lambda r: r.median_emd)
        best = ranked[0]
        text = f"{best.algorithm} wins (median exact EMD {best.median_emd:.3f})"
        if len(ranked) > 1:
            nxt = ranked[1]
            text += f"; next {nxt.algorithm} {nxt.median_emd:.3f} (+{100 * (nxt.median_emd / best.median_emd - 1):.0f}%)"
        out[str(n)] = text
    return out


def _plot(rows: dict[str, list[Judged]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4.2), squeeze=False)
    for ax, (name, judged) in zip(axes[0], rows.items()):
        for algo in sorted({r.algorithm for r in judged}):
            pts = sorted((r for r in judged if r.algorithm == algo), key=lambda r: r.n_links)
            n = [r.n_links for r in pts]
            med = [r.emd["overall"]["median"] for r in pts]
            lo = [r.emd["overall"]["p16"] for r in pts]
            hi = [r.emd["overall"]["p84"] for r in pts]
            line = ax.plot(n, med, "o-", label=algo)[0]
            ax.fill_between(n, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("output links (eTx)")
        ax.set_ylabel("exact EMD (median, 16-84% band)")
        ax.set_title(DATASETS[name], fontsize=10)
        ax.set_xticks(sorted({r.n_links for r in judged}))
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _autoencoders(ctx: StageContext, ds) -> dict[int, tuple]:
    """link count -> (encoder, decoder): the encoder stage's, and with train_encoders the
    encoder trained at every other link count (resumable, in this stage's folder)."""
    from econ_emd.training.encoder_run import train_and_evaluate
    from econ_emd.training.encoder_train import DECODER_FILE, load_decoder, load_encoder

    def load_autoencoder(folder):
        return load_encoder(folder), load_decoder(folder / DECODER_FILE)

    b, e = ctx.cfg.compare_econt, ctx.cfg.encoder
    models = {e.links: load_autoencoder(ctx.folder("encoder"))}
    if b.train_encoders:
        frozen = ctx.frozen_emd_cnn([e.loss])
        runner = ctx.emd_runner()
        for n in b.link_counts:
            if n in models:
                continue
            out = ctx.out / f"encoder_{n}links"
            train_and_evaluate(encoder_request(ctx.cfg, links=n, latent_bits=None), data=ds, out=out, frozen=frozen,
                               runner=runner, label=f"compare-econt[{n} links]")
            models[n] = load_autoencoder(out)
    return models


def run_compare_econt(ctx: StageContext) -> CompareEcontResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.training import compare_econt as bw
    from econ_emd.training.encoder_train import reconstruct

    b = ctx.cfg.compare_econt
    ds = load_dataset(ctx.folder("data"))
    runner = ctx.emd_runner()
    calq = {"synthetic": bw.integer_calq(ds["test"][: b.max_modules])}
    calq["synthetic"] = calq["synthetic"][calq["synthetic"].sum(1) > 0]
    if b.simulated_crossings:
        from econ_emd.econt.vectors import simulated_calq

        calq["simulated"] = simulated_calq()
    models = {n: m for n, m in _autoencoders(ctx, ds).items() if n in b.link_counts}
    rows: dict[str, list[Judged]] = {}
    for name, q in calq.items():
        judged = []
        for n in b.link_counts:
            judged += bw.conventional(q, n, b.threshold_adc, b.drop_lsb, runner)
            if n in models:
                _, recon = reconstruct(*models[n], q.astype(np.float64))
                judged.append(bw.judge(AUTOENCODER, n, q, bw.autoencoder_energies(q, recon), runner,
                                       f"{ctx.cfg.encoder.loss} loss"))
            if b.cms_autoencoder and n == CMS_AUTOENCODER_LINKS:
                from econ_emd.econt.vectors import cms_autoencoder_weights

                judged.append(bw.judge(CMS_AUTOENCODER, n, q,
                                       bw.cms_autoencoder_energies(q, *cms_autoencoder_weights()), runner,
                                       "published weights, the ASIC's arithmetic"))
            log.info("compare-econt[%s, %d links]: %s", name, n,
                     ", ".join(f"{r.algorithm} {r.median_emd:.3f}" for r in judged if r.n_links == n))
        rows[name] = judged
    winners = {k: _winners(v) for k, v in rows.items()}
    _plot(rows, ctx.out / "compare_econt.png")
    text = "\n".join(bw.markdown(v, DATASETS[k]) for k, v in rows.items())
    atomic_write_text(ctx.out / "compare_econt.md", text)
    return CompareEcontResult(rows=rows, winners=winners, plots=["compare_econt.png"],
                           details={"n_modules": {k: int(len(v)) for k, v in calq.items()},
                                    "autoencoder_link_counts": sorted(models)})
