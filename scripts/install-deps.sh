#!/usr/bin/env bash
# install-deps.sh — installs the Debian 12 packages that building and testing Ailurus need.
# Idempotent and quiet when everything is there. Needs root (or sudo) only when something is
# missing. The npm test tools (kafkajs) are installed by tests/integration/js on first use.
set -euo pipefail

BUILD_PKGS=(gcc make clang libclang-rt-14-dev pkg-config liburing-dev zlib1g-dev libzstd-dev
    liblz4-dev libsnappy-dev libyaml-dev libjansson-dev libhttp-parser-dev libssl-dev)
TEST_PKGS=(python3 python3-pytest python3-confluent-kafka python3-kafka kcat fio prometheus
    nodejs npm iproute2 procps)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" != "--build-only" ]; then want+=("${TEST_PKGS[@]}"); fi

missing=()
for p in "${want[@]}"; do
    # nodejs/npm may come from outside Debian (e.g. a preinstalled /usr/bin/node): accept that.
    if [ "$p" = nodejs ] && command -v node >/dev/null; then continue; fi
    if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
