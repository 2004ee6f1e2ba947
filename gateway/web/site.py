"""The gateway's web pages, wired onto the app: the static files, the console's sign-in and
pages. `create_app` calls `add_web`; everything is built from the ledger's engine and clock.

These are not terminal routes: they need no client certificate (a browser has none), and a
terminal's certificate opens none of them. Who may see a page is the page's own check (a
session cookie and a role), never the TLS identity. The bearer-token routes under
`/operator/` stay as they are: they are an API for the operator's own systems (accounting
exports, scripts), which hold a token, not a browser session, and take no cookie, so they need
no CSRF protection.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request

from gateway.jobs.reconciler import Reconciler
from gateway.ledger.drivers import Drivers
from gateway.ledger.operators import Operators
from gateway.ledger.passkey_store import PasskeyStore
from gateway.payments import Payments
from gateway.web.console import console_routes
from gateway.web.console_auth import sign_in_routes
from gateway.web.console_frame import ConsoleFrame
from gateway.web.console_money import Refund, money_routes
from gateway.web.console_revenue import revenue_routes
from gateway.web.console_stations import station_routes
from gateway.web.console_tariffs import tariff_routes
from gateway.web.console_tokens import token_routes
from gateway.web.mailer import Mailer
from gateway.web.operator_auth import OperatorSignIn
from gateway.web.portal import portal_routes
from gateway.web.portal_auth import portal_sign_in_routes
from gateway.web.portal_frame import PortalFrame
from gateway.web.portal_passkeys import passkey_routes
from gateway.web.sessions import (
    DRIVER_COOKIE,
    DRIVER_LIFETIME,
    OPERATOR_COOKIE,
    OPERATOR_LIFETIME,
    Sessions,
)
from gateway.web.templating import Pages
from gateway.web.throttle import Throttle

# The header a trusted reverse proxy puts the browser's address in (deploy/nginx/ev-gateway.conf).
REAL_IP = "x-real-ip"


def client_address(trusts: Callable[[str], bool] | None) -> Callable[[Request], str]:
    """The browser's address: the TCP peer, or what a trusted proxy says the peer was (the
    sign-in rate limits count per address, and behind nginx every peer is nginx)."""

    def address(request: Request) -> str:
        peer = request.client.host if request.client is not None else ""
        forwarded = request.headers.get(REAL_IP)
        if forwarded and trusts is not None and trusts(peer):
            return forwarded.strip()
        return peer

    return address


def add_web(
    app: FastAPI,
    payments: Payments,
    refund: Refund,
    pages: Pages,
    *,
    trusts: Callable[[str], bool] | None = None,
    mailer: Mailer | None = None,
    public_url: str | None = None,
) -> None:
    """The pages on `app`, rendered by `pages` (the app's one environment). `refund` runs an
    operator's refund through the idempotent frame the operator API uses; `mailer` sends
    drivers their sign-in links, which point at `public_url` (default: the address the
    request came to)."""
    ledger = payments.ledger
    pages.mount_static(app)
    engine, clock = ledger.engine, ledger.clock
    operators = Operators(engine, clock)
    sessions = Sessions(
        engine, clock, kind="operator", cookie=OPERATOR_COOKIE, lifetime=OPERATOR_LIFETIME
    )
    frame = ConsoleFrame(pages, operators, sessions, client_address(trusts))
    sign_in = OperatorSignIn(operators, Throttle(engine, clock), clock)
    app.include_router(sign_in_routes(frame, sign_in))
    app.include_router(console_routes(frame))
    app.include_router(revenue_routes(frame))
    app.include_router(money_routes(frame, Reconciler(payments), refund))
    app.include_router(token_routes(frame))
    app.include_router(tariff_routes(frame))
    app.include_router(station_routes(frame))
    throttle = Throttle(engine, clock)
    driver_sessions = Sessions(
        engine, clock, kind="driver", cookie=DRIVER_COOKIE, lifetime=DRIVER_LIFETIME
    )
    portal = PortalFrame(pages, Drivers(engine, clock), driver_sessions, client_address(trusts))
    app.include_router(portal_sign_in_routes(portal, throttle, mailer, public_url))
    app.include_router(portal_routes(portal, throttle))
    app.include_router(passkey_routes(portal, PasskeyStore(engine, clock), public_url))
