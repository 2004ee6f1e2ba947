"""The card kernel is pure (docs/architecture.md, house style rule 1): no clock, threads, logging,
randomness or I/O among its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CARD_PACKAGE = Path(__file__).parents[2] / "terminal" / "card"
FORBIDDEN = {
    "time",
    "threading",
    "logging",
    "random",
    "secrets",
    "os",
    "io",
    "socket",
    "sqlite3",
    "serial",
    "nfc",
    "requests",
    "subprocess",
    "pathlib",
    "asyncio",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(CARD_PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_card_module_imports_nothing_impure(path: Path) -> None:
    assert not _imports(path) & FORBIDDEN


def test_card_package_has_the_modules_it_should() -> None:
    names = {p.stem for p in CARD_PACKAGE.glob("*.py")}
    assert {"tlv", "apdu", "dol", "kernel", "aids", "card_data", "terminal_data"} <= names
    assert "utils" not in names
