#!/usr/bin/env bash
# Create .venv (or $VENV) with everything the demo, the benchmark and the tests need.
# Usage: bash scripts/setup_env.sh
# GPU machines: EXTRAS=test,speech,cuda12 (NVIDIA driver >= 525) or EXTRAS=test,speech,cuda13
# (driver >= 580); see the extras in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${EXTRAS:-test,speech}"

# espeak-ng (offline TTS) and sox come from Debian packages.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  command -v espeak-ng >/dev/null || missing="$missing espeak-ng"
  command -v sox >/dev/null || missing="$missing sox"
  if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

python3 -m venv "$VENV"
LOG="$VENV/pip-install.log"
quiet_pip() {  # pip's output goes to a log; it is shown only when pip fails
  "$VENV/bin/pip" "$@" >>"$LOG" 2>&1 || { tail -n 60 "$LOG"; echo "pip $* failed; see $LOG"; exit 1; }
}

quiet_pip install -q --upgrade pip
quiet_pip install -q -e ".[${EXTRAS}]"
# openai-whisper declares triton (a GPU compiler) as a dependency; its real needs are in pyproject.
quiet_pip install -q --no-deps openai-whisper==20250625
# bigvgan is the vocoder parity reference; it declares training-only packages (see pyproject).
case ",$EXTRAS," in *,test,*) quiet_pip install -q --no-deps bigvgan==2.4.1 ;; esac
"$VENV/bin/python" -c "import jax, flax, optax, orbax.checkpoint, grain, whisper; print('environment ready: jax', jax.__version__, jax.devices())"
