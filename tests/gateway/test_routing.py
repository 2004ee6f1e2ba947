"""Routing read from the gateway's processor configuration file (`--processors`), and the
switch: a hold finishes on the processor and account that placed it (capture, refund, void)
whatever the routing says later, across a restart with a new file and across a file changed
while the gateway runs; the next session goes where the new rules say."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from gateway.jobs.routing_reload import RoutingReload
from gateway.ledger import Ledger, migrate, open_engine
from gateway.ledger.schema import sim_payments
from gateway.processors.methods import WEB_CARD
from gateway.processors.registry import Processors
from gateway.processors.routing import Routing, load_routing, parse_routing
from gateway.processors.simulated import SimulatedProcessor
from gateway.processors.stripe import StripeProcessor
from gateway.server import EmbeddedGateway
from terminal.errors import ConfigError
from tests.gateway.test_idempotency import authorization, capture
from tests.ledger_check import assert_processor_agrees
from tests.ports import free_port
from tests.processors.peers import start_process, stop

BIN = Path(sys.executable).parent
TWO_ACCOUNTS = """
[[processors]]
adapter = "simulated"
account = "acct-a"

[[processors]]
adapter = "simulated"
account = "acct-b"
"""


def routed_to(account: str) -> str:
    return TWO_ACCOUNTS + f'\n[[routes]]\nprocessor = "simulated"\naccount = "{account}"\n'


def books(db_url: str, account: str) -> list[dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sim_payments).where(sim_payments.c.account == account))
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def ledger_rows(db_url: str) -> dict[str, dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        return {row["id"]: row for row in Ledger(engine).all_authorizations()}
    finally:
        engine.dispose()


class Served:
    """`ev-terminal gateway` as its own process, as an operator runs it."""

    def __init__(self, tmp: Path, db_url: str, config: Path) -> None:
        self.tmp, self.db_url, self.config = tmp, db_url, config
        (tmp / "operator.token").write_text("operator-token-0123456789\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()

    def start(self) -> None:
        self.proc = start_process(
            [
                str(BIN / "ev-terminal"),
                "gateway",
                "--db",
                self.db_url,
                "--insecure-dev",
                "--port",
                str(self.port),
                "--processors",
                str(self.config),
                "--operator-token-file",
                str(self.tmp / "operator.token"),
            ],
            port=self.port,
            log=self.tmp / "gateway.log",
        )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            stop(self.proc)
            self.proc = None

    def post(self, path: str, key: str, body: Any, token: bool = False) -> Any:
        headers = {"Idempotency-Key": key}
        if token:
            headers["Authorization"] = "Bearer operator-token-0123456789"
        return self.http.post(self.url + path, json=body, headers=headers, timeout=30)


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Served]:
    migrated = subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", "migrate", "--db", db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    config = tmp_path / "processors.toml"
    server = Served(tmp_path, db_url, config)
    yield server
    server.kill()
    server.http.close()


@pytest.mark.slow
def test_a_session_open_across_a_switch_settles_where_it_started(served: Served) -> None:
    served.config.write_text(routed_to("acct-a"))
    served.start()
    held = served.post("/v1/authorizations", "s1", authorization("session-1"))
    assert held.status_code == 200, held.text
    assert ledger_rows(served.db_url)["session-1"]["merchant_account"] == "acct-a"

    # The operator switches to acct-b while session-1 is charging, and restarts the gateway.
    served.kill()
    served.config.write_text(routed_to("acct-b"))
    served.start()
    captured = served.post("/v1/authorizations/session-1/capture", "c1", capture(3000))
    assert captured.status_code == 200, captured.text
    refund = {"amount": {"minor": 1000, "currency": "EUR"}, "reason": "goodwill"}
    path = "/operator/authorizations/session-1/refunds"
    assert served.post(path, "r1", refund, token=True).status_code == 200
    assert served.post("/v1/authorizations", "s2", authorization("session-2")).status_code == 200
    assert (
        served.post("/v1/authorizations/session-2/void", "v2", {"reason": "x"}).status_code == 200
    )

    rows = ledger_rows(served.db_url)
    assert (rows["session-1"]["processor"], rows["session-1"]["merchant_account"]) == (
        "simulated",
        "acct-a",
    )
    assert rows["session-1"]["amount_captured"] == 3000
    assert rows["session-1"]["amount_refunded"] == 1000
    assert rows["session-2"]["merchant_account"] == "acct-b"
    at_a, at_b = books(served.db_url, "acct-a"), books(served.db_url, "acct-b")
    assert [(p["payment_id"], p["state"], p["captured"], p["refunded"]) for p in at_a] == [
        ("session-1", "captured", 3000, 1000)
    ]
    assert [(p["payment_id"], p["state"]) for p in at_b] == [("session-2", "released")]
    assert_processor_agrees([rows["session-1"]], at_a)
    assert_processor_agrees([rows["session-2"]], at_b)


@pytest.mark.slow
def test_a_restart_that_drops_an_account_with_open_holds_is_refused(served: Served) -> None:
    served.config.write_text(routed_to("acct-b"))
    served.start()
    assert served.post("/v1/authorizations", "s1", authorization("session-1")).status_code == 200
    served.kill()
    served.config.write_text('[[processors]]\nadapter = "simulated"\naccount = "acct-a"\n')
    result = subprocess.run(
        [
            str(BIN / "ev-terminal"),
            "gateway",
            "--db",
            served.db_url,
            "--insecure-dev",
            "--port",
            str(served.port),
            "--processors",
            str(served.config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "1 open authorization(s) are held at simulated/acct-b" in line
    # With the table kept, it serves, and the hold is captured where it was placed.
    served.config.write_text(routed_to("acct-a"))
    served.start()
    assert (
        served.post("/v1/authorizations/session-1/capture", "c1", capture(2500)).status_code == 200
    )
    assert [p["state"] for p in books(served.db_url, "acct-b")] == ["captured"]


def wait_for(condition: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def replace_file(path: Path, text: str) -> None:
    """As an operator's deployment tool writes it: a new file renamed over the old one."""
    new = path.with_suffix(".new")
    new.write_text(text)
    os.replace(new, path)


