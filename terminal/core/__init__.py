"""The pure core: the session state machine and billing. No I/O, no clock, no threads."""
