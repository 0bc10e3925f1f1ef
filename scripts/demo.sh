#!/usr/bin/env bash
# The main job on a fresh machine (as root): install, then run the tutorial's
# echo and canned servers on our native stack, each on a TAP device in a network
# namespace this script creates and removes, talked to by kernel clients.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' > .venv/pip-install.log 2>&1 || {
  grep -v "is ignored: it is neither" .venv/pip-install.log >&2; echo "pip install failed" >&2; exit 1; }
exec .venv/bin/python scripts/demo.py "$@"
