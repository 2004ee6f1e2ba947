"""Installs the peers that do not come from this project's own Python packages, on first use.

- Stoplight Prism from npm, into ``<venv>/peers/prism`` (Node 20 and npm on the machine);
- LNbits from PyPI, into a virtual environment of its own, ``<venv>/peers/lnbits``, since its
  dependencies are pinned apart from ours.
`make test` runs this module before pytest; the session fixtures call the same functions, so a
bare ``pytest`` installs them too. Run ``python -m tests.processors.install`` to do it by hand.
Parallel workers (pytest-xdist) may ask at once: one installs under a lock, the others wait.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRISM_VERSION = "5.16.0"
LNBITS_VERSION = "1.6.2"
PEERS = Path(sys.prefix) / "peers"


@contextmanager
def installing() -> Iterator[None]:
    """Held while a peer is checked and installed: one process at a time (an flock on a file
    beside the peers, released when the holder ends however it ends)."""
    PEERS.mkdir(parents=True, exist_ok=True)
    with (PEERS / ".install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prism() -> Path:
    """The `prism` executable, installed if missing."""
    home = PEERS / "prism"
    exe = home / "node_modules" / ".bin" / "prism"
    stamp = home / f".installed-{PRISM_VERSION}"
    with installing():
        if stamp.exists():
            return exe
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(home),
                f"@stoplight/prism-cli@{PRISM_VERSION}",
            ],
            check=True,
            timeout=900,
            stdout=subprocess.DEVNULL,
        )
        stamp.touch()
    return exe


def lnbits() -> Path:
    """The `lnbits` executable in its own virtual environment, installed if missing."""
    home = PEERS / "lnbits"
    exe = home / "bin" / "lnbits"
    stamp = home / f".installed-{LNBITS_VERSION}"
    with installing():
        if stamp.exists():
            return exe
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=300)
        subprocess.run(
            [
                str(home / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"lnbits=={LNBITS_VERSION}",
                # bolt11 (an LNbits dependency) imports ConstBitStream, gone in bitstring 5.
                "bitstring<5",
            ],
            check=True,
            timeout=1200,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stamp.touch()
    return exe


def lnbits_site(exe: Path) -> Path:
    """LNbits's site-packages: it serves its static files relative to the working directory."""
    found = sorted((exe.parent.parent / "lib").glob("python3*/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages beside {exe}")
    return found[0]


if __name__ == "__main__":
    sys.stdout.write(f"{prism()}\n{lnbits()}\n")
