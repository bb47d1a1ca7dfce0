"""The folders keep their promise: the core does no I/O, the adapters decide nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator

PACKAGE = Path(orchestrator.__file__).parent
# the core may log through twisted.logger (an observer decides where lines go); nothing else
ALLOWED_OUTSIDE_STDLIB = {"twisted.logger", "orchestrator"}
IO_MODULES = {"socket", "ssl", "select", "selectors", "asyncio", "threading", "subprocess",
              "http", "urllib", "io", "shutil", "tempfile", "pathlib"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            names.add("orchestrator.<outside core>." + (node.module or ""))
    return names


def test_the_core_imports_no_io() -> None:
    core = sorted((PACKAGE / "core").glob("*.py"))
    assert len(core) >= 10
    for path in core:
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in IO_MODULES, f"{path.name} imports {name}"
            if top in {"twisted", "paho", "klein", "prometheus_client", "zope", "werkzeug", "treq"}:
                assert name in ALLOWED_OUTSIDE_STDLIB, f"{path.name} imports {name}"


def test_the_core_depends_only_on_itself_and_the_settings() -> None:
    for path in (PACKAGE / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module == "config", f"{path.name} reaches out to ..{node.module}"