class Reloading:
    """A gateway in this process that reads its processors file again every 0.1 s
    (`RoutingReload`), started with `TWO_ACCOUNTS` routed to acct-a."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.db_url = db_url
        self.config = tmp / "processors.toml"
        self.config.write_text(routed_to("acct-a"))
        self.gw = EmbeddedGateway(db_url=db_url, processors_file=self.config, reload_every_s=0.1)
        self.http = requests.Session()

    def post(self, path: str, key: str, body: Any) -> Any:
        return self.http.post(
            self.gw.url + path, json=body, headers={"Idempotency-Key": key}, timeout=30
        )

    def account_for_next(self) -> str:
        """Where the rules in force send the next new hold."""
        route = self.gw.processors.route(terminal="KIOSK-0001", currency="EUR", method="payment")
        return route.account

    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["id"]: row for row in self.gw.ledger.all_authorizations()}


@pytest.fixture
def reloading(tmp_path: Path, db_url: str) -> Iterator[Reloading]:
    served = Reloading(tmp_path, db_url)
    served.gw.up()
    yield served
    served.http.close()
    served.gw.close()


def test_a_changed_file_takes_effect_without_a_restart(
    reloading: Reloading, caplog: pytest.LogCaptureFixture
) -> None:
    post, account_for_next, config = reloading.post, reloading.account_for_next, reloading.config
    assert post("/v1/authorizations", "s1", authorization("session-1")).status_code == 200
    replace_file(config, routed_to("acct-b"))
    wait_for(lambda: account_for_next() == "acct-b")
    assert post("/v1/authorizations", "s2", authorization("session-2")).status_code == 200
    assert post("/v1/authorizations/session-1/capture", "c1", capture(3000)).status_code == 200

    # A file that does not read well is refused in the log, naming the key; the rules
    # in force stay.
    with caplog.at_level(logging.ERROR, logger="ev_gateway.jobs.routing"):
        # (written in place this time: the job waits until the file stops changing)
        config.write_text(routed_to("acct-a") + 'method = "web"\n')
        wait_for(lambda: "processors_config_refused" in caplog.text)
    assert "key=routes[0].method" in caplog.text
    assert account_for_next() == "acct-b"
    rows = reloading.rows()
    assert rows["session-1"]["merchant_account"] == "acct-a"
    assert rows["session-1"]["status"] == "captured"
    assert rows["session-2"]["merchant_account"] == "acct-b"
    assert [p["state"] for p in books(reloading.db_url, "acct-a")] == ["captured"]
    assert [p["state"] for p in books(reloading.db_url, "acct-b")] == ["held"]


ONLY_A = '[[processors]]\nadapter = "simulated"\naccount = "acct-a"\n'


def test_a_reload_dropping_an_account_with_an_open_hold_is_refused_and_the_rules_stay(
    reloading: Reloading, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up's check, run at the reload against the database as it is then: a file
    without acct-b while session-1 is held there is refused in the log naming the account
    and how many it holds; the rules in force stay, and the hold is captured at acct-b."""
    post, account_for_next, config = reloading.post, reloading.account_for_next, reloading.config
    replace_file(config, routed_to("acct-b"))
    wait_for(lambda: account_for_next() == "acct-b")
    assert post("/v1/authorizations", "s1", authorization("session-1")).status_code == 200
    with caplog.at_level(logging.ERROR, logger="ev_gateway.jobs.routing"):
        replace_file(config, ONLY_A)
        wait_for(lambda: "processors_config_refused" in caplog.text)
    [refused] = [r.getMessage() for r in caplog.records if "config_refused" in r.getMessage()]
    assert "key=processors" in refused
    assert "1 open authorization(s) are held at simulated/acct-b" in refused
    assert "0010" not in refused and "tok-" not in refused  # never card data
    assert account_for_next() == "acct-b"
    assert post("/v1/authorizations/session-1/capture", "c1", capture(2500)).status_code == 200
    assert reloading.rows()["session-1"]["merchant_account"] == "acct-b"
    assert [p["state"] for p in books(reloading.db_url, "acct-b")] == ["captured"]

    # Settled, nothing is held at acct-b: the same file written again is taken.
    replace_file(config, ONLY_A)
    wait_for(lambda: account_for_next() == "acct-a")


