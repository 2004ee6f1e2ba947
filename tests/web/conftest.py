"""The page tests share the gateway tests' database fixtures (SQLite and PostgreSQL); the one
Chromium of the run is `browser` in tests/conftest.py."""

from tests.gateway.conftest import db_url, gateway_template, postgres

__all__ = ["db_url", "gateway_template", "postgres"]
