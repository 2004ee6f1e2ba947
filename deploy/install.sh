#!/usr/bin/env bash
# Install ev-terminal on Raspberry Pi OS (Bookworm). Safe to run twice.
#
#   sudo deploy/install.sh [--gateway] [--console-port DEV] [--pi-model 3|4|5]
#   deploy/install.sh --root /tmp/stage        # stage into a directory, no root needed
#
# Creates the ev-terminal user, /opt/ev-terminal (sources, docs, venv), /etc/ev-terminal
# (the config, kept if present), /var/lib/ev-terminal (data 0750, keys 0700, ocpp 0700: the
# OCPP client certificate, which the kiosk renews in place), the udev rules
# and the systemd units, and sets the boot config (dtparam=strict_gpiod; on a Pi 3/4 the
# Bluetooth UART off so the reader has the PL011). The Pi model comes from the device tree
# (--pi-model overrides it); the console port defaults to the Pi 5's debug UART, else none.
# With --root (or DESTDIR) everything is written under that directory and what needs the
# real system (useradd, chown, pip, udevadm, systemctl, raspi-config) is printed as
# "would run: ..." instead.
set -euo pipefail

ROOT="${DESTDIR:-}"
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
GATEWAY=0
CONSOLE_PORT=""
CONSOLE_SET=0
PI_MODEL=""
USER_NAME="ev-terminal"
PYTHON="${PYTHON:-python3}"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
    --gateway) GATEWAY=1; shift ;;
    --console-port) CONSOLE_PORT="${2:?--console-port needs a device}"; CONSOLE_SET=1; shift 2 ;;
    --pi-model) PI_MODEL="${2:?--pi-model needs 3, 4 or 5}"; shift 2 ;;
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

# -- the Pi model and its serial ports -----------------------------------------------------------
# The reader (PN532) needs a full UART: the PL011 on GPIO 14/15 (/dev/ttyAMA0, /dev/serial0).
# On a Pi 3/4 that UART drives Bluetooth unless dtoverlay=disable-bt; a Pi 5 has its own for
# Bluetooth and a separate debug UART (/dev/ttyAMA10, the 3-pin connector) for the console.
if [ -z "$PI_MODEL" ]; then
  model_file="$ROOT/proc/device-tree/model"
  [ -n "$ROOT" ] || model_file=/proc/device-tree/model
  model="$(tr -d '\0' < "$model_file" 2>/dev/null || true)"
  case "$model" in
    *"Raspberry Pi 5"*|*"Compute Module 5"*) PI_MODEL=5 ;;
    *"Raspberry Pi 4"*|*"Compute Module 4"*|*"Raspberry Pi 400"*) PI_MODEL=4 ;;
    *"Raspberry Pi 3"*) PI_MODEL=3 ;;
    *) PI_MODEL=unknown ;;
  esac
fi
case "$PI_MODEL" in
  3|4|5|unknown) ;;
  *) echo "install.sh: --pi-model must be 3, 4 or 5, got '$PI_MODEL'" >&2; exit 2 ;;
esac
if [ "$CONSOLE_SET" = 0 ] && [ "$PI_MODEL" = 5 ]; then
  CONSOLE_PORT="/dev/ttyAMA10"
fi
say "Raspberry Pi model: $PI_MODEL; reader UART /dev/serial0 (ttyAMA0); console: ${CONSOLE_PORT:-none (--console-port DEV)}"

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
install -d -m 0700 "$DATA/keys" "$DATA/ocpp"
system chown root:"$USER_NAME" "$ETC/"
system chown "$USER_NAME:$USER_NAME" "$DATA/" "$DATA/keys/" "$DATA/ocpp/"

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
  console_edit="s|^# port = .*|port = \"$CONSOLE_PORT\"          # the technician's serial console|"
  [ -n "$CONSOLE_PORT" ] || console_edit="s|^# port = |# port = |"
  sed -e 's|^dir = .*|dir = "/var/lib/ev-terminal"           # journal, lock-out state|' \
      -e 's|^# keys_dir = .*|keys_dir = "/var/lib/ev-terminal/keys"   # device keys (0700)|' \
      -e "/^\[console\]/,/^\[/ $console_edit" \
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

# The UARTs must not also be the kernel's console or a login prompt.
if [ "$STAGED" = 1 ] || command -v raspi-config >/dev/null; then
  system raspi-config nonint do_serial_cons 1
  system raspi-config nonint do_serial_hw 0
  # I2C for the LCD, when the config has one.
  if grep -q '^kind = "lcd"' "$ETC/terminal.toml"; then
    system raspi-config nonint do_i2c 0
  fi
fi
if [ -n "$CONSOLE_PORT" ]; then
  system systemctl mask "serial-getty@$(basename "$CONSOLE_PORT").service"
fi

# -- the boot config: fail-safe GPIO, and the PL011 for the reader ------------------------------
# dtparam=strict_gpiod: a GPIO line released by its process (or left by a dead one) returns to
# its default (an input; the relay board's pull-down opens the relay) instead of keeping its
# level. On a Pi 3/4, dtoverlay=disable-bt gives the PL011 back to GPIO 14/15 (serial0).
BOOT_CONFIG="$ROOT/boot/firmware/config.txt"      # Bookworm
[ -e "$BOOT_CONFIG" ] || [ ! -e "$ROOT/boot/config.txt" ] || BOOT_CONFIG="$ROOT/boot/config.txt"
boot_line() {
  if [ ! -e "$BOOT_CONFIG" ]; then
    say "no ${BOOT_CONFIG#"$ROOT"}: add '$1' to the boot config by hand"
  elif grep -qxF "$1" "$BOOT_CONFIG"; then
    say "boot config has $1"
  else
    printf '%s\n' "$1" >> "$BOOT_CONFIG"
    say "boot config: added $1 (takes effect at the next boot)"
  fi
}
boot_line "dtparam=strict_gpiod"
if [ "$PI_MODEL" = 3 ] || [ "$PI_MODEL" = 4 ]; then
  boot_line "dtoverlay=disable-bt"
  system systemctl disable hciuart.service
fi

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
