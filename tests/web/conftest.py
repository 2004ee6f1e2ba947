"""The page tests share the gateway tests' database fixtures (SQLite and PostgreSQL); the one
Chromium of the run is `browser` in tests/conftest.py."""

import gc
import warnings
from collections.abc import Iterator

import pytest

from tests.gateway.conftest import db_url, gateway_template, postgres
from tests.web.console_app import dispose_open_apps

__all__ = ["db_url", "gateway_template", "postgres"]


@pytest.fixture(autouse=True)
def _dispose_console_apps() -> Iterator[None]:
    yield
    dispose_open_apps()
    # A PostgreSQL connection an app of this test still had checked out is garbage now:
    # collect it here, so its ResourceWarning cannot land in a later (browser) test.
    # The connection is a test's, closed by the server's end of the test database anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
