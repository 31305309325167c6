"""The run summary a person reads instead of logs: <run>/report.md and <run>/report.json.

Composes the results of every stage present in the run directory, in the registry's order
(each stage's result renders its own section), the bit-exactness table across the checks,
and links to every PNG of the run. Rebuilt at the end of every `econ-emd pipeline` and by
`econ-emd report`: it only reads the stage summaries, so it always reflects the stages on
disk, and only summaries the product signed (`stages.result.read_summary`): a figure edited
into a summary by hand is never printed.
"""
from __future__ import annotations

from pathlib import Path

from econ_emd.base.artifacts import atomic_write_text, json_text

from .registry import STAGES, load_results
from .stages.firmware import bit_exactness_markdown
from .stages.result import SUMMARY_FILE

#: the bit-exactness table goes before the stage whose section follows the checks
BIT_EXACTNESS_BEFORE = "resources"


def build(run_dir: str | Path, cfg=None) -> tuple[str, dict]:
    """The run's report from the stages present; with the run's config (`cfg`), a stage the
    config turns off (e.g. `export` for a QKeras encoder) is named as off, not as missing."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    md = [f"# econ-emd run summary: {run_dir}", ""]
    out: dict = {"run_dir": str(run_dir), "stages_present": list(results)}
    bit_md, bit_json = bit_exactness_markdown(results)
    for name in STAGES:
        if name == BIT_EXACTNESS_BEFORE and bit_md:
            md += bit_md
            out["bit_exact"] = bit_json
        r = results.get(name)
        if r is not None:
            md += r.report_markdown(results)
            out.update(r.report_json(results))
    pngs = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*.png"))
    out["plots"] = [str(p) for p in pngs]
    if pngs:
        md += ["## Plots", ""] + [f"- [{p}]({p})" for p in pngs] + [""]
    untrusted = [k for k in STAGES if k not in results and (run_dir / k / SUMMARY_FILE).exists()]
    off = [k for k in STAGES if cfg is not None and k not in results and not STAGES[k].enabled(cfg)]
    missing = [k for k in STAGES if k not in results and k not in untrusted and k not in off]
    if untrusted:
        md += [f"Not shown, their summaries are not signed by this product (edited, or written by another user or "
               f"machine; rerun them): {', '.join(untrusted)}.", ""]
        out["stages_not_trusted"] = untrusted
    if missing:
        md += [f"Stages not run yet: {', '.join(missing)}.", ""]
    if off:
        md += [f"Stages off in this configuration: {', '.join(off)}.", ""]
    return "\n".join(md), out


def write(run_dir: str | Path, cfg=None) -> Path:
    """Write report.md and report.json, unless they already say exactly this (so checking
    an up-to-date run, even in a read-only directory, writes nothing)."""
    run_dir = Path(run_dir)
    text, data = build(run_dir, cfg)
    for path, content in ((run_dir / "report.md", text), (run_dir / "report.json", json_text(data))):
        try:
            if path.read_text() == content:
                continue
        except OSError:
            pass
        atomic_write_text(path, content)
    return run_dir / "report.md"
