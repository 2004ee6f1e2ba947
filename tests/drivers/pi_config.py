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
