"""axe-core (npm), the accessibility engine the page tests run in Chromium. Installed on first
use into ``<venv>/peers/axe-core``; `make peers` (part of `make test`) runs this module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processors.install import installing

AXE_VERSION = "4.14.1"
HOME = Path(sys.prefix) / "peers" / "axe-core"


def axe_script() -> Path:
    """The path of axe.min.js, installed if missing."""
    script = HOME / "node_modules" / "axe-core" / "axe.min.js"
    stamp = HOME / f".installed-{AXE_VERSION}"
    with installing():  # parallel workers: one installs, the others wait
        if stamp.exists():
            return script
        HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(HOME),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        stamp.touch()
    return script


if __name__ == "__main__":
    print(axe_script())  # noqa: T201 - the path, for a person running it by hand
