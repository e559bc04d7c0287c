#!/usr/bin/env bash
# Set up what Slipway's integration tests need: a Python venv with fakepve
# (a fake Proxmox VE API, AGPL-3.0, used only as a test tool) and Synapse
# (PyPI matrix-synapse, a real Matrix homeserver for the Matrix adapter's tests).
#
#   bash tests/setup.sh            # venv at $REPO/.venv
#   SLIPWAY_TEST_VENV=/x bash tests/setup.sh
#
# Idempotent: an existing venv is reused and pip runs only when fakepve or
# Synapse is missing or at another version. Prints the venv's python on its last line.
set -euo pipefail

FAKEPVE_VERSION=0.5.0
SYNAPSE_VERSION=1.163.2
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLIPWAY_TEST_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    PYTHON="${PYTHON:-python3}"
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "setup.sh: $PYTHON not found; install Python 3 (3.9 or newer)" >&2
        exit 1
    fi
    echo "setup.sh: creating venv at $VENV" >&2
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        echo "setup.sh: '$PYTHON -m venv' failed; on Debian: apt-get install python3-venv" >&2
        exit 1
    fi
fi

installed="$("$PY" - <<'PY' 2>/dev/null || true
from importlib import metadata
try:
    import cryptography  # noqa: F401 - the crypto extra
    print(metadata.version('fakepve'))
except Exception:
    pass
PY
)"

if [ "$installed" != "$FAKEPVE_VERSION" ]; then
    echo "setup.sh: installing fakepve[crypto]==$FAKEPVE_VERSION into $VENV" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check "fakepve[crypto]==$FAKEPVE_VERSION" >&2
fi

synapse="$("$PY" - <<'PY' 2>/dev/null || true
from importlib import metadata
try:
    print(metadata.version('matrix-synapse'))
except Exception:
    pass
PY
)"

if [ "$synapse" != "$SYNAPSE_VERSION" ]; then
    echo "setup.sh: installing matrix-synapse==$SYNAPSE_VERSION into $VENV" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION" >&2
fi

echo "$PY"
