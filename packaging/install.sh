#!/bin/sh
# install.sh — installs the pieces around the binary that `make install` does not: the systemd
# unit, the default configuration (kept if present), the service user and the data directory.
# Run as root after `make install` (PREFIX defaults to /usr/local, as in the Makefile).
#   sudo packaging/install.sh            then: systemctl enable --now ailurus
set -eu
cd "$(dirname "$0")"
PREFIX=${PREFIX:-/usr/local}
[ -x "$PREFIX/bin/ailurus" ] || { echo "install.sh: run 'make install' first" >&2; exit 1; }
install -D -m 0644 ailurus.service /etc/systemd/system/ailurus.service
[ -e /etc/ailurus/ailurus.yaml ] || install -D -m 0644 ailurus.yaml /etc/ailurus/ailurus.yaml
id ailurus >/dev/null 2>&1 || \
    useradd --system --home-dir /var/lib/ailurus --shell /usr/sbin/nologin ailurus
install -d -o ailurus -g ailurus -m 0750 /var/lib/ailurus /var/lib/ailurus/data
"$PREFIX/bin/ailurus" config check --config /etc/ailurus/ailurus.yaml
command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload || true
echo "installed; next: ailurus tune, then systemctl enable --now ailurus"
