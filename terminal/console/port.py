"""Open the configured serial port and run the console on it in its own thread.

8N1 at the configured rate, no flow control: what screen, minicom and PuTTY use by default.
The port is opened non-exclusively with a short read timeout, so the console thread notices
its stop flag and the idle time-out; `stop` joins it within a bounded time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import serial

from terminal.config import Config
from terminal.console.console import Console, ConsoleSettings
from terminal.console.credential import LOCKOUT_FILE_NAME, Lockout, LockoutPolicy, PinFile
from terminal.console.recent_log import RecentLog
from terminal.shell.daemon import Daemon
from terminal.version import software_version

READ_TIMEOUT_S = 0.1
JOIN_TIMEOUT_S = 2.0


def version() -> str:
    return software_version()


def build_console(
    config: Config,
    daemon: Daemon,
    port: serial.Serial,
    recent_log: RecentLog,
    restart: Callable[[], None],
) -> Console:
    c = config.console
    return Console(
        port=port,
        daemon=daemon,
        config=config,
        pin=PinFile(config.pin_file),
        lockout=Lockout(
            config.data_dir / LOCKOUT_FILE_NAME,
            LockoutPolicy(attempts=c.lockout_attempts, lockout_s=c.lockout_ms // 1000),
        ),
        recent_log=recent_log,
        restart=restart,
        settings=ConsoleSettings(
            idle_timeout_s=c.idle_timeout_ms / 1000, reader_window_s=c.reader_window_ms / 1000
        ),
        version=version(),
    )


class ConsoleThread:
    """The console on its serial port, in the console thread."""

    def __init__(self, console: Console, port: serial.Serial) -> None:
        self.console = console
        self.port = port
        self.thread = threading.Thread(target=console.run, name="console", daemon=True)

    @classmethod
    def open(
        cls, config: Config, daemon: Daemon, recent_log: RecentLog, restart: Callable[[], None]
    ) -> ConsoleThread:
        assert config.console.port is not None
        port = serial.Serial(
            config.console.port, baudrate=config.console.baud, timeout=READ_TIMEOUT_S
        )
        return cls(build_console(config, daemon, port, recent_log, restart), port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.console.stop()
        self.thread.join(timeout=JOIN_TIMEOUT_S)
        self.port.close()
