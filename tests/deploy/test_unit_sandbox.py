"""The installed kiosk started as systemd would start it, writing only where its unit allows.

A Raspberry Pi OS image layout is staged with `deploy/install.sh --root` (twice), then the
daemon is started by the unit's own `ExecStart` line and stopped, and the unit's own
`ExecStopPost` line runs, each in a harness that stands in for systemd's sandbox:

- a private mount namespace (`unshare --mount`) in which the staged /opt/ev-terminal,
  /etc/ev-terminal and /var/lib/ev-terminal are mounted at their real paths (the first two
  read-only, as `ProtectSystem=strict` leaves them), over copy-on-write views of /opt, /etc and
  /var/lib so nothing on this machine changes; /proc/cpuinfo shows a Pi 5's revision;
- the unit's `WorkingDirectory=` and `Environment=` lines, a clean environment otherwise, and
  systemd's notify socket;
- `strace -f` recording every file system call of the daemon and its threads, so every path
  opened for writing, made, renamed, linked or removed is known, whether or not it succeeded;
- GPIO through gpiozero's own lgpio pin factory with lgpio's import path pointed at a stand-in
  module (tests/deploy/lgpio_mock/, the GPIO chip is the one edge that cannot run here) that
  makes lg's notification FIFO where the real library makes it (LG_WD, else the working dir);
- the installer's own "pip install" step (printed as "would run" when staging) stood in for by
  a .pth file naming the sources it installed and this venv's libraries.

The PN532 and the Modbus devices are emulated in a process of their own; the watchdog is a
pseudo-terminal (a serial-class device the unit's DeviceAllow covers) with no timeout ioctl.
The rule checked: every write is under a `ReadWritePaths=` directory of the unit or in the
private /tmp of `PrivateTmp=yes`, or goes to a device the unit's `DeviceAllow=` lines (or
`DevicePolicy=closed`'s pseudo devices) let it open, or to a pty standing in for one.
Runs as root (mount namespaces); CI runs as root."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.server import EmbeddedGateway
from hardware.emulators.remote import EmulatorProcess, RemotePn532
from hardware.ports import PilotState
from hardware.sim.card_script import load_profiles
from terminal.station import sim_keys
from tests.deploy.test_notify import NotifySocket
from tests.drivers.pi_config import example_pi_data, to_toml

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace (tests/system-packages.sh)"),
]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"
UNIT = ROOT / "systemd" / "ev-terminal.service"
LGPIO_MOCK = Path(__file__).resolve().parent / "lgpio_mock"
WAIT_S = 60.0
PI5_REVISION = "d04170"  # Raspberry Pi 5 Model B 4 GB (new-style revision code)
# Every call that writes to the file system by path (open for writing is decided by its flags).
WRITING_CALLS = {
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "chmod",
    "fchmodat",
    "chown",
    "lchown",
    "fchownat",
    "utimes",
    "utimensat",
    "setxattr",
    "lsetxattr",
    "removexattr",
}
OPENING_CALLS = {"open", "openat", "openat2", "creat"}
PSEUDO_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s*([a-z0-9_]+)\((.*)$")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
DIRFD = re.compile(r"^(?:AT_FDCWD|\d+)(?:<([^>]*)>)?,\s*")

HARNESS = r"""
set -euo pipefail
scratch=$1 stage=$2 cpuinfo=$3 log=$4 workdir=$5
shift 5
mount --make-rprivate /
mount -t tmpfs scratch "$scratch"
for dir in /opt /etc /var/lib; do
  mkdir -p "$scratch/upper$dir" "$scratch/work$dir"
  layers="lowerdir=$dir,upperdir=$scratch/upper$dir,workdir=$scratch/work$dir"
  mount -t overlay overlay -o "$layers" "$dir"
done
for dir in opt/ev-terminal etc/ev-terminal var/lib/ev-terminal; do
  mkdir -p "/$dir"
  mount --bind "$stage/$dir" "/$dir"
