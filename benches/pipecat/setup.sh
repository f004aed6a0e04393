#!/usr/bin/env bash
# Installs Pipecat and what its loopback bot needs from PyPI into a virtualenv (idempotent).
#   benches/pipecat/setup.sh            # venv at $PIPECAT_VENV (default ~/.cache/switchboard/pipecat-venv)
# Pinned versions, so two machines run the same Pipecat. Needs python3 ≥ 3.11 with venv.
set -euo pipefail
VENV="${PIPECAT_VENV:-$HOME/.cache/switchboard/pipecat-venv}"
PIPECAT_VERSION=1.14.0
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import pipecat, pyrnnoise, fastapi, uvicorn" 2>/dev/null \
    && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pipecat-ai"))')" = "$PIPECAT_VERSION" ]; then
    echo "pipecat venv ready: $VENV"
    exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
    "pipecat-ai[silero,rnnoise,websocket]==$PIPECAT_VERSION" \
    "uvicorn[standard]==0.54.0"
"$VENV/bin/python" -c "import pipecat, pyrnnoise, fastapi, uvicorn; print('pipecat venv ready:', '$VENV')"
