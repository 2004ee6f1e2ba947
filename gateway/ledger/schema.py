"""The gateway's tables (SQLAlchemy Core). The migrations in `migrations/versions/` create and
change them; this module is what the code reads and writes, and a test checks that the two
agree (`tests/gateway/test_migrations.py`).

Money steps on one authorization are serialised by the database: a step claims the row with a
conditional update that sets `op` (the processor call in flight) only while `op` is empty and
the status allows the step, calls the processor outside any transaction, then records the
outcome with another conditional update on the same `op_key`. A crash between the two leaves
`op` set: whoever finds it later (a retry, the reconciler) asks the processor what happened.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Authorization statuses.
PENDING = "pending"  # the hold is being asked for (op = "hold")
APPROVED = "approved"  # a hold is in force
DECLINED = "declined"
CAPTURED = "captured"
VOIDED = "voided"
FAILED = "failed"  # the processor never placed the hold (found out by asking it)
STATUSES = (PENDING, APPROVED, DECLINED, CAPTURED, VOIDED, FAILED)

# In-flight processor operations (`op`) and their state (`op_state`).
OPS = ("hold", "increment", "capture", "release", "refund", "change")
CALLING = "calling"  # a worker is calling the processor now (until `op_started_at` + lease)
UNKNOWN = "unknown"  # the call gave no answer: ask the processor (`status`) before anything

authorizations = sa.Table(
    "authorizations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # chosen by the terminal (session id)
    sa.Column("terminal_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_requested", sa.BigInteger, nullable=False),
    sa.Column("amount_authorized", sa.BigInteger),
    sa.Column("amount_captured", sa.BigInteger),
    sa.Column("amount_refunded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("card_kind", sa.String(16), nullable=False),
    sa.Column("card_token", sa.String(64), nullable=False),
    sa.Column("card_brand", sa.String(32), nullable=False),
    sa.Column("card_last4", sa.String(4), nullable=False),
    # Where the hold lives, fixed when it is asked for: a capture goes there whatever the
    # routing says later.
    sa.Column("processor", sa.String(32), nullable=False, server_default=""),
    sa.Column("merchant_account", sa.String(64), nullable=False, server_default=""),
    sa.Column("processor_ref", sa.String(128)),
    sa.Column("decline_reason", sa.String(64)),
    sa.Column("energy_wh", sa.BigInteger),
    sa.Column("receipt_id", sa.String(32), unique=True),
    sa.Column("receipt", sa.Text),
    sa.Column("void_reason", sa.String(64)),
    sa.Column("op", sa.String(16)),  # OPS, or NULL when no processor call is in flight
    sa.Column("op_key", sa.String(200)),  # the processor idempotency key of that call
    sa.Column("op_amount", sa.BigInteger),  # the amount the call asks for
    sa.Column("op_state", sa.String(16)),  # CALLING | UNKNOWN
    sa.Column("op_started_at", sa.DateTime(timezone=True)),
    sa.Column("op_detail", sa.Text),  # what the call carries besides the amount (capture)
    sa.Column("flag", sa.String(32)),  # stale | mismatch: needs an operator
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("authorizations_open", "status", "op"),
    # A card's sessions newest first (the driver's history, `card_history`): one index range
    # per linked card or token, already in time order.
    sa.Index("authorizations_card_time", "card_token", "created_at"),
    # A processor's notification names the payment by the processor's reference.
    sa.Index("authorizations_processor_ref", "processor", "merchant_account", "processor_ref"),
)

# The append-only money movements. One hold, one capture and one release at most per
# authorization, enforced by the database (`step_key` is the step's processor key, so
# several increments and refunds each appear once).
movements = sa.Table(
    "movements",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("authorization_id", sa.String(64), nullable=False, index=True),
    # hold|increment|capture|release|refund, and for a prepayment (Lightning) change_owed (the
    # part paid up front and not captured, recorded with the capture or release) and
    # change_paid (that part paid back to the payer's wallet)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("step_key", sa.String(200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # Whether the revenue rollup holds it yet: recorded false, set by the roll-up that adds
    # it (`gateway.ledger.rollup_pending`; kinds that are not revenue are only marked).
    sa.Column("rolled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("authorization_id", "kind", "step_key", name="movements_once"),
    sa.Index(
        "movements_unrolled",
        "seq",
        postgresql_where=sa.text("NOT rolled"),
        sqlite_where=sa.text("NOT rolled"),
    ),
)

# Payouts to the payer's own wallet (Lightning): the change of a prepayment paid back
# (movement `change_paid`) and refunds paid to a destination the payer gave (movement
# `refund`), one row per step, with the proof of payment (payment hash and preimage), the
# satoshis and the BTC price in the payment's currency they were reckoned at.
payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("authorization_id", sa.String(64), primary_key=True),
    sa.Column("step_key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # change | refund
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("sats", sa.BigInteger, nullable=False),
    sa.Column("btc_price", sa.String(40), nullable=False),
    sa.Column("payment_hash", sa.String(64), nullable=False),
    sa.Column("preimage", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# The revenue rollup (`gateway.ledger.rollup`): captures and refunds summed per UTC quarter
# hour (q), hour (h), day (d) and month (m), for the fleet and by terminal, processor, payment
# method and card brand, in minor units; written in the transaction of each capture and
# refund movement.
revenue_rollup = sa.Table(
    "revenue_rollup",
    metadata,
    sa.Column("grain", sa.String(1), primary_key=True),  # q | h | d | m
    sa.Column("dimension", sa.String(16), primary_key=True),  # terminal|processor|method|brand
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),  # its UTC start
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("captures", sa.BigInteger, nullable=False),
    sa.Column("gross", sa.BigInteger, nullable=False),
    sa.Column("vat", sa.BigInteger, nullable=False),
    sa.Column("refunds", sa.BigInteger, nullable=False),
)

# Idempotency keys (IETF httpapi Idempotency-Key; Stripe's semantics), scoped to the caller.
# A key is claimed atomically (`state` = started, `locked_at` set) before any work; the answer
# is stored with `state` = done in the transaction that records the work's outcome.
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("caller", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # started | done
    sa.Column("locked_at", sa.DateTime(timezone=True)),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("terminal_id", "key", name="events_terminal_key"),
)

# What a terminal's events say of it now, kept as each new event is stored
# (`gateway.ledger.terminal_health`): whether it is out of service, when its newest event came,
# and (below) its active faults. The fleet page reads these instead of replaying every event.
terminal_health = sa.Table(
    "terminal_health",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Column("out_of_service", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
)
terminal_faults = sa.Table(
    "terminal_faults",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Column("fault", sa.Text, primary_key=True),  # as the kiosk names it (`events.detail`)
)

# Each terminal's newest status (`wire.TerminalStatus` as JSON): software version, outbox
# depth and age, sessions under way with energy and cost so far; for the fleet page.
terminal_status = sa.Table(
    "terminal_status",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Signed meter readings (OCMF) as the terminal sent them, kept with their authorization so the
# capture can be checked against them (the driver's proof under calibration law). One row per
# distinct reading: a batch retried with other rows in it adds none twice.
meter_readings = sa.Table(
    "meter_readings",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("authorization_id", sa.String(64), nullable=False, index=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # begin | charging | end
    sa.Column("ocmf", sa.Text, nullable=False),
    sa.Column("ocmf_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# The terminals' local authorization list ("allow": ID tokens that may start while the
# gateway is unreachable) and deny list ("deny": tokens refused, online and offline).
token_lists = sa.Table(
    "token_lists",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("list", sa.String(8), nullable=False),  # allow | deny
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Every KSN of a card-data blob the gateway accepted, with the authorization that used it: a
# DUKPT device never repeats a KSN (ANSI X9.24-3-2017), so a second use is a replay.
seen_ksns = sa.Table(
    "seen_ksns",
    metadata,
    sa.Column("ksn", sa.String(24), primary_key=True),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Processors' notifications taken, by the processor's own id of the event (deduplication: a
# replayed or retried notification is answered and changes nothing). `effect`: settled (it
# finished an open step), noted (nothing open that it concerns), unknown (no such payment).
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("processor", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reference", sa.String(128), nullable=False),
    sa.Column("authorization_id", sa.String(64)),
    sa.Column("effect", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# Background jobs run in every worker; a job round runs where its lease was won.
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# The simulated processor's own books (`gateway.processors.simulated`): what a real
# processor keeps on its side, durable so holds survive a gateway restart.
sim_payments = sa.Table(
    "sim_payments",
    metadata,
    sa.Column("reference", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # held|captured|released|declined
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("held", sa.BigInteger, nullable=False),
    sa.Column("captured", sa.BigInteger, nullable=False),
    sa.Column("refunded", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The id first: `account` leads no index, so a payment found by account and reference
    # is always found by its primary key (migration 0018).
    sa.UniqueConstraint("payment_id", "account", name="sim_payments_payment"),
)

sim_requests = sa.Table(
    "sim_requests",
    metadata,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Commands for a terminal (`gateway.commands`), fetched by its long poll (`GET /v1/commands`)
# and answered through its outbox: "start" a session paid on the web with the hold of
# `authorization_id` as its cost limit, or "stop" one. A start not answered by `expires_at`
# (plus a grace for the answer's way back) is given up and its hold released.
COMMAND_KINDS = ("start", "stop")
COMMAND_STATES = ("pending", "started", "not_started", "received", "expired")
kiosk_commands = sa.Table(
    "kiosk_commands",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("authorization_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("body", sa.Text, nullable=False),  # the command as the terminal receives it
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("answered_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("kiosk_commands_waiting", "terminal_id", "state"),
    sa.Index("kiosk_commands_authorization", "authorization_id"),
)

# Pay-by-phone codes (`gateway.pay.codes`): the one-time code in a kiosk's QR, with what the
# kiosk offers (station, hold, price lines per language, as JSON). open -> paying (claimed
# by one payment) -> spent, or back to open when that payment failed.
pay_codes = sa.Table(
    "pay_codes",
    metadata,
    sa.Column("code", sa.String(32), primary_key=True),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("offer", sa.Text, nullable=False),
    sa.Column("authorization_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Index("pay_codes_terminal", "terminal_id", "state"),
    sa.Index("pay_codes_authorization", "authorization_id"),
)
