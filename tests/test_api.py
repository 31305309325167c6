"""The public API (`econ_emd.__all__`): documented, and usable from a script that lives
outside the repository (run in a fresh interpreter in a temporary folder)."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import econ_emd

FIXTURES = Path(__file__).parent / "fixtures" / "econt_vectors"

SCRIPT = r'''
import json, sys
import numpy as np
import econ_emd as ee

assert "tensorflow" not in sys.modules, "importing the API loaded TensorFlow"
cfg = ee.load_config(None, ["data.n_modules=300", "seed=3"])
result = ee.run_stage("data", cfg, run_dir="run")
rng = np.random.default_rng(0)
a, b = rng.gamma(0.5, 30, (5, 48)), rng.gamma(0.5, 30, (5, 48))
d = ee.exact_emd(a, b)
same = ee.exact_emd(a, a)
rx = ee.read_link_words(sys.argv[1] + "/testInput.csv.gz")
out = ee.emulate(ee.load_asic_config(sys.argv[1] + "/BC_2eTx/init.yaml"), rx[:50])
print(json.dumps({"n_modules": result.n_modules, "emd": d.tolist(), "same": same.tolist(),
                  "tx": list(out.tx.shape), "tf": "tensorflow" in sys.modules}))
'''


def test_the_api_runs_from_a_script_outside_the_repository(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(FIXTURES)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n_modules"]["train"] + out["n_modules"]["val"] + out["n_modules"]["test"] > 250
    assert (tmp_path / "run" / "data" / "modules.h5").exists()
    assert all(x > 0 for x in out["emd"]) and all(abs(x) < 1e-9 for x in out["same"])
    assert out["tx"] == [50, 13] and out["tf"] is False


def test_every_public_name_is_documented_with_its_parameters():
    assert econ_emd.__all__ and len(set(econ_emd.__all__)) == len(econ_emd.__all__)
    for name in econ_emd.__all__:
        obj = getattr(econ_emd, name)
        doc = inspect.getdoc(obj) or ""
        assert len(doc) > 40, f"econ_emd.{name}: no docstring"
        if inspect.isfunction(obj) and inspect.signature(obj).parameters:
            assert "Parameters\n----------" in doc and "Returns\n-------" in doc, f"econ_emd.{name}: no parameter section"
            for p in inspect.signature(obj).parameters:
                assert p in doc, f"econ_emd.{name}: parameter {p} is not documented"


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'train_everything'"):
        econ_emd.train_everything
