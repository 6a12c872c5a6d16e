"""ARCHITECTURE.md stays true where a machine can tell.

Checked: repository paths and dotted module names in backticks exist; the family
table is the registry's families with their protocol names, folders and transports;
the worked example is the toy family's code in tests/drivers/test_toy_family.py
(between its markers) and the registry line is the registry's own; the record table
names every field of the canonical records; the import contracts, the store worker's
priorities, the error tree and the exit codes are the ones in the code.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import os
import re
import tomllib
from pathlib import Path

import pytest

from appliance.core import errors, model
from appliance.queue.worker import Priority
from drivers import registry

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "ARCHITECTURE.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
# The document's prose with whitespace collapsed (phrases may break across lines).
FLAT = " ".join(DOC.split())
TOY_TEST = ROOT / "tests" / "drivers" / "test_toy_family.py"
BEGIN, END = "# --- architecture example: begin ---", "# --- architecture example: end ---"
# The worked example's folder: the toy family lives in a test only, so these must not exist.
EXAMPLE_PATH, EXAMPLE_MODULE = "drivers/toy/", "drivers.toy"
PACKAGES = ("appliance", "drivers", "rules", "ota", "hil", "tests")
PLACEHOLDER = re.compile(r"[<>*…{}|]")
DOTTED = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)(?:\(.*)?$")


def _prose(text: str) -> str:
    """The document without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _inline_code(text: str) -> list[str]:
    # A code span may wrap onto the next line; its words are what counts.
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", _prose(text))]


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, flags=re.S | re.M)
    assert match, f"ARCHITECTURE.md has no section '## {title}'"
    return match.group(1)


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- paths and modules ---------------------------------------------------------------


def _top_level_dirs() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))} | {".ci"}


def _path_words(token: str) -> list[str]:
    """Words of an inline-code span that name a repository path (commands have several)."""
    top = _top_level_dirs()
    words = []
    for raw in token.split():
        word = raw.rstrip(",;:")
        if PLACEHOLDER.search(word) or word.startswith(("/", "-", "http")):
            continue
        if "/" in word:
            if word.split("/", 1)[0] in top or word.endswith(".py"):
                words.append(word)
        elif re.fullmatch(r"[\w.-]+\.(py|toml|md|sh|cfg)", word):
            words.append(word)
    return words


@functools.cache
def _file_names() -> frozenset[str]:
    """Names of the files in the tree (hidden folders such as .venv and .git pruned)."""
    names: set[str] = set()
    for _, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        names.update(files)
    return frozenset(names)


def _exists(word: str) -> bool:
    if "/" in word:
        return (ROOT / word).exists()
    # A bare file name: at the root, or somewhere in the tree (the prose gives its folder).
    return (ROOT / word).exists() or word in _file_names()


def test_the_check_finds_paths_and_skips_placeholders():
    assert _path_words("bash tools/test") == ["tools/test"]
    assert _path_words("drivers/<family>/codec.py") == []
    assert _path_words("bedside/v1/<gateway_id>/alarms") == []
    assert _path_words("drivers/registry.py") == ["drivers/registry.py"]
    assert not _exists("drivers/no_such_module.py")


def test_every_repository_path_in_backticks_exists():
    words = [w for token in _inline_code(DOC) for w in _path_words(token)]
    assert len(words) > 50  # the check sees the document's paths at all
    examples = {w for w in words if w.startswith(EXAMPLE_PATH)}
    assert examples, "the worked example names its folder"
    missing = sorted({w for w in words if w not in examples and not _exists(w)})
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"
    assert not (ROOT / EXAMPLE_PATH).exists(), "drivers/toy/ exists now: the worked example needs a new name"


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _defined_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = _module_file(parts[:cut])
        if path is not None:
            rest = parts[cut:]
            return not rest or (len(rest) <= 2 and rest[0] in _defined_names(path))
    return False


def test_every_dotted_module_name_in_backticks_resolves():
    names = [m.group(1) for token in _inline_code(DOC) if (m := DOTTED.match(token))]
    assert "appliance.queue.worker.Priority" in names
    missing = sorted({n for n in names if not n.startswith(EXAMPLE_MODULE) and not _resolves(n)})
    assert missing == [], f"ARCHITECTURE.md names modules or attributes that do not exist: {missing}"
    assert not _resolves("drivers.registry.no_such_function")