def test_a_reload_keeping_every_account_that_holds_money_is_taken(
    reloading: Reloading, caplog: pytest.LogCaptureFixture
) -> None:
    """A hold open at acct-a, and a file that still configures acct-a but sends new holds
    to acct-b: taken, with no refusal."""
    post, account_for_next = reloading.post, reloading.account_for_next
    assert post("/v1/authorizations", "s1", authorization("session-1")).status_code == 200
    with caplog.at_level(logging.INFO, logger="ev_gateway.jobs.routing"):
        replace_file(reloading.config, routed_to("acct-b"))
        wait_for(lambda: account_for_next() == "acct-b")
    assert "processors_config_refused" not in caplog.text
    assert "event=processors_config_loaded" in caplog.text
    assert post("/v1/authorizations/session-1/capture", "c1", capture(2500)).status_code == 200
    assert [p["state"] for p in books(reloading.db_url, "acct-a")] == ["captured"]


def test_a_reload_the_database_cannot_check_is_neither_taken_nor_refused(tmp_path: Path) -> None:
    """The money check reads the database: while it cannot be read (the SQLite file is moved
    away, so a new connection finds no tables) the round fails, the rules in force stay and
    the file is not marked as read; the next round after the database is back takes it."""
    db = tmp_path / "gateway.sqlite3"
    aside = tmp_path / "aside"
    aside.mkdir()
    engine = open_engine(f"sqlite:///{db}")
    migrate(engine)
    config = tmp_path / "processors.toml"
    config.write_text(routed_to("acct-a"))

    def load(path: Path) -> Routing:
        return load_routing(path, simulated=lambda account: SimulatedProcessor(engine, account))

    first = load(config)
    registry = Processors(first.adapters, first.routes, first.sites)
    job = RoutingReload(Ledger(engine), config, registry, load)

    def account_for_next() -> str:
        return registry.route(terminal="KIOSK-0001", currency="EUR", method="payment").account

    def move(source: Path, to: Path) -> None:
        engine.dispose()  # the pool's connections closed: the next one opens the path anew
        for file in source.glob("gateway.sqlite3*"):
            os.replace(file, to / file.name)

    try:
        replace_file(config, routed_to("acct-b"))
        assert job.run_once() is False  # changed: read once it stays the same for a round
        move(tmp_path, aside)
        with pytest.raises(sa.exc.OperationalError):
            job.run_once()
        assert account_for_next() == "acct-a"
        engine.dispose()
        for made in tmp_path.glob("gateway.sqlite3*"):  # the empty file the failed round made
            made.unlink()
        move(aside, tmp_path)
        assert job.run_once() is True
        assert account_for_next() == "acct-b"
    finally:
        engine.dispose()


# -- the rules -------------------------------------------------------------------------------

STRIPE = """
[[processors]]
adapter = "stripe"
account = "acct_stripe"
api_key_env = "STRIPE_KEY"
webhook_secret_env = "STRIPE_WHSEC"
"""
ENV = {"STRIPE_KEY": "sk_test_routing", "STRIPE_WHSEC": "whsec_routing"}


def _parse(text: str, tmp_path: Path) -> Any:
    import tomllib

    engine = open_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    return parse_routing(
        tomllib.loads(text),
        simulated=lambda account: SimulatedProcessor(engine, account),
        environ=ENV,
    )


