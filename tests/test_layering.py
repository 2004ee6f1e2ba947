"""Imports point downward only (docs/architecture.md, "Layers"): walked with `ast`, never
imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IO_MODULES = frozenset(
    {
        "time",
        "threading",
        "sqlite3",
        "serial",
        "nfc",
        "requests",
        "logging",
        "random",
        "socket",
        "os",
    }
)


def _modules(*patterns: str) -> list[Path]:
    found = sorted({p for pattern in patterns for p in ROOT.glob(pattern)})
    assert found, f"no modules match {patterns}"
    return found


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _roots(names: set[str]) -> set[str]:
    return {name.split(".", 1)[0] for name in names}


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


PURE = _modules("terminal/core/*.py", "terminal/card/*.py", "terminal/tariff/*.py")
PROTECTION = _modules("terminal/protection/*.py")
DRIVERS = _modules("drivers/**/*.py")
HARDWARE = _modules("hardware/**/*.py")
TERMINAL = _modules("terminal/**/*.py")


@pytest.mark.parametrize("path", PURE, ids=_ids(PURE))
def test_pure_core_imports_no_io(path: Path) -> None:
    assert _roots(_imports(path)) & IO_MODULES == set()


@pytest.mark.parametrize("path", PROTECTION, ids=_ids(PROTECTION))
def test_protection_imports_no_io_but_os(path: Path) -> None:
    assert _roots(_imports(path)) & (IO_MODULES - {"os"}) == set()


@pytest.mark.parametrize("path", DRIVERS, ids=_ids(DRIVERS))
def test_drivers_never_import_terminal(path: Path) -> None:
    assert "terminal" not in _roots(_imports(path))


@pytest.mark.parametrize("path", HARDWARE, ids=_ids(HARDWARE))
def test_hardware_never_imports_terminal_or_drivers(path: Path) -> None:
    assert _roots(_imports(path)) & {"terminal", "drivers"} == set()


@pytest.mark.parametrize("path", TERMINAL, ids=_ids(TERMINAL))
def test_terminal_never_imports_gateway(path: Path) -> None:
    assert "gateway" not in _roots(_imports(path))


GATEWAY = _modules("gateway/**/*.py")
# What the kiosk runs (its shell, composition roots and devices): the gateway shares values
# with the kiosk (money, errors, the bill and its words, card-data protection, OCMF), never
# these.
KIOSK_RUNTIME = ("terminal.shell", "terminal.console", "terminal.station", "terminal.wiring",
                 "terminal.service", "terminal.preflight", "terminal.ocpp", "drivers")  # fmt: skip


@pytest.mark.parametrize("path", GATEWAY, ids=_ids(GATEWAY))
def test_gateway_never_imports_the_kiosks_runtime(path: Path) -> None:
    assert not {
        name for name in _imports(path) for runtime in KIOSK_RUNTIME
        if name == runtime or name.startswith(runtime + ".")
    }  # fmt: skip


def test_import_walker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import os.path\n    from time import sleep\n")
    assert _roots(_imports(module)) == {"os", "time"}
