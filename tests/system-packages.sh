#!/usr/bin/env bash
# The Debian packages the test suite needs beside the Python ones: Chromium (kiosk and portal
# pages in a real browser), PostgreSQL (the gateway's production back-end; tests start their
# own server from its binaries) and nginx (the TLS-terminating reverse proxy in front of the
# gateway), Node.js with npm (the ocpp-rpc CSMS, a second OCPP 2.1 peer), strace (records every
# path the installed daemon writes under its unit's sandbox), fonts-dejavu-core (the invoices'
# typeface). As root, missing
# ones are installed; otherwise they are named and the run stops.
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v chromium >/dev/null || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
command -v strace >/dev/null || need+=(strace)
# The gateway sets its invoices in DejaVu Sans (gateway/web/invoice_pdf.py).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "the tests need these Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
