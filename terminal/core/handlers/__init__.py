"""The session machine's handlers (`terminal/core/machine.py` maps each (phase, event) pair to
one), grouped by what they decide: `boot`, `idle` (how a session starts), `authorizing`,
`charging`, `ending` (stop, settle, receipt), `vehicle` (the control pilot), `faults`,
`timers`, `technician`; `base` holds what they share. Pure, as the machine is. The handlers
keep their leading underscore: they are reached only through `step`, and these modules import
them from one another within the package.
"""
