"""`econ-emd econt run|verify`: the ECON-T emulator on link words, and its check against
golden test vectors. Neither reads the run config: they work on files the user names."""
from __future__ import annotations

import logging
from pathlib import Path

from econ_emd.base.artifacts import atomic_write_text, claim_output_file
from econ_emd.base.errors import CheckFailed, UserError
from econ_emd.econt.emulator import emulate
from econ_emd.econt.links import format_tx, read_rx
from econ_emd.econt.registers import load_config
from econ_emd.econt.verify import VectorResult, verify_tree

log = logging.getLogger("econ_emd")


def run_emulator(input_csv: str, config: str, output: str | None) -> None:
    """Emulate; the words go to standard output, or to `output`: a new or regular file only
    (never a link, folder, device or FIFO, nor one of the inputs), checked before any work."""
    to_file = output is not None and output != "-"
    if to_file:
        claim_output_file(output, "--output", inputs=(input_csv, config))
    cfg = load_config(config)
    rx = read_rx(input_csv)
    try:
        out = emulate(cfg, rx)
    except Exception as exc:    # noqa: BLE001 - `econt run` never ends in a traceback
        raise UserError(f"econt run: the emulator failed on {config} ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())}); please report it") from None
    text = format_tx(out.tx)
    if not to_file:
        print(text, end="")
        return
    path = Path(output)
    atomic_write_text(path, text)
    log.info("%s: %d crossings, %s on %d links -> %s", input_csv, len(rx), cfg.algorithm_name,
             cfg.n_etx, path)


def _describe(r: VectorResult) -> list[str]:
    if r.status == "match":
        return [f"{r.name}: {r.algorithm}, {r.n_bx} crossings, 100% of {r.words} words identical"]
    if r.status in ("skipped", "error"):
        return [f"{r.name}: {r.status.upper()}: {r.message}"]
    lines = [f"{r.name}: MISMATCH ({r.algorithm}): {100 * r.agreement:.2f}% of {r.words} words, "
             f"{r.bx_equal}/{r.n_bx} crossings identical; first at row {r.first.row + 1} "
             f"(BX {r.first.bx})"]
    for link, e, p in r.first.links:
        lines.append(f"    TX_DATA_{link}: expected {e:08x} produced {p:08x} "
                     f"(bits differing: {e ^ p:032b})")
    for f in r.first.fields:
        lines.append(f"    field {f.name}: expected {f.expected:0{f.width}b} produced "
                     f"{f.produced:0{f.width}b}")
    return lines


def run_verify(folder: str) -> None:
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UserError(f"{folder}: a file; econt verify takes a folder of test vectors (folders holding "
                        "init.yaml and testOutput.csv[.gz])")
    report = verify_tree(folder, progress=lambda r: print("\n".join(_describe(r)), flush=True))
    counts = {s: sum(r.status == s for r in report.results)
              for s in ("match", "mismatch", "error", "skipped")}
    summary = (f"{counts['match']} of {len(report.results)} configurations identical; "
               f"{counts['mismatch']} mismatched, "
               f"{counts['error']} with unusable configuration or input, "
               f"{counts['skipped']} without expected output")
    print(summary)
    if report.input_errors:
        raise UserError(f"econt verify: {summary}")
    if not report.passed:
        raise CheckFailed(f"econt verify: {summary}")
