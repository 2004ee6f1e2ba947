"""The gateway's HTTP routes: the terminal API (v1), who is calling, and request limits."""
