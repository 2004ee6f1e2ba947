"""Benchmarks: `python -m bench.<name>` prints figures; nothing here is asserted in CI."""
