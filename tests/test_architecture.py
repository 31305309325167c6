"""The structure the project promises (docs/architecture.md): rooms whose imports point
down only, no import circles, one top-level import name, the YAML defaults equal to the
schema's, and stage hashes made of exactly the config values a stage reads."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from econ_emd.config import CONFIG_DIR, RunConfig, load_config
from econ_emd.registry import SCAN_POINT, STAGES, config_hash, config_values, stage_hash

#: rooms from the bottom up; a module may import its own room and rooms of a lower rank
RANK = {"base": 0, "geometry": 0, "emd": 1, "econt": 1, "data": 2, "models": 3, "training": 4, "neemo": 4, "firmware": 5, "app": 6}
REPO = Path(__file__).resolve().parent.parent


def _package_root() -> Path:
    return Path(importlib.util.find_spec("econ_emd").origin).parent


def _room_dirs() -> dict[str, Path]:
    """Where each room of the installed package lives (editable: the repository's folders)."""
    out = {"app": _package_root()}
    for room in RANK:
        if room != "app":
            out[room] = Path(importlib.util.find_spec(f"econ_emd.{room}").origin).parent
    return out


def _modules() -> dict[str, Path]:
    mods = {}
    for room, folder in _room_dirs().items():
        prefix = "econ_emd" if room == "app" else f"econ_emd.{room}"
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("").parts
            if room == "app" and rel[0] in RANK:      # a room folder inside the app folder: not ours
                continue
            name = ".".join((prefix, *rel))
            mods[name.removesuffix(".__init__")] = f
    return mods


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK and parts[1] != "app" else "app"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """econ_emd modules imported anywhere in the file (top level and inside functions)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("econ_emd"):
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) - {"econ_emd"} for m, p in mods.items()}


def test_imports_point_down_only():
    graph = _graph()
    assert len(graph) > 40, "the walk found too few modules"
    upward = [(m, t) for m, ts in graph.items() for t in ts
              if _room(t) != _room(m) and RANK[_room(t)] >= RANK[_room(m)]]
    assert not upward, "imports from a room at the same level or above: " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                cycle = visit(t)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layer_check_catches_an_upward_import(tmp_path):
    """Negative control: the same walk flags a base module that imports the application."""
    f = tmp_path / "bad.py"
    f.write_text("def f():\n    from econ_emd.registry import STAGES\n")
    found = _imports("econ_emd.base.bad", f, set(_modules()) | {"econ_emd.base.bad"})
    assert "econ_emd.registry" in found and RANK[_room("econ_emd.registry")] > RANK["base"]


def test_no_room_holds_25_percent_of_the_code_or_more():
    lines = {room: sum(len(p.read_text().splitlines()) for p in folder.rglob("*.py")
                       if room != "app" or p.relative_to(folder).parts[0] not in RANK)
             for room, folder in _room_dirs().items()}
    total = sum(lines.values())
    biggest = max(lines, key=lines.get)
    assert lines[biggest] / total < 0.25, f"{biggest} holds {lines[biggest] / total:.0%} of {total} lines: {lines}"


def test_one_top_level_import_name():
    from importlib.metadata import distribution

    dist = distribution("econ-emd")
    top = (dist.read_text("top_level.txt") or "").split()
    assert top == ["econ_emd"], top


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools to build a wheel")
def test_wheel_installs_and_runs_without_the_repository(tmp_path):
    """Build the wheel, unpack it away from the checkout and run the CLI from it."""
    import shutil

    wheel_dir, src = tmp_path / "wheel", tmp_path / "src"     # built from a copy: no build/ in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                            "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(src)], check=True, capture_output=True, timeout=600)
    wheel = next(wheel_dir.glob("econ_emd-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        names = z.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"econ_emd"}, tops
    assert "econ_emd/geometry/tables/tc_remap.csv" in names
    assert "econ_emd/firmware/rtl_testbench/stream_tb.cpp" in names
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import econ_emd, econ_emd.cli, econ_emd.geometry as g; "
            "assert econ_emd.__file__.startswith(%r), econ_emd.__file__; print(g.tc_centres().shape)" % str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "(48, 2)" in out.stdout, out.stderr[-2000:]
    shown = subprocess.run([sys.executable, "-m", "econ_emd", "show-config"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "run_dir: runs/default" in shown.stdout


def test_yaml_defaults_equal_schema_defaults():
    """configs/default.yaml documents the defaults: every value in it is the schema's own."""
    assert load_config(CONFIG_DIR / "default.yaml").model_dump() == RunConfig().model_dump()


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += _leaves(v, key + ".") if isinstance(v, dict) else [key]
    return out


def _with(cfg: RunConfig, key: str) -> RunConfig:
    """A copy of cfg with the leaf `key` changed (no validation: only the dump is hashed)."""
    *parents, last = key.split(".")

    def get(node, name):
        return node[name] if isinstance(node, dict) else getattr(node, name)

    def put(node, name, value):
        return {**node, name: value} if isinstance(node, dict) else node.model_copy(update={name: value})

    models = [cfg]
    for p in parents:
        models.append(get(models[-1], p))
    old = get(models[-1], last)
    new = 1 if old is None else (not old) if isinstance(old, bool) else old + 1 if isinstance(old, (int, float)) else \
        [*old, "x"] if isinstance(old, list) else f"{old}x" if isinstance(old, str) else "changed"
    changed = put(models[-1], last, new)
    for parent, name in zip(reversed(models[:-1]), reversed(parents)):
        changed = put(parent, name, changed)
    return changed


def _read_keys(cfg: RunConfig, name: str) -> set[str]:
    return set(_leaves(config_values(cfg, name)))


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")   # `_with` puts unvalidated values in
@pytest.mark.parametrize("encoder_path", [None, "some/encoder.h5"])
@pytest.mark.parametrize("name", [*STAGES, SCAN_POINT])
def test_stage_hash_changes_when_and_only_when_a_value_it_reads_changes(name, encoder_path):
    cfg = load_config(CONFIG_DIR / "default.yaml", [f"firmware.encoder_path={encoder_path}"] if encoder_path else [])
    reads = _read_keys(cfg, name)
    assert reads, f"{name} reads nothing"
    base = config_hash(cfg, name)
    for key in _leaves(cfg.model_dump(mode="json")):
        changed = config_hash(_with(cfg, key), name) != base
        assert changed == (key in reads), f"stage {name}: changing {key} {'changes' if changed else 'keeps'} its hash"


def test_declared_reads_match_what_stages_use():
    """Spot checks of the declarations against what the bodies use."""
    cfg = load_config(CONFIG_DIR / "default.yaml")
    assert "compare_losses.losses" not in _read_keys(cfg, "encoder")
    assert {"compare_losses.losses", "compare_losses.seeds", "encoder.learning_rate"} <= _read_keys(cfg, "compare_losses")
    assert "encoder.sinkhorn_iter" not in _read_keys(cfg, "encoder")
    assert "encoder.sinkhorn_iter" in _read_keys(cfg.model_copy(update={"encoder": cfg.encoder.model_copy(
        update={"loss": "sinkhorn"})}), "encoder")
    assert {"seed", "data.synthetic.shower_probability"} <= _read_keys(cfg, "firmware")
    assert "firmware.budget.max_ii" in _read_keys(cfg, "resources")
    assert "firmware.budget.max_ii" not in _read_keys(cfg, "firmware")
    # a scan point reads what its encoder training and its firmware read, and the scan's checks
    point = _read_keys(cfg, SCAN_POINT)
    assert {"encoder.learning_rate", "rtl.latency_cutoff", "firmware.part", "scan.n_check"} <= point
    assert not {"scan.link_counts", "firmware.n_check", "compare_losses.seeds"} & point
    ext = cfg.model_copy(update={"firmware": cfg.firmware.model_copy(update={"encoder_path": "e.h5"})})
    assert STAGES["firmware"].inputs(ext) == () and "runs/default/data/modules.h5" in STAGES["firmware"].external(ext)


def test_stage_hash_follows_input_digests(tmp_path):
    """Same config, different upstream outputs (or a different external encoder): new hash."""
    from econ_emd.base.artifacts import atomic_write_json
    from econ_emd.base.integrity import sign_document

    cfg = load_config(CONFIG_DIR / "smoke.yaml")
    atomic_write_json(tmp_path / "data" / "summary.json", sign_document({"output_digests": {"modules.h5": "aaa"}}))
    h1 = stage_hash(cfg, tmp_path, "label")
    atomic_write_json(tmp_path / "data" / "summary.json", sign_document({"output_digests": {"modules.h5": "bbb"}}))
    assert stage_hash(cfg, tmp_path, "label") != h1
    # the same figures unsigned (edited by hand) are not read at all: as if there were none
    atomic_write_json(tmp_path / "data" / "summary.json", {"output_digests": {"modules.h5": "aaa"}})
    assert stage_hash(cfg, tmp_path, "label") == stage_hash(cfg, tmp_path / "none", "label") != h1
    enc = tmp_path / "enc.h5"
    enc.write_bytes(b"one")
    ext = cfg.model_copy(update={"firmware": cfg.firmware.model_copy(update={"encoder_path": str(enc)})})
    h2 = stage_hash(ext, tmp_path, "firmware")
    enc.write_bytes(b"two")
    assert stage_hash(ext, tmp_path, "firmware") != h2


#: ECON-T facts and their one home; a name mapped to None is a retired second name of a
#: fact that must not come back anywhere
FACTS = {
    "N_TC": "econ_emd.geometry", "N_LATENT": "econ_emd.econt.autoencoder",
    "LATENT_BITS": "econ_emd.econt.autoencoder", "LINK_BITS": "econ_emd.econt.link_budget",
    "AE_HEADER_BITS": "econ_emd.econt.link_budget", "AE_SUM_BITS": "econ_emd.econt.link_budget",
    "AE_MAX_LINKS": "econ_emd.econt.link_budget", "AE_LINK_COUNTS": "econ_emd.econt.link_budget",
    "N_ERX": "econ_emd.econt.links", "N_ETX": "econ_emd.econt.links", "ORBIT_BX": "econ_emd.econt.links",
    "BC_TCS_PER_LINKS": "econ_emd.econt.algorithms", "AE_MASK_BITS": "econ_emd.econt.registers",
    "E4M3": "econ_emd.econt.codes", "E5M3": "econ_emd.econt.codes", "E5M4": "econ_emd.econt.codes",
    **{retired: None for retired in ("AE_LATENTS", "AE_LATENT_BITS", "ELINK_BITS", "HEADER_BITS", "SUM_BITS",
                                     "LATENT_BITS_FOR_ELINKS", "LINK_COUNTS", "BANDWIDTH_LINK_COUNTS",
                                     "SUM_EXPONENT_BITS", "SUM_MANTISSA_BITS", "SUM_CODE_BITS")},
}
#: literal tables of ECON-T facts that only their home may write out
FACT_LITERALS = {repr({2: 3, 3: 5, 4: 7, 5: 9}): "econ_emd.econt.link_budget",
                 repr((2, 3, 4, 5)): "econ_emd.econt.link_budget", repr([2, 3, 4, 5]): "econ_emd.econt.link_budget"}


def _fact_definitions(name: str, path: Path) -> list[str]:
    """'<module>: <what>' for every definition of an ECON-T fact in a module that is not
    its home: a module-level assignment of a fact's name, or a fact's literal table."""
    found = []
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name) and t.id in FACTS and FACTS[t.id] != name:
                found.append(f"{name}: {t.id}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Dict, ast.Tuple, ast.List)):
            try:
                text = repr(ast.literal_eval(node))
            except ValueError:
                continue
            if text in FACT_LITERALS and FACT_LITERALS[text] != name:
                found.append(f"{name}: literal {text} (line {node.lineno})")
    return found


def test_every_econt_fact_is_defined_once():
    """The link budget, the latent widths per link count, the counts and the float codes of
    the ECON-T live in econt/ (and the cell count in geometry/) only: no second definition,
    under the same or a retired name, and no second copy of their tables."""
    found = [d for name, path in _modules().items() for d in _fact_definitions(name, path)]
    assert not found, "ECON-T facts defined outside their home: " + "; ".join(found)
    homes = {h for h in FACTS.values() if h}
    assert homes <= set(_modules()), homes - set(_modules())


def test_the_fact_check_catches_a_second_definition(tmp_path):
    """Negative control: a models module redefining the latent count, or writing out the
    latent-width table, is caught."""
    f = tmp_path / "bad.py"
    f.write_text("N_LATENT = 16\nWIDTHS = {2: 3, 3: 5, 4: 7, 5: 9}\n")
    assert len(_fact_definitions("econ_emd.models.bad", f)) == 2


def test_stage_bodies_import_no_other_stage():
    """A stage body module imports the shared `result` module of its folder and no other
    stage's body (econ_emd/stages/__init__.py promises it)."""
    graph = _graph()
    bodies = {m for m in graph if m.startswith("econ_emd.stages.") and m != "econ_emd.stages.result"}
    assert len(bodies) >= 5, bodies
    crossing = [(m, t) for m in bodies for t in graph[m] if t in bodies]
    assert not crossing, crossing


def test_default_yaml_writes_out_every_section_and_key():
    """configs/default.yaml is the schema's defaults written out: every key of every
    section is in the file, not only its value (docs/architecture.md promises it)."""
    import yaml

    written = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text())
    missing = sorted(set(_leaves(RunConfig().model_dump(mode="json"))) - set(_leaves(written)))
    assert not missing, f"keys the default config leaves out: {missing}"
