"""The test suite's own rules: shared helpers live in conftest.py, not in test modules; tests
change registries through their public methods (a fixture such as `register_pruner`)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
REGISTRY_INTERNALS = {"_entries", "_aliases"}


def _trees() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text(), str(p)) for p in sorted(TESTS.glob("*.py"))}


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = ("tests." if node.level else "") + (node.module or "")
        return [base] + [f"{base.rstrip('.')}.{alias.name}" for alias in node.names]
    return []


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 2 and parts[0] == "tests" and parts[1].startswith("test_")


def test_no_test_module_imports_another():
    found = [
        f"{file}:{node.lineno} imports {module}"
        for file, tree in _trees().items()
        for node in ast.walk(tree)
        for module in _imported_modules(node)
        if _is_test_module(module)
    ]
    assert found == [], "move shared helpers to tests/conftest.py: " + "; ".join(found)


def test_no_test_touches_a_registrys_internals():
    found = [
        f"{file}:{node.lineno} uses .{node.attr}"
        for file, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in REGISTRY_INTERNALS
    ]
    assert found == [], "use Registry.unregister or register_pruner: " + "; ".join(found)
