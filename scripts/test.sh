#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Debian tools used by the network tests, and gcc for the optional C speedup that
# pip builds below (only when run as root on a Debian-like box).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=""
  command -v ping >/dev/null 2>&1 || need="$need iputils-ping"
  command -v tcpdump >/dev/null 2>&1 || need="$need tcpdump"
  command -v dnsmasq >/dev/null 2>&1 || need="$need dnsmasq-base"
  command -v gcc >/dev/null 2>&1 || need="$need gcc libc6-dev"
  if [ -n "$need" ]; then
    (apt-get install -y -q $need >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $need >/dev/null 2>&1)) || \
      echo "warning: could not install$need; tests that need them will fail" >&2
  fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' > .venv/pip-install.log 2>&1 || {
  grep -v "is ignored: it is neither" .venv/pip-install.log >&2; echo "pip install failed" >&2; exit 1; }
if [ $# -eq 0 ]; then
  # the pure-Python checksum (the fallback where no compiler built netstack/wire/_csum.c)
  # through the tests that sum every frame; then everything with the C one
  PYSEASTAR_PURE_PYTHON=1 .venv/bin/python -m pytest -q tests/test_wire.py tests/test_interface.py \
    tests/test_tcp_link.py tests/test_offpath.py
fi
exec .venv/bin/python -m pytest "$@"
