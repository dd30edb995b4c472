#!/usr/bin/env bash
# Installs every Debian package mcl-dist needs (idempotent) and builds the release binary.
# Usage: bash scripts/setup.sh            (as root, or with sudo available)
#        bash scripts/setup.sh packages   (the packages only; scripts/test.sh builds what it tests)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="libopenmpi-dev openmpi-bin libopenblas-dev liblapacke-dev libdnnl-dev libjpeg-dev libpng-dev zlib1g-dev dataset-fashion-mnist pkg-config slurm-wlm munge"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
else
  echo "setup: Debian packages already installed"
fi
[ "${1:-}" = packages ] && exit 0
command -v swift >/dev/null || export PATH=/opt/swift/usr/bin:$PATH
command -v swift >/dev/null || { echo "setup: swift not found (expected Swift 6 at /opt/swift)"; exit 1; }
echo "setup: building release binary"
LOG=$(mktemp)
if ! swift build -c release --product mcl-dist >"$LOG" 2>&1; then
  grep -E "error:" "$LOG" | head -20; tail -5 "$LOG"; rm -f "$LOG"
  echo "setup: build FAILED (swift build exit status non-zero)"; exit 1
fi
rm -f "$LOG"
echo "setup: ok: $(pwd)/.build/release/mcl-dist"
