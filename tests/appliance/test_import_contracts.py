"""The import contracts (pyproject.toml [tool.importlinter]) hold, and they do bite."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _copy_of_the_contracts(path: Path) -> None:
    lines = ["[tool.importlinter]", f"root_packages = {_toml_list(CONTRACTS['root_packages'])}"]
    for contract in CONTRACTS["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            lines.append(f"{key} = {_toml_list(value) if isinstance(value, list) else repr(value)}")
    path.write_text("\n".join(lines).replace("'", '"') + "\n", encoding="utf-8")


@pytest.mark.integration
def test_the_project_keeps_its_contracts():
    res = _lint(ROOT, ROOT / "pyproject.toml")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.integration
def test_a_deliberate_violation_breaks_them(tmp_path: Path):
    files = {
        "appliance/__init__.py": "",
        "appliance/core/__init__.py": "",
        "appliance/core/model.py": "import drivers.codec\n",  # the ground floor reaching up
        "appliance/config.py": "",
        "drivers/__init__.py": "",
        "drivers/codec.py": "import appliance.core.model\n",  # allowed
        "rules/__init__.py": "",
        "rules/spec.py": "import appliance.config\n",  # not allowed
        "ota/__init__.py": "",
        "hil/__init__.py": "import appliance.config\n",  # hil may
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    _copy_of_the_contracts(tmp_path / "contracts.toml")
    res = _lint(tmp_path, tmp_path / "contracts.toml")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "rules is not allowed to import appliance.config" in res.stdout
    assert "appliance.core is not allowed to import drivers" in res.stdout
    assert "Contracts: 0 kept, 2 broken." in res.stdout
