"""`make bench`: run every benchmark in bench/ in turn; each prints its own figures.

A benchmark that ends with `SystemExit` (a missed target, a device that did not answer) or
raises is reported and the runner goes on to the next one; the exit status is 1 if any of
them failed. `python -m bench tariff kernel` runs only the named ones; options after the
names go to each of them (`python -m bench gateway --full`).
"""

from __future__ import annotations

import importlib
import pkgutil
import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

PREFIX = "bench_"


def discover(package: str) -> list[str]:
    """The benchmark modules of `package` (`bench_*`), sorted by name."""
    spec = importlib.import_module(package)
    where = [str(Path(p)) for p in spec.__path__]
    return sorted(m.name for m in pkgutil.iter_modules(where) if m.name.startswith(PREFIX))


def run_one(package: str, name: str, options: Sequence[str] = ()) -> str | None:
    """Run one benchmark as `__main__` with `options` as its arguments; None when it passed,
    else why it failed."""
    saved_argv = sys.argv
    sys.argv = [name, *options]
    try:
        runpy.run_module(f"{package}.{name}", run_name="__main__")
    except SystemExit as exc:
        # A benchmark's own `raise SystemExit(main())` ends it, not the runner.
        if exc.code in (None, 0):
            return None
        return f"exit {exc.code}" if isinstance(exc.code, int) else str(exc.code)
    except Exception as exc:  # one broken benchmark must not stop the others
        traceback.print_exc()
        return f"{type(exc).__name__}: {exc}"
    finally:
        sys.argv = saved_argv
    return None


def run_all(package: str, only: Sequence[str] = ()) -> int:
    """Run the benchmarks (all, or those named in `only`); 0 when all passed, else 1. What
    follows the names in `only` from the first `-option` on is given to each named one."""
    names = discover(package)
    cut = next((i for i, arg in enumerate(only) if arg.startswith("-")), len(only))
    only, options = only[:cut], only[cut:]
    if options and not only:
        print("options are given to named benchmarks only: name them first", file=sys.stderr)
        return 2
    if only:
        wanted = {n if n.startswith(PREFIX) else PREFIX + n for n in only}
        unknown = sorted(wanted - set(names))
        if unknown:
            print(f"no benchmark named {', '.join(unknown)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    failed: list[tuple[str, str]] = []
    for name in names:
        print(f"== {name}", flush=True)
        why = run_one(package, name, options)
        if why is not None:
            print(f"!! {name} failed: {why}", flush=True)
            failed.append((name, why))
    print(f"== {len(names)} benchmarks, {len(failed)} failed", flush=True)
    for name, why in failed:
        print(f"   {name}: {why}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_all("bench", sys.argv[1:]))
