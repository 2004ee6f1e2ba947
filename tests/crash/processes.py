"""Real processes for crash tests: the gateway (`ev-terminal gateway`) and kiosks
(`launcher.sim_kiosk`) that a test drives line by line and may SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import requests

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A gateway process took 11 s to answer its first health check at load average 20 on the
# 2-core machine (measured on this code and on the code before it alike): the bound is for
# a hang, not for a busy machine.
START_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 30.0


def kiosk_config(
    work: Path,
    name: str,
    *,
    tariff_file: Path | None = None,
    pay_by_phone: bool = False,
    **session: str,
) -> Path:
    """deploy/terminal.toml for terminal `name`, sampling every 10 s (and other `[session]`
    keys replaced), priced by the OCPI tariff in `tariff_file` if given, showing the pay by
    phone QR if asked, written into `work`."""
    text = (ROOT / "deploy" / "terminal.toml").read_text()
    text = re.sub(r'(?m)^id = ".*?"', f'id = "{name}"', text)
    if pay_by_phone:
        text = re.sub(r"(?m)^pay_by_phone = false", "pay_by_phone = true", text)
    if tariff_file is not None:
        text = re.sub(r"(?m)^(per_kwh|session_fee|vat_percent) = .*\n", "", text)
        text = text.replace("[tariff]", f'[tariff]\nocpi_file = "{tariff_file}"', 1)
    for key, value in {"sample_interval": "10s", **session}.items():
        text = re.sub(rf'(?m)^{key} = ".*?"', f'{key} = "{value}"', text)
    path = work / f"{name}.toml"
    path.write_text(text)
    return path


class GatewayProcess:
    """`ev-terminal gateway` on a free loopback port, with its own SQLite ledger."""

    def __init__(
        self,
        work: Path,
        key_dir: Path,
        *,
        db_url: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.db = work / "gateway.sqlite3"
        self.db_url = db_url or str(self.db)
        self.key_dir = key_dir
        self.extra = extra or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (work / "gateway.log").open("a")
        subprocess.run(
            [str(BIN / "ev-terminal"), "gateway", "migrate", "--db", self.db_url],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            check=True,
        )
        self.start()

    def start(self) -> None:
        """Start the gateway process and wait until it answers."""
        self.proc = subprocess.Popen(
            [
                str(BIN / "ev-terminal"),
                "gateway",
                "--db",
                self.db_url,
                "--port",
                str(self.port),
                "--keys",
                str(self.key_dir),
                "--insecure-dev",
                *self.extra,
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=5).ok:
                    break
            except requests.RequestException:  # refused, or too slow to answer yet
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up, open requests cut wherever they are."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def rows(self, table: str) -> list[dict[str, Any]]:
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]

    def settled(self, terminal_id: str | None = None) -> bool:
        """No start or stop waiting for a kiosk (or for `terminal_id` only), and no code
        being paid: every web hold has reached its kiosk and been answered, or released."""
        mine = [
            row
            for table in ("kiosk_commands", "pay_codes")
            for row in self.rows(table)
            if terminal_id is None or row["terminal_id"] == terminal_id
        ]
        return not [r for r in mine if r["state"] in ("pending", "paying")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


class KioskProcess:
    """One `sim-kiosk` process at a time on a data directory: start, send steps, kill."""

    def __init__(
        self, *, config: Path, data: Path, gateway_url: str, key_dir: Path, id_prefix: str
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "launcher.sim_kiosk",
            "--config",
            str(config),
            "--data",
            str(data),
            "--gateway",
            gateway_url,
            "--keys",
            str(key_dir),
            "--id-prefix",
            id_prefix,
        ]
        self.data = data
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.kills = 0
        self.starts = 0
        self._stderr: IO[str] | None = None

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready."""
        assert self.proc is None
        self.data.mkdir(parents=True, exist_ok=True)
        self._stderr = (self.data / "kiosk.err").open("a")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.starts += 1
        lines: queue.Queue[str | None] = queue.Queue()
        self.lines = lines
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            with stdout:
                for line in stdout:
                    lines.put(line.strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def _expect(self, want: str) -> None:
        try:
            line = self.lines.get(timeout=STEP_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"kiosk silent for {STEP_TIMEOUT_S}s, wanted {want}") from None
        if line != want:
            err = (self.data / "kiosk.err").read_text()[-3000:]
            raise AssertionError(f"kiosk said {line!r}, wanted {want!r}; stderr:\n{err}")

    def start(self) -> None:
        self.spawn()
        self._expect("ready")

    def write(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def step(self, line: str) -> None:
        """Send one line and wait until the kiosk has settled after it."""
        self.write(line)
        self._expect("ok")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reap()
        self.kills += 1

    def stop(self) -> None:
        """End of input: the kiosk finishes its line and exits cleanly."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=STEP_TIMEOUT_S) == 0
        self._reap()

    def _reap(self) -> None:
        assert self.proc is not None
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self._stderr is not None:
            self._stderr.close()
        self.proc = None

    def journal_rows(self, table: str) -> list[dict[str, Any]]:
        path = self.data / "journal.sqlite3"
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]

    def trail(self, session_id: str) -> dict[str, Any]:
        """What the kiosk's journal knows of one session, for a failure message: its record
        (without the card's token, last four or expiry), the commands it took for it, and its
        lane's requests in order with their tries and answers. No card data: no request body
        of an authorization, no receipt, no command's body."""
        [session] = [
            {k: v for k, v in row.items() if k not in ("card_token", "card_last4", "card_expiry")}
            for row in self.journal_rows("sessions")
            if row["session_id"] == session_id
        ] or [None]
        requests = [
            {
                **{k: row[k] for k in ("seq", "kind", "state", "attempts", "last_error")},
                "body": _body_outline(row["kind"], row["body"]),
                "answer": _answer_outline(row["answer"]),
            }
            for row in sorted(self.journal_rows("outbox"), key=lambda r: int(r["seq"]))
            if row["lane"] == session_id
        ]
        commands = [
            {k: c[k] for k in ("command_id", "kind", "received_at", "answered")}
            for c in self.journal_rows("commands")
            if c["session_id"] == session_id
        ]
        return {"session": session, "commands": commands, "requests": requests}


def _body_outline(kind: str, body: str) -> dict[str, Any] | None:
    """A request's body, cut to what says what was asked: an authorization's carries the
    card's protected data, a capture's receipt the card's brand and last four."""
    if kind == "authorize":
        return None
    data: dict[str, Any] = json.loads(body)
    return {k: v for k, v in data.items() if k not in ("receipt", "card")}


def _answer_outline(answer: str | None) -> dict[str, Any] | None:
    """The gateway's answer to a request, cut to what says how it ended."""
    if answer is None:
        return None
    data = json.loads(answer)
    if not isinstance(data, dict):
        return {"answer": data}
    keys = ("status", "code", "amount_authorized", "amount_captured", "decline_reason")
    return {k: data[k] for k in keys if k in data}
