"""`ev-terminal gateway add-operator`: the first admin is made from the command line; user
errors are one line and exit 2 with nothing added; the password is stored as argon2id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa

from gateway.ledger import open_engine
from gateway.ledger.web_schema import audit_log, operators

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery staple"


def _run(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ev-terminal"), "gateway", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    assert _run(["migrate", "--db", "g.sqlite3"], tmp_path).returncode == 0
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "short").write_text("too short\n")
    return tmp_path


def _operators(db: Path) -> list[sa.Row[object]]:
    engine = open_engine(str(db / "g.sqlite3"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(operators)))
    finally:
        engine.dispose()


def test_the_first_admin_is_added_with_an_argon2_hash_and_audited(db: Path) -> None:
    args = ["add-operator", "--db", "g.sqlite3", "--username", "alice", "--role", "admin"]
    result = _run([*args, "--password-file", "pw"], db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "operator alice added (admin)"
    (row,) = _operators(db)
    assert row.username == "alice"
    assert row.role == "admin"
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    engine = open_engine(str(db / "g.sqlite3"))
    with engine.connect() as conn:
        (entry,) = conn.execute(sa.select(audit_log)).all()
    engine.dispose()
    assert (entry.actor, entry.action, entry.target) == ("cli", "operator.add", "alice")


def test_a_totp_operator_gets_the_uri_once_and_its_secret_works(db: Path) -> None:
    args = ["add-operator", "--db", "g.sqlite3", "--username", "bob", "--role", "read-only"]
    result = _run([*args, "--password-file", "-", "--totp"], db, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    uri = result.stdout.splitlines()[1].removeprefix("TOTP: ")
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    (row,) = _operators(db)
    assert row.role == "read_only"
    assert row.totp_secret == totp.secret


CASES = [
    ("no-username", ["--role", "admin", "--password-file", "pw"], "--username"),
    (
        "bad-username",
        ["--username", "Bob Smith", "--role", "admin", "--password-file", "pw"],
        "--username",
    ),
    ("no-role", ["--username", "bob", "--password-file", "pw"], "--role"),
    ("bad-role", ["--username", "bob", "--role", "boss", "--password-file", "pw"], "--role"),
    ("no-password", ["--username", "bob", "--role", "admin"], "--password-file"),
    (
        "missing-password-file",
        ["--username", "bob", "--role", "admin", "--password-file", "nope"],
        "--password-file",
    ),
    (
        "short-password",
        ["--username", "bob", "--role", "admin", "--password-file", "short"],
        "at least 12",
    ),
]


@pytest.mark.parametrize(("args", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_exit_2_and_adds_nobody(
    db: Path, args: list[str], names: str
) -> None:
    result = _run(["add-operator", "--db", "g.sqlite3", *args], db)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("level=")]
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr
    assert _operators(db) == []


def test_a_taken_name_and_a_missing_database_are_one_line_exit_2(db: Path) -> None:
    args = ["--username", "alice", "--role", "admin", "--password-file", "pw"]
    assert _run(["add-operator", "--db", "g.sqlite3", *args], db).returncode == 0
    again = _run(["add-operator", "--db", "g.sqlite3", *args], db)
    assert again.returncode == 2
    assert "exists already" in again.stderr
    assert len(_operators(db)) == 1
    missing = _run(["add-operator", "--db", "none.sqlite3", *args], db)
    assert missing.returncode == 2
    assert "migrate" in missing.stderr
    assert not (db / "none.sqlite3").exists()


MAIL_CASES = [
    ("smtp-no-port", ["--smtp", "mail.example.net"], "--smtp"),
    ("smtp-bad-port", ["--smtp", "mail.example.net:99999"], "--smtp"),
    ("smtp-without-sender", ["--smtp", "127.0.0.1:25"], "--mail-from"),
    ("sender-without-smtp", ["--mail-from", "a@example.net"], "--smtp"),
    ("public-url-not-http", ["--public-url", "ftp://example.net"], "--public-url"),
]


@pytest.mark.parametrize(
    ("args", "names"), [c[1:] for c in MAIL_CASES], ids=[c[0] for c in MAIL_CASES]
)
def test_a_bad_mail_option_is_one_line_and_exit_2(db: Path, args: list[str], names: str) -> None:
    result = _run(["--db", "g.sqlite3", "--insecure-dev", "--port", "0", *args], db)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("level=")]
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
