import pytest

from econ_emd.config import CONFIG_DIR, ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name, source", [("default.yaml", "detector"), ("smoke.yaml", "synthetic"),
                                          ("paper.yaml", "detector"), ("asic.yaml", "detector"),
                                          ("verdict.yaml", "detector")])
def test_shipped_configs_validate(name, source):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.data.source == source


def test_the_verdict_run_is_the_default_with_the_encoders_longer_budget():
    """configs/verdict.yaml changes what the encoders train on and how long, and the seeds of
    the comparison, nothing else: its data, labels and EMD-CNN are the default's."""
    from econ_emd.registry import config_hash

    default, verdict = load_config(CONFIG_DIR / "default.yaml"), load_config(CONFIG_DIR / "verdict.yaml")
    for stage in ("data", "label", "emd_cnn"):
        assert config_hash(default, stage) == config_hash(verdict, stage), stage
    assert config_hash(default, "encoder") != config_hash(verdict, "encoder")
    assert (verdict.encoder.max_train_modules, verdict.compare_econt.seeds) == (None, 5)
    assert verdict.encoder.epochs > default.encoder.epochs


@pytest.mark.parametrize("text, message", [
    ("data:\n  n_modulez: 5\n", r"c\.yaml: data\.n_modulez: unknown key$"),
    ("data:\n  n_modules: many\n", r"data\.n_modules: Input should be a valid integer.*'many'"),
    ("data:\n  n_modules: -5\n", r"data\.n_modules: Input should be greater than or equal to 10 \(got -5\)"),
    ("label:\n  perturb:\n    dropout_max: 1.5\n", r"label\.perturb\.dropout_max: Input should be less than 1"),
    ("compare:\n  seeds: 3\n", r"c\.yaml: compare: renamed compare_losses$"),
    ("encoder:\n  elinks: 2\n", r"c\.yaml: encoder\.elinks: renamed encoder\.links$"),
    ("emd:\n  solver: magic\n", r"emd\.solver: Input should be 'auto', 'simplex', 'wasserstein' or 'pot'"),
    ("emd:\n  n_jobs: 0\n", r"emd: n_jobs must be -1"),
    ("data:\n  split: {train: 0.5, val: 0.1, test: 0.1}\n", r"data\.split: train \+ val \+ test must be 1"),
    ("data:\n  source: csv\n", r"data: source 'csv' needs data\.path"),
    ("seed: [1\n", r"not valid YAML at line"),
    ("- 1\n- 2\n", r"top level must be a mapping"),
    ("neemo:\n  width: 100\n", r"neemo: width 100 is not a multiple of group_size 8"),
    ("rtl:\n  synthesize: maybe\n", r"rtl\.synthesize: Input should be 'auto', 'always' or 'never'"),
    ("emd_cnn:\n  inputs: difference\n  output: linear\n", r"emd_cnn: inputs 'difference' needs output 'mass'"),
    ("neemo:\n  fit:\n    shape: ellipse\n", r"neemo\.fit\.shape: Input should be 'point', 'circle' or 'ring'"),
])
def test_errors_are_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "none.yaml")


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 3\n"), ["data.n_modules=1234", "emd.solver=pot"])
    assert cfg.data.n_modules == 1234 and cfg.emd.solver == "pot" and cfg.seed == 3
    with pytest.raises(ConfigError, match="data.n_modules: Input should be greater"):
        load_config(write(tmp_path, "seed: 1\n"), ["data.n_modules=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(write(tmp_path, "seed: 1\n"), ["data.n_modules"])
