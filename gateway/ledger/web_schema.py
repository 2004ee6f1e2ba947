"""The tables of the operator's console and the driver's portal (`gateway.web`): operators and
their roles, browser sessions, sign-in throttling, the audit log of every change an operator
makes, the stations the console groups revenue by, drivers, their cards and tokens, and their
one-time sign-in links.

They live beside the ledger's money tables (`gateway.ledger.schema`) in the same metadata, and
the same numbered Alembic migrations create them (`migrations/versions/0005_web.py` to
`0008_passkeys.py`, `0017_link_codes.py`).
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.ledger.schema import metadata, movements

# Operator roles: an admin changes things (refunds, tariffs, lists, operators); a read-only
# operator sees every console page and changes nothing.
ADMIN = "admin"
READ_ONLY = "read_only"
ROLES = (ADMIN, READ_ONLY)

operators = sa.Table(
    "operators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),  # argon2id (argon2-cffi)
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("totp_secret", sa.String(64)),  # RFC 6238 base32 secret, NULL: no second factor
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A browser session. The cookie carries a random token; only its SHA-256 is stored, so a copy
# of the database opens no session. `csrf` is the token every form of the session must send.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # operator | driver
    sa.Column("subject", sa.String(64), nullable=False, index=True),  # operator or driver id
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Sign-in attempts per key ("ip:ADDR", "user:NAME") in fixed windows, shared by every worker.
sign_in_attempts = sa.Table(
    "sign_in_attempts",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# Every change an operator makes, append-only: who, what, on what, with what detail (JSON).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),  # operator username, or "cli"
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

# What the console knows about a terminal beyond its id: where it stands. A terminal without a
# row is shown under its id, in no site.
stations = sa.Table(
    "stations",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, server_default=""),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("address", sa.String(256), nullable=False, server_default=""),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),  # IANA
    # The charge point operator who sells here (`invoice_schema.cpos`), and the public key of
    # the station's signed readings (hex DER, as on its label): what the transparency
    # software checks the readings against. Both set by an admin in the console (0009).
    sa.Column("cpo_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("ocmf_public_key", sa.Text, nullable=False, server_default=""),
)

# Drivers of the portal: an account is an e-mail address, made at its first sign-in.
drivers = sa.Table(
    "drivers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),  # RFC 5321 path limit
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The cards and RFID tokens a driver proved to hold (by fleet token, as the kiosks send it):
# a token belongs to one driver at most.
driver_cards = sa.Table(
    "driver_cards",
    metadata,
    sa.Column("card_token", sa.String(64), primary_key=True),
    sa.Column("driver_id", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # payment | id_token
    sa.Column("label", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# One-time sign-in links sent by e-mail: only the token's SHA-256 is kept; a link works once,
# for a short time.
sign_in_links = sa.Table(
    "sign_in_links",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)

# One-time codes a kiosk shows after a tap, which link the tapped card or token to the account
# of the driver who types one (`gateway.ledger.link_codes`): only the code's SHA-256 is kept,
# one code per token (a new one replaces the last), used once, for a few minutes.
link_codes = sa.Table(
    "link_codes",
    metadata,
    sa.Column("card_token", sa.String(64), primary_key=True),
    sa.Column("code_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("card_kind", sa.String(16), nullable=False),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)

# The console reads revenue by the time of each movement.
sa.Index("movements_at", movements.c.at)

# OCPI 2.2.1 tariffs the operator edits in the console (`ocpi` is the Tariff object as JSON,
# validated by `terminal.tariff.model.parse_tariff` before it is stored), and which one each
# station prices with; terminals receive theirs in `GET /v1/terminal-config`.
tariffs = sa.Table(
    "tariffs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # the OCPI Tariff.id
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("ocpi", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

station_tariffs = sa.Table(
    "station_tariffs",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Column("tariff_id", sa.String(36), nullable=False, index=True),
)

# Drivers' passkeys (WebAuthn Level 2): the credential id and COSE public key, base64url; the
# signature counter as the authenticator last reported it.
passkeys = sa.Table(
    "passkeys",
    metadata,
    sa.Column("credential_id", sa.String(1024), primary_key=True),
    sa.Column("driver_id", sa.Integer, nullable=False, index=True),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A WebAuthn ceremony's challenge, kept until it is answered or expires (a few minutes); once.
passkey_challenges = sa.Table(
    "passkey_challenges",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(16), nullable=False),  # register | sign_in
    sa.Column("driver_id", sa.Integer),  # the registering driver
    sa.Column("challenge", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
