"""The data and label stages: modules split into train/val/test, and exact-EMD labels."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from econ_emd.base.tables import markdown_table

from .result import StageContext, StageResult

log = logging.getLogger("econ_emd")

#: occupancy bins of the data section of the run report (TCs above 1 MIP_T, inclusive)
REPORT_OCCUPANCY_BINS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 48))


@dataclass(kw_only=True)
class DataResult(StageResult):
    source: str
    n_modules: dict[str, int]
    n_zero_sum_dropped: int
    occupancy_median: float
    occupancy_histogram: list[int]

    def report_json(self, others) -> dict:
        return {"data": {"source": self.source, "n_modules": self.n_modules, "occupancy_median": self.occupancy_median,
                         "occupancy_histogram": self.occupancy_histogram}}

    def report_markdown(self, others) -> list[str]:
        n = self.n_modules
        total = max(sum(self.occupancy_histogram), 1)
        rows = []
        for lo, hi in REPORT_OCCUPANCY_BINS:
            k = sum(self.occupancy_histogram[lo: hi + 1])
            rows.append([f"{lo}-{hi}", f"{k:,}", f"{100 * k / total:.1f}%"])
        return ["## Data", "", f"Source: {self.source}; modules train/val/test: {n['train']:,} / {n['val']:,} / "
                f"{n['test']:,}; median occupancy {self.occupancy_median:g} TCs.", "",
                *markdown_table(["TCs above threshold", "modules", "share"], rows), ""]


@dataclass(kw_only=True)
class LabelResult(StageResult):
    n_pairs: int
    pairs_per_second: float | None
    solver: str
    n_jobs: int

    def report_json(self, others) -> dict:
        return {"labels": {"n_pairs": self.n_pairs, "pairs_per_second": self.pairs_per_second}}

    def report_markdown(self, others) -> list[str]:
        return ["## Exact EMD labels", "", f"{self.n_pairs:,} pairs with the {self.solver} solver at "
                f"{self.pairs_per_second or 0:,.0f} pairs/s ({self.n_jobs} workers).", ""]


def run_data(ctx: StageContext) -> DataResult:
    from econ_emd.data.dataset import build_dataset, save_dataset

    ds = build_dataset(ctx.cfg.data, ctx.cfg.seed)
    summary = save_dataset(ds, ctx.out)
    log.info("data: %s modules (train %d, val %d, test %d), %d zero-sum rows dropped, median occupancy %.0f",
             f"{ds.n_modules:,}", *summary["n_modules"].values(), summary["n_zero_sum_dropped"],
             summary["occupancy_median"])
    return DataResult.from_json(summary)


def run_label(ctx: StageContext) -> LabelResult:
    from econ_emd.data.dataset import load_dataset
    from econ_emd.data.labels import label_pairs, make_pairs, save_labels
    from econ_emd.emd.exact import prepare_solver, resolve_solver

    cfg = ctx.cfg
    ds = load_dataset(ctx.folder("data"))
    pairs = make_pairs(ds, cfg.label, cfg.seed)
    runner = ctx.emd_runner()
    compile_seconds = prepare_solver(cfg.emd.solver)   # kept out of the throughput figure
    if compile_seconds > 1:
        log.info("label: compiled the exact-EMD solver in %.1f s (once per checkout, then cached)",
                 compile_seconds)
    speed = label_pairs(pairs, runner)
    extra = {"solver": resolve_solver(cfg.emd.solver), "n_jobs": runner.n_jobs,
             "dask_scheduler": cfg.emd.dask_scheduler, "solver_compile_seconds": round(compile_seconds, 2),
             **speed}
    summary = save_labels(pairs, ctx.out, extra)
    log.info("label: %s pairs in %.1f s (%s pairs/s, solver %s)", f"{speed['n_pairs']:,}",
             speed["seconds"], f"{speed['pairs_per_second'] or 0:,.0f}", extra["solver"])
    return LabelResult.from_json(summary)
