"""The pi backend's example from deploy/terminal.toml, uncommented, as tests start from it."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "terminal.toml"
_SETTING = re.compile(r"^# (\[hardware\.[a-z_.]+\]( .*)?|[a-z_]+ = .+)$")


def example_pi_toml() -> str:
    """deploy/terminal.toml with backend = "pi" and the commented pi block switched on."""
    lines = []
    in_hardware = False  # only the [hardware] block: other sections have examples of their own
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            in_hardware = line.startswith("[hardware]")
        if line.startswith('backend = "sim"'):
            lines.append('backend = "pi"')
        elif in_hardware and _SETTING.match(line):
            lines.append(line[2:])
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def example_pi_data() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(example_pi_toml()))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(data: dict[str, Any]) -> str:
    """The config data as a TOML file (tables two levels deep, deeper ones inline), for a
    daemon run in a process of its own."""
    out: list[str] = []

    def table(name: str, body: dict[str, Any], depth: int) -> None:
        out.append(f"[{name}]")
        subtables = []
        for key, value in body.items():
            if isinstance(value, dict) and depth < 3:
                subtables.append((key, value))
            else:
                out.append(f"{key} = {_toml_value(value)}")
        for key, value in subtables:
            table(f"{name}.{key}", value, depth + 1)

    for name, body in data.items():
        table(name, body, 1)
    return "\n".join(out) + "\n"
