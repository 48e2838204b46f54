#!/usr/bin/env bash
# Make .venv/ ready for wsod_d2: torch, detectron2, the pinned requirements and wsod_d2 itself.
# Idempotent and quick when nothing changed. PYTHON picks the base interpreter (default python3).
# If that interpreter already has detectron2 (e.g. built from source with its C++ ops), the venv
# sees it (and its torch) through --system-site-packages instead of installing the Python-only one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
BASE_PY=${PYTHON:-python3}
STAMP="$VENV/.wsod_d2_setup"
want=$(cat "$ROOT/requirements.txt" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  if "$BASE_PY" -c "import detectron2" >/dev/null 2>&1; then
    echo "[setup_env] using the detectron2 of $BASE_PY"
    "$BASE_PY" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PY" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup_env] installing torch 2.14.1, torchvision 0.29.1"
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
echo "[setup_env] installing pinned requirements"
"${PIP[@]}" -r "$ROOT/requirements.txt"
if ! "$PY" -c "import detectron2" >/dev/null 2>&1; then
  echo "[setup_env] installing detectron2 0.6 (Python code)"
  "$PY" "$ROOT/tools/install_detectron2.py"
fi
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import wsod_d2, detectron2, torch; print('[setup_env] ready: torch', torch.__version__, 'detectron2', detectron2.__version__)"
echo "$want" > "$STAMP"
