"""The parts import only what their place allows (README, "Architecture"): a change that blurs
a boundary fails here, not in a review months later."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Part -> billbridge parts it must never import (at module level or inside a function).
FORBIDDEN = {
    "core": ("activities", "workflows", "workers", "starter", "emulators"),
    "workflows": ("activities", "workers", "starter", "emulators"),
    "activities": ("workers", "starter", "emulators"),
}


def _billbridge_imports(path: Path) -> set[str]:
    """The billbridge parts a module imports: {"core", "activities", ...}."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "billbridge" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_part_imports_only_what_its_place_allows(part: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_billbridge_imports(path) & set(FORBIDDEN[part]))
        for path in (ROOT / part).rglob("*.py")
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_workflows_import_no_io_library() -> None:
    io_libraries = {"httpx", "sqlmodel", "sqlalchemy", "stripe", "requests", "authlib", "boto3"}
    for path in (ROOT / "workflows").rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & io_libraries, path