done
mount -o remount,bind,ro /opt/ev-terminal
mount -o remount,bind,ro /etc/ev-terminal
mount --bind "$cpuinfo" /proc/cpuinfo
cd "$workdir"
exec strace -f -qq -y --seccomp-bpf -e trace=%file -o "$log" -- "$@"
"""


def unit_lines(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{key}=")
    ]


def unit_command(key: str) -> list[str]:
    (line,) = unit_lines(key)
    return shlex.split(line.removeprefix("-"))


def unit_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in unit_lines("Environment"):
        for item in shlex.split(line):
            name, value = item.split("=", 1)
            env[name] = value
    return env


@dataclass
class Written:
    call: str
    path: str
    result: str


def written_paths(log: Path, workdir: str) -> list[Written]:
    """Every path the traced processes wrote to (or tried to), from strace's log. A call that
    another thread interrupted is logged twice ("<unfinished ...>", then "resumed"); its first
    line holds the arguments, so that is the one read."""
    found: list[Written] = []
    for line in log.read_text(errors="replace").splitlines():
        match = CALL.match(line)
        if match is None:
            continue
        call, rest = match.group(2), match.group(3)
        args, _, result = rest.rpartition(") = ")
        if not args:
            args, result = rest, "(unfinished)"
        if call in OPENING_CALLS:
            if not any(flag in QUOTED.sub('""', args) for flag in WRITE_FLAGS):
                continue
        elif call not in WRITING_CALLS:
            continue
        dirfd = DIRFD.match(args)
        base = dirfd.group(1) if dirfd is not None and dirfd.group(1) else workdir
        paths = QUOTED.findall(args)
        if call.startswith("symlink"):
            paths = paths[1:2]  # the link is written, not its target
        elif call.startswith(("rename", "link")):
            paths = paths[:2]
        else:
            paths = paths[:1]
        found.extend(
            Written(call, os.path.normpath(os.path.join(base, path)), result.strip())
            for path in paths
        )
    return found


@dataclass
class Installed:
    stage: Path
    tmp: Path
    notify: NotifySocket
    reader: RemotePn532
    gateway_url: str
    stand_ins: set[str]  # the ptys given in place of the configured devices

    def run(self, key: str, name: str) -> subprocess.Popen[bytes]:
        """The unit's `key=` command under the harness; strace's log goes to `name`.log."""
        scratch = self.tmp / f"scratch-{name}"
        scratch.mkdir()
        (workdir,) = unit_lines("WorkingDirectory")
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": workdir,  # the ev-terminal user's home (install.sh's useradd)
            "NOTIFY_SOCKET": str(self.notify.path),
            "PYTHONPATH": str(LGPIO_MOCK),  # lgpio's import path
            **unit_environment(),
        }
        harness = [
            "unshare",
            "--mount",
            "bash",
            "-c",
            HARNESS,
            "harness",
            str(scratch),
            str(self.stage),
            str(self.tmp / "cpuinfo"),
            str(self.log(name)),
            workdir,
        ]
        with (self.tmp / f"{name}.out").open("wb") as out:
            return subprocess.Popen(
                [*harness, *unit_command(key)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text(errors="replace")


def _stage(stage: Path) -> None:
    (stage / "proc/device-tree").mkdir(parents=True)
    (stage / "proc/device-tree/model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    (stage / "boot/firmware").mkdir(parents=True)
    (stage / "boot/firmware/config.txt").write_text("[all]\n")
    for _ in range(2):  # idempotent: the second run finds everything in place
        subprocess.run(
            ["bash", str(INSTALL), "--root", str(stage)],
            check=True,
            capture_output=True,
            timeout=WAIT_S,
            env={**os.environ, "PYTHON": sys.executable},
        )
    # What the installer's "would run: pip install /opt/ev-terminal/src[hw]" does on a Pi: the
    # sources it copied, the libraries (this venv's), and the console script pip writes.
    venv = stage / "opt/ev-terminal/venv"
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "ev_terminal.pth").write_text(
        f"/opt/ev-terminal/src\n{sysconfig.get_paths()['purelib']}\n", encoding="utf-8"
    )
    script = venv / "bin/ev-terminal"
    script.write_text(
        "#!/opt/ev-terminal/venv/bin/python\nimport sys\nfrom launcher.cli import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Installed]:
    stage = tmp_path / "root"
    _stage(stage)
    (tmp_path / "cpuinfo").write_text(f"Revision\t: {PI5_REVISION}\n", encoding="utf-8")
    with contextlib.ExitStack() as stack:
        gateway = EmbeddedGateway(tmp_path / "gateway.sqlite3")
        gateway.up()
        stack.callback(gateway.close)
        emulators = stack.enter_context(EmulatorProcess())
        reader = emulators.pn532()
        line = emulators.modbus_line(
            meter={"unit_id": 1, "energy_wh": 1_000_000},
            board={"unit_id": 2, "state": PilotState.A},
        )
        watchdog_master, watchdog = os.openpty()  # a serial-class stand-in for /dev/watchdog
        stack.callback(os.close, watchdog_master)
        stack.callback(os.close, watchdog)
        notify = NotifySocket(tmp_path / "notify")
        stack.callback(notify.sock.close)

        # The operator's edits after install: keys from `provision`, the gateway, [hardware].
        config_path = stage / "etc/ev-terminal/terminal.toml"
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        device_keys, _ = sim_keys(tmp_path / "fleet", data["station"]["id"])
        keys = stage / "var/lib/ev-terminal/keys"
        for item in device_keys.iterdir():
            shutil.copy2(item, keys / item.name)
        data["gateway"] = {"url": gateway.url, "receipt_url": gateway.url + "/receipts"}
        hardware = example_pi_data()["hardware"]
        hardware["reader"] = os.path.realpath(reader.port)
        rtu = {"port": line.port, "baudrate": 38400, "timeout_s": 0.5, "retries": 1}
        hardware["meter"].update(rtu, unit_id=1)
        hardware["vehicle"].update(rtu, unit_id=2)
        hardware["gpio"]["pin_factory"] = "lgpio"
        hardware["display"]["port"] = 0
        hardware["watchdog"] = {"path": os.ttyname(watchdog)}
        data["hardware"] = hardware
        config_path.write_text(to_toml(data), encoding="utf-8")
        stand_ins = {hardware["reader"], line.port, os.ttyname(watchdog)}
        yield Installed(stage, tmp_path, notify, reader, gateway.url, stand_ins)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _allowed(path: str, stand_ins: set[str]) -> bool:
    """Under `ReadWritePaths=`, in the private /tmp and /var/tmp `PrivateTmp=yes` gives the
    service (systemd.exec(5)), or a device the unit lets it open: one `DeviceAllow=` names (a
    path, or `char-<driver>`: that driver's nodes), a pseudo device `DevicePolicy=closed` always
    allows (systemd.resource-control(5)), or a pty standing in for a configured device."""
    allowed = [p.rstrip("/") + "/" for line in unit_lines("ReadWritePaths") for p in line.split()]
    if unit_lines("PrivateTmp") == ["yes"]:
        allowed += ["/tmp/", "/var/tmp/"]
    if any((path + "/").startswith(a) for a in allowed):
        return True
    if path in PSEUDO_DEVICES or path in stand_ins:
        return True
    for spec in (line.split()[0] for line in unit_lines("DeviceAllow")):
        if spec == path:
            return True
        if spec.startswith("char-"):
            driver = spec.removeprefix("char-")
            node = "/dev/bus/usb/.+" if driver == "usb_device" else f"/dev/{driver}-?[0-9]*"
            if re.fullmatch(node, path):
                return True
    return False


def test_the_installed_daemon_writes_only_where_its_unit_allows(installed: Installed) -> None:
    daemon = installed.run("ExecStart", "run")
    try:
        ready = installed.notify.wait_for("READY", WAIT_S)
        assert ready["READY"] == "1", installed.output("run")
        installed.reader.present(load_profiles()["visa"].card())  # a tap: keys and journal
        while "awaitingvehicle" not in installed.notify.wait_for("STATUS", WAIT_S)["STATUS"]:
            pass
        (main,) = _children(daemon.pid)  # strace's child: the daemon itself
        os.kill(main, signal.SIGTERM)
        assert daemon.wait(WAIT_S) == 0, installed.output("run")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(WAIT_S)
    stop_post = installed.run("ExecStopPost", "stop-post")
    assert stop_post.wait(WAIT_S) == 0, installed.output("stop-post")
    assert "event=relay_off pin=17 result=low" in installed.output("stop-post")

    (workdir,) = unit_lines("WorkingDirectory")
    run = written_paths(installed.log("run"), workdir)
    stop = written_paths(installed.log("stop-post"), workdir)
    outside = [w for w in run + stop if not _allowed(w.path, installed.stand_ins)]
    assert outside == [], "\n".join(f"{w.call} {w.path} = {w.result}" for w in outside)
    paths = {w.path for w in run}
    # What it did write, where it should: the journal, the DUKPT registers, lg's FIFO in LG_WD.
    assert "/var/lib/ev-terminal/journal.sqlite3" in paths
    assert any(p.startswith("/var/lib/ev-terminal/keys/") for p in paths)
    assert any(p.startswith("/var/lib/ev-terminal/.lgd-nfy") for p in paths)
    assert not any(p.startswith("/opt/ev-terminal") for p in paths)  # no bytecode, no caches
    # The staged tree outside the data dir is as the installer left it.
    assert not list((installed.stage / "opt/ev-terminal/src").rglob("__pycache__"))
