"""Emulated devices on pseudo-terminals, so the real drivers run in CI."""
