"""The README's two set-up commands are the ones CI and users run."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(python3\.11 -m venv .venv &&[^\n]*)\n```", text)


def test_readme_has_the_two_setup_commands():
    cmds = readme_commands()
    assert len(cmds) >= 2
    assert any("econ-emd pipeline" in c for c in cmds)
    assert any("pytest" in c for c in cmds)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in readme_commands() if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_main_command_uses_a_shipped_config():
    main_cmd = next(c for c in readme_commands() if "econ-emd pipeline" in c)
    config = re.search(r"-c (\S+)", main_cmd).group(1)
    assert (ROOT / config).exists()
