"""The imperative shell: daemon loop, executor, journal, uplink, card acquisition."""
