"""A real nginx (Debian's /usr/sbin/nginx) in front of an HTTP upstream, for tests.

`running_nginx` renders the shipped example configuration, `deploy/nginx/ev-gateway.conf`,
for a temporary directory: its certificate paths point at the files given, its two listening
ports become free ports on 127.0.0.1, its upstream becomes the address given. Every string
replaced must occur in the file, so a test never runs a configuration other than the one we
ship without saying so. nginx runs in the foreground (``daemon off``) with its pid file, logs
and temporary files in the directory, and is stopped (SIGQUIT, then SIGKILL) on exit.

    with running_nginx(tmp_path / "nginx", files, upstream=("127.0.0.1", port)) as proxy:
        requests.get(proxy.terminal_url + "/healthz", cert=..., verify=...)
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

NGINX = Path("/usr/sbin/nginx")
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "ev-gateway.conf"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # free ports are chosen, then bound by nginx: another process may win


@dataclass(frozen=True, slots=True, kw_only=True)
class NginxFiles:
    """The files the example configuration names under /etc/ev-terminal/nginx/."""

    server_cert: Path  # the terminals' server: the gateway's certificate (fleet CA)
    server_key: Path
    client_ca: Path  # the fleet CA terminals' certificates are checked against
    crl: Path
    public_cert: Path  # the public server (receipts, portal)
    public_key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningNginx:
    """A started nginx: where its two servers listen, and its directory (logs inside)."""

    terminal_url: str
    public_url: str
    directory: Path

    def error_log(self) -> str:
        return (self.directory / "error.log").read_text(encoding="utf-8", errors="replace")


def _replace_all(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{EXAMPLE}: no {old!r} to render; keep harness and file in step")
        text = text.replace(old, new)
    return text


def render(
    files: NginxFiles,
    *,
    upstream: tuple[str, int],
    terminal_port: int,
    public_port: int,
    directory: Path,
) -> str:
    """The example configuration as a whole nginx.conf for `directory`."""
    site = _replace_all(
        EXAMPLE.read_text(encoding="utf-8"),
        {
            "/etc/ev-terminal/nginx/tls-server.pem": str(files.server_cert),
            "/etc/ev-terminal/nginx/tls-server.key": str(files.server_key),
            "/etc/ev-terminal/nginx/tls-ca.pem": str(files.client_ca),
            "/etc/ev-terminal/nginx/tls-crl.pem": str(files.crl),
            "/etc/ev-terminal/nginx/public.pem": str(files.public_cert),
            "/etc/ev-terminal/nginx/public.key": str(files.public_key),
            "server 127.0.0.1:8080;": f"server {upstream[0]}:{upstream[1]};",
            "listen 8443 ssl;": f"listen 127.0.0.1:{terminal_port} ssl;",
            "listen 443 ssl;": f"listen 127.0.0.1:{public_port} ssl;",
        },
    )
    # As root nginx would hand its workers to "nobody", who cannot enter a 0700 test dir.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        # info: nginx logs a refused client certificate, and why, at this level.
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {directory / 'access.log'};\n"
        f"{temp}\n"
        f"{site}\n"
        "}\n"
    )


class _PortTaken(Exception):
    """Another process bound a chosen port between `free_port` and nginx's start."""


def _wait_started(
    process: subprocess.Popen[bytes], pid_file: Path, ports: list[int], log: Path
) -> None:
    """Until nginx has written its pid file (it does so after binding every listening socket,
    nginx.c: ngx_init_cycle, then ngx_create_pidfile) and both ports accept connections."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(ports)
    while waiting:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if "Address already in use" in text:
                raise _PortTaken(text)
            raise RuntimeError(f"nginx exited with {process.returncode}: {text}")
        try:
            if not pid_file.exists():
                raise OSError("no pid file yet")
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5).close()
            waiting.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not listen on {waiting}: {log.read_text()}"
                ) from None
            time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(
    directory: Path, files: NginxFiles, upstream: tuple[str, int]
) -> tuple[subprocess.Popen[bytes], int, int]:
    conf, log, pid_file = directory / "nginx.conf", directory / "error.log", directory / "nginx.pid"
    for _ in range(START_ATTEMPTS):
        terminal_port, public_port = free_port(), free_port()
        conf.write_text(
            render(
                files,
                upstream=upstream,
                terminal_port=terminal_port,
                public_port=public_port,
                directory=directory,
            ),
            encoding="utf-8",
        )
        test = subprocess.run(
            [str(NGINX), "-t", "-q", "-p", str(directory), "-c", str(conf), "-e", str(log)],
            capture_output=True,
            check=False,
        )
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t refused {conf}: {test.stderr.decode()}")
        log.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        process = subprocess.Popen(
            [
                str(NGINX),
                "-p",
                str(directory),
                "-c",
                str(conf),
                "-e",
                str(log),
                "-g",
                f"daemon off; pid {pid_file};",
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait_started(process, pid_file, [terminal_port, public_port], log)
        except _PortTaken:
            process.wait()
            continue
        except BaseException:
            _stop(process)
            raise
        return process, terminal_port, public_port
    raise RuntimeError(f"nginx found its ports taken {START_ATTEMPTS} times in a row")


@contextmanager
def running_nginx(
    directory: Path, files: NginxFiles, *, upstream: tuple[str, int]
) -> Iterator[RunningNginx]:
    """Start nginx with the rendered example configuration; stop it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    process, terminal_port, public_port = _start(directory, files, upstream)
    try:
        yield RunningNginx(
            terminal_url=f"https://127.0.0.1:{terminal_port}",
            public_url=f"https://127.0.0.1:{public_port}",
            directory=directory,
        )
    finally:
        _stop(process)