# -- device families -------------------------------------------------------------------


def test_the_family_table_is_the_registry():
    rows = _table_rows(_section("Device families"))
    documented = {_ticked(row[0])[0]: row for row in rows}
    assert list(documented) == [f.name for f in registry.FAMILIES], "same families, in registry order"
    for family in registry.FAMILIES:
        _, protocols, folder, transports = documented[family.name]
        assert _ticked(protocols) == list(family.protocols), family.name
        assert folder == f"`drivers/{family.name}/`", family.name
        assert transports == ", ".join(t.kind for t in family.transports), family.name
        # One folder per family: its descriptor is drivers/<name>/family.py's FAMILY.
        assert importlib.import_module(f"drivers.{family.name}.family").FAMILY is family


def _toy_excerpt() -> str:
    text = TOY_TEST.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the markers in test_toy_family.py"
    excerpt = text.split(BEGIN + "\n", 1)[1].split(END, 1)[0]
    assert "class ToyCodec" in excerpt and "DeviceFamily(" in excerpt
    return excerpt


def test_the_worked_example_is_the_toy_family_verbatim():
    excerpt = _toy_excerpt().strip("\n")
    blocks = [block.strip("\n") for block in _code_blocks(DOC, "python")]
    assert excerpt in blocks, "ARCHITECTURE.md's worked example differs from tests/drivers/test_toy_family.py"


def test_the_registry_line_of_the_example_is_the_registrys_own():
    source = (ROOT / "drivers" / "registry.py").read_text(encoding="utf-8")
    built_in = [line for line in source.splitlines() if line.startswith("_BUILT_IN")]
    assert len(built_in) == 1 and built_in[0].endswith(")")
    doc_lines = {line for block in _code_blocks(DOC, "python") for line in block.splitlines()}
    assert built_in[0][:-1] + ", _TOY)" in doc_lines
    assert "from drivers.toy.family import FAMILY as _TOY" in doc_lines
    # The convention the example follows is the one every built-in family follows.
    for family in registry.FAMILIES:
        assert f"from drivers.{family.name}.family import FAMILY as _{family.name.upper()}" in source


# -- records, contracts, priorities, errors --------------------------------------------


@pytest.mark.parametrize("record", [model.Reading, model.TechnicalEvent, model.Observation, model.AlarmEvent])
def test_the_record_table_names_every_field(record):
    rows = {_ticked(row[0])[0]: row for row in _table_rows(_section("Record contract"))}
    assert record.__name__ in rows, f"no row for {record.__name__}"
    documented = {re.split(r"[: ]", tick, maxsplit=1)[0] for tick in _ticked(rows[record.__name__][1])}
    fields = {f.name for f in dataclasses.fields(record)}
    assert fields - documented == set(), f"{record.__name__} fields missing from ARCHITECTURE.md"


def test_the_import_contracts_are_named():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    assert contracts
    for contract in contracts:
        assert f'"{contract["name"]}"' in FLAT, contract["name"]
    assert "lint-imports --no-cache" in (ROOT / "tools" / "test").read_text(encoding="utf-8")


def test_the_store_priorities_are_in_the_workers_order():
    assert " > ".join(p.name for p in sorted(Priority)) in FLAT


def test_the_error_tree_and_exit_codes_are_the_codes():
    subsystems = [n for n in errors.__all__ if n.startswith("Bedside") and n.endswith("Error")]
    assert len(subsystems) > 5
    for name in subsystems:
        assert f"`{name}`" in DOC, name
    usage = [cls.__name__.removeprefix("Bedside").removesuffix("Error").lower() for cls, code in
             errors._EXIT_CODES if code == errors.EXIT_USAGE]  # fmt: skip
    phrase = (
        f"{errors.EXIT_OK} ok, {errors.EXIT_USAGE} bad input or usage ({', '.join(usage)}), "
        f"{errors.EXIT_ERROR} anything else"
    )
    assert phrase in FLAT


def test_the_readme_points_here():
    assert "`ARCHITECTURE.md`" in (ROOT / "README.md").read_text(encoding="utf-8")
