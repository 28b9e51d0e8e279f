# Sourced by the scripts: where the project virtualenv lives, and its Python first on PATH.
PEERPY_VENV="${PEERPY_VENV:-$PWD/.venv}"
case "$PEERPY_VENV" in /*) ;; *) PEERPY_VENV="$PWD/$PEERPY_VENV" ;; esac
export PEERPY_VENV
export PATH="$PEERPY_VENV/bin:$PATH"
