#!/usr/bin/env bash
# Install ev-terminal on Raspberry Pi OS (Bookworm). Safe to run twice.
#
#   sudo deploy/install.sh [--gateway] [--console-port /dev/ttyAMA0]
#   deploy/install.sh --root /tmp/stage        # stage into a directory, no root needed
#
# Creates the ev-terminal user, /opt/ev-terminal (sources, docs, venv), /etc/ev-terminal
# (the config, kept if present), /var/lib/ev-terminal (data 0750, keys 0700), the udev rules
# and the systemd units. With --root (or DESTDIR) everything is written under that directory
# and what needs the real system (useradd, chown, pip, udevadm, systemctl, raspi-config) is
# printed as "would run: ..." instead.
set -euo pipefail

ROOT="${DESTDIR:-}"
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
GATEWAY=0
CONSOLE_PORT="/dev/ttyAMA0"
USER_NAME="ev-terminal"
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
    --gateway) GATEWAY=1; shift ;;
    --console-port) CONSOLE_PORT="${2:?--console-port needs a device}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != "/" ] || ROOT=""
fi
STAGED=0
[ -n "$ROOT" ] && STAGED=1
if [ "$STAGED" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root, or stage with --root DIR" >&2
  exit 1
fi

OPT="$ROOT/opt/ev-terminal"
ETC="$ROOT/etc/ev-terminal"
DATA="$ROOT/var/lib/ev-terminal"
UNITS="$ROOT/etc/systemd/system"
RULES="$ROOT/etc/udev/rules.d"

say() { echo "install.sh: $*"; }
# Commands that act on the real system: run them, or, when staging, say what would run.
system() {
  if [ "$STAGED" = 1 ]; then
    echo "would run: $*"
  else
    "$@"
  fi
}

if [ -r "$ROOT/etc/os-release" ] || [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  codename="$(. "${ROOT}/etc/os-release" 2>/dev/null || . /etc/os-release; echo "${VERSION_CODENAME:-}")"
  [ "$codename" = bookworm ] || say "note: made for Raspberry Pi OS Bookworm; this is '${codename:-unknown}'"
fi

# -- the user and the device groups -------------------------------------------------------------
for group in gpio i2c dialout; do
  if ! getent group "$group" >/dev/null; then
    system groupadd --system "$group"
  fi
done
if getent passwd "$USER_NAME" >/dev/null; then
  say "user $USER_NAME exists"
else
  system useradd --system --user-group --home-dir /var/lib/ev-terminal --no-create-home \
    --shell /usr/sbin/nologin --comment "ev-terminal kiosk" "$USER_NAME"
fi
system usermod --append --groups gpio,i2c,dialout "$USER_NAME"

# -- directories, with their modes --------------------------------------------------------------
install -d -m 0755 "$OPT" "$UNITS" "$RULES"
install -d -m 0750 "$ETC" "$DATA"
install -d -m 0700 "$DATA/keys"
system chown root:"$USER_NAME" "$ETC/"
system chown "$USER_NAME:$USER_NAME" "$DATA/" "$DATA/keys/"

# -- sources, docs and the venv -----------------------------------------------------------------
rm -rf "$OPT/src.new"
install -d -m 0755 "$OPT/src.new"
for item in terminal hardware drivers gateway launcher docs deploy systemd setup.cfg pyproject.toml README.md; do
  [ -e "$SOURCE/$item" ] && cp -R "$SOURCE/$item" "$OPT/src.new/"
done
find "$OPT/src.new" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
rm -rf "$OPT/src"
mv "$OPT/src.new" "$OPT/src"
rm -rf "$OPT/docs"
cp -R "$OPT/src/docs" "$OPT/docs"
if [ -x "$OPT/venv/bin/python" ]; then
  say "venv exists: $OPT/venv"
elif [ "$STAGED" = 1 ]; then
  "$PYTHON" -m venv --without-pip "$OPT/venv"
else
  "$PYTHON" -m venv "$OPT/venv"
fi
system "/opt/ev-terminal/venv/bin/python" -m pip install --quiet --upgrade "/opt/ev-terminal/src[hw]"
if [ "$GATEWAY" = 1 ]; then
  system "/opt/ev-terminal/venv/bin/python" -m pip install --quiet "/opt/ev-terminal/src[gateway]"
fi

# -- the config: written once, never overwritten ------------------------------------------------
if [ -e "$ETC/terminal.toml" ]; then
  say "config kept: /etc/ev-terminal/terminal.toml"
else
  sed -e 's|^dir = .*|dir = "/var/lib/ev-terminal"           # journal, lock-out state|' \
      -e 's|^# keys_dir = .*|keys_dir = "/var/lib/ev-terminal/keys"   # device keys (0700)|' \
      -e "/^\[console\]/,/^\[/ s|^# port = .*|port = \"$CONSOLE_PORT\"          # the technician's serial console|" \
      "$SOURCE/deploy/terminal.toml" > "$ETC/terminal.toml.new"
  chmod 0640 "$ETC/terminal.toml.new"
  mv "$ETC/terminal.toml.new" "$ETC/terminal.toml"
  system chown root:"$USER_NAME" "$ETC/terminal.toml"
  say "config written: /etc/ev-terminal/terminal.toml (edit station, gateway and [hardware])"
fi

# -- udev rules and units -----------------------------------------------------------------------
install -m 0644 "$SOURCE/deploy/udev/99-ev-terminal.rules" "$RULES/99-ev-terminal.rules"
system udevadm control --reload-rules
system udevadm trigger --subsystem-match=tty --subsystem-match=usb --subsystem-match=watchdog --subsystem-match=misc
install -m 0644 "$SOURCE/systemd/ev-terminal.service" "$UNITS/ev-terminal.service"
if [ "$GATEWAY" = 1 ]; then
  install -m 0644 "$SOURCE/systemd/ev-terminal-gateway.service" "$UNITS/ev-terminal-gateway.service"
fi

# The console's UART must not also be the kernel's console or a login prompt.
if [ "$STAGED" = 1 ] || command -v raspi-config >/dev/null; then
  system raspi-config nonint do_serial_cons 1
  system raspi-config nonint do_serial_hw 0
fi
system systemctl mask "serial-getty@$(basename "$CONSOLE_PORT").service"

system systemctl daemon-reload
system systemctl enable ev-terminal.service
if [ "$GATEWAY" = 1 ]; then
  system systemctl enable ev-terminal-gateway.service
fi

say "installed. Next:"
say "  keys:  copy this device's key dir from 'ev-terminal provision' (run on the operator's"
say "         machine; the BDK never goes on a kiosk) into /var/lib/ev-terminal/keys, owner $USER_NAME"
say "  PIN:   sudo -u $USER_NAME /opt/ev-terminal/venv/bin/ev-terminal set-technician-pin --config /etc/ev-terminal/terminal.toml"
say "  check: /opt/ev-terminal/venv/bin/ev-terminal check-config /etc/ev-terminal/terminal.toml"
say "  start: sudo systemctl start ev-terminal"
