"""The technician's serial diagnostics console: line editing, a command table, the PIN."""