def test_routes_choose_by_site_terminal_currency_and_method(tmp_path: Path) -> None:
    from gateway.processors.registry import Processors

    routing = _parse(
        TWO_ACCOUNTS
        + STRIPE
        + """
[[routes]]
processor = "stripe"
account = "acct_stripe"
method = "web_card"

[[routes]]
processor = "simulated"
account = "acct-b"
site = "Depot Nord"

[[routes]]
processor = "simulated"
account = "acct-b"
terminal = "kiosk-9"
currency = "CHF"

[sites]
"Depot Nord" = ["kiosk-1", "kiosk-2"]
""",
        tmp_path,
    )
    registry = Processors(routing.adapters, routing.routes, routing.sites)

    def to(terminal: str, currency: str = "EUR", method: str = "payment") -> str:
        chosen = registry.route(terminal=terminal, currency=currency, method=method)
        return f"{chosen.name}/{chosen.account}"

    assert to("kiosk-1", method=WEB_CARD) == "stripe/acct_stripe"  # the first rule wins
    assert isinstance(registry.get("stripe", "acct_stripe"), StripeProcessor)
    assert to("kiosk-2") == "simulated/acct-b"  # by site
    assert to("kiosk-9", currency="CHF") == "simulated/acct-b"  # by terminal and currency
    assert to("kiosk-9") == "simulated/acct-a"  # no rule: the first adapter
    assert to("kiosk-7") == "simulated/acct-a"


BAD = [
    ("unknown-top-key", 'colour = "red"\n' + TWO_ACCOUNTS, "colour: unknown key"),
    ("no-processors", "", "processors: at least one"),
    (
        "unknown-adapter",
        '[[processors]]\nadapter = "paypal"\naccount = "x"\n',
        "processors[0].adapter",
    ),
    ("simulated-unknown-key", TWO_ACCOUNTS + "colour = 1\n", "processors[1].colour"),
    ("route-method", routed_to("acct-a") + 'method = "web"\n', "routes[0].method"),
    ("route-account", routed_to("acct-z"), "routes[0].account"),
    ("route-unknown-key", routed_to("acct-a") + 'weekday = "mon"\n', "routes[0].weekday"),
    ("route-currency", routed_to("acct-a") + 'currency = "euro"\n', "routes[0].currency"),
    ("route-site", routed_to("acct-a") + 'site = "Nowhere"\n', "routes[0].site"),
    ("route-not-string", routed_to("acct-a") + "terminal = 7\n", "routes[0].terminal"),
    (
        "terminal-in-two-sites",
        TWO_ACCOUNTS + '[sites]\n"A" = ["k1"]\n"B" = ["k1"]\n',
        "sites.B",
    ),
    (
        "secret-in-the-file",
        TWO_ACCOUNTS + STRIPE.replace('api_key_env = "STRIPE_KEY"', 'api_key = "sk_live_S3CR3T"'),
        "processors[2].api_key: a secret never sits in the config",
    ),
    (
        "secret-missing",
        TWO_ACCOUNTS + STRIPE.replace("STRIPE_WHSEC", "NOT_SET_ANYWHERE"),
        "processors[2].webhook_secret_env",
    ),
]


@pytest.mark.parametrize(("text", "names"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_file_names_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _parse(text, tmp_path)
    assert names in str(refused.value)
    assert "S3CR3T" not in str(refused.value)


CLI_BAD = [
    ("not-toml", "[[processors]\n", "not TOML"),
    ("route-method", routed_to("acct-a") + 'method = "web"\n', "routes[0].method"),
    (
        "secret-in-the-file",
        STRIPE.replace('api_key_env = "STRIPE_KEY"', 'api_key = "sk_live_S3CR3T"'),
        "processors[0].api_key",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("text", "names"), [c[1:] for c in CLI_BAD], ids=[c[0] for c in CLI_BAD])
def test_the_gateway_refuses_a_bad_file_in_one_line_and_exit_2(
    tmp_path: Path, text: str, names: str
) -> None:
    run = [str(BIN / "ev-terminal"), "gateway"]
    assert (
        subprocess.run([*run, "migrate", "--db", "g.sqlite3"], cwd=tmp_path, check=False).returncode
        == 0
    )
    (tmp_path / "p.toml").write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    for action in ([], ["reconcile"]) if "method" in names else ([],):
        args = [*run, *action, "--db", "g.sqlite3", "--processors", "p.toml"]
        if not action:
            args += ["--insecure-dev", "--port", str(free_port())]
        result = subprocess.run(
            args,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": str(BIN), **ENV},
        )
        assert result.returncode == 2, result.stderr
        # (reconcile logs to stderr, its report being the only thing on stdout)
        lines = [x for x in result.stderr.splitlines() if not x.startswith("level=")]
        assert len(lines) == 1, result.stderr
        assert names in lines[0] and "p.toml" in lines[0]
        assert "S3CR3T" not in result.stderr + result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before
