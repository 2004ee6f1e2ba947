"""The kiosk's software version: the installed `ev-terminal` package's (setup.cfg), shown on
the technician's console and reported to the gateway's fleet page."""

from __future__ import annotations

import importlib.metadata


def software_version() -> str:
    try:
        return importlib.metadata.version("ev-terminal")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
