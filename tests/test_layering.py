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


PURE = _modules("terminal/core/**/*.py", "terminal/card/*.py", "terminal/tariff/*.py")
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


HTTP_CLIENT = ROOT / "terminal" / "shell" / "gateway_client.py"


@pytest.mark.parametrize("path", TERMINAL, ids=_ids(TERMINAL))
def test_only_the_gateway_client_speaks_http(path: Path) -> None:
    """The kiosk reaches its gateway through `GatewayClient` alone: its pinned CA, timeouts and
    strict reading of answers hold for every request (the sender, the command channel, link
    codes)."""
    assert ("requests" in _roots(_imports(path))) == (path == HTTP_CLIENT)


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


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _local_imports(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` the file imports (`from pkg import mod` counts as pkg.mod)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
    return found & known


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (a module importing its own package's __init__ is not one,
    Python runs the package first), or [] when there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        for imported in sorted(graph[name]):
            if name.startswith(imported + "."):
                continue
            found = visit(imported, [*path, name])
            if found:
                return found
        done.add(name)
        return []

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return []


CORE = _modules("terminal/core/**/*.py")


def test_core_modules_import_one_another_in_one_direction() -> None:
    """No import cycle in the core (STYLE 16): the machine's table imports the handlers, the
    handlers import `handlers.base` and the handlers they hand over to, never the table."""
    known = {_module_name(path) for path in CORE}
    graph = {_module_name(path): _local_imports(path, known) for path in CORE}
    assert "terminal.core.handlers.timers" in graph["terminal.core.machine"]  # the walk sees them
    assert _cycle(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "p.m": {"p"}, "p": {"p.m"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"p": {"p.m"}, "p.m": {"p"}}) == []
