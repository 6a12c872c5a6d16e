"""The size limits the project keeps (ARCHITECTURE.md, issue 16): no module of the
gateway over 400 lines, no function over 60. Ruff has no line-count rule; this is it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("appliance", "drivers", "rules", "ota", "hil")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def too_long(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    found = []
    lines = text.count("\n")
    if lines > MAX_MODULE_LINES:
        found.append(f"{path.relative_to(root)}: {lines} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_every_package_is_scanned():
    assert len(sources()) > 100


def test_no_module_or_function_is_over_the_limits():
    found = [problem for path in sources() for problem in too_long(path)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("lines", [MAX_FUNCTION_LINES + 1])
def test_the_check_sees_a_long_function(tmp_path, lines):
    body = "\n".join(f"    x{i} = {i}" for i in range(lines - 1))
    path = tmp_path / "probe.py"
    path.write_text(f"def long():\n{body}\n")
    assert too_long(path, tmp_path) == [f"probe.py:1 long: {lines} lines"]
