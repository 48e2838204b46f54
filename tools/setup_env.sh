#!/usr/bin/env bash
# Make a venv ready for wsod_d2: torch, detectron2 (aliases patched), the requirements, wsod_d2.
# Idempotent and quick when nothing changed: the stamp covers our install files and the list of
# installed packages, so a package moved by hand (`pip install scikit-learn` moving numpy) is
# noticed and the tested versions are put back.
#   PYTHON          base interpreter (default python3)
#   WSOD_D2_DEPS    locked (default on Python 3.8-3.11): requirements.txt with the versions of
#                   requirements-lock.txt, in .venv/; latest: the newest releases the index offers
#                   (numpy 2.x, Pillow >= 10, ...), in .venv-latest/ (CI tests both)
#   WSOD_D2_VENV    the venv folder (default by WSOD_D2_DEPS)
# --check: install nothing; exit 1 (and say what changed) unless the venv is as set up.
# --record: accept the venv's packages as they are now (after a change made on purpose).
# If the base interpreter already has detectron2 (e.g. built from source with its C++ ops), the
# venv sees it (and its torch) through --system-site-packages instead of installing the
# Python-only one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_PY=${PYTHON:-python3}
DEPS=${WSOD_D2_DEPS:-}
if [ -z "$DEPS" ]; then
  # numpy 1.23.5 of the lock has no wheels past Python 3.11.
  if "$BASE_PY" -c "import sys; sys.exit(sys.version_info >= (3, 12))"; then DEPS=locked; else
    echo "[setup_env] Python 3.12 or newer: installing the newest releases (WSOD_D2_DEPS=latest)"
    DEPS=latest
  fi
fi
case "$DEPS" in
  locked) VENV=${WSOD_D2_VENV:-"$ROOT/.venv"} ;;
  latest) VENV=${WSOD_D2_VENV:-"$ROOT/.venv-latest"} ;;
  *) echo "[setup_env] WSOD_D2_DEPS must be 'locked' or 'latest', not '$DEPS'" >&2; exit 2 ;;
esac
STAMP="$VENV/.wsod_d2_setup"
PY="$VENV/bin/python"
files_hash=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-lock.txt" "$ROOT/setup.py" \
  "$ROOT/tools/setup_env.sh" "$ROOT/tools/install_detectron2.py" \
  "$ROOT/tools/detectron2_C_standin.py" | sha256sum | cut -d' ' -f1)
installed() {  # name==version of every distribution the venv sees, sorted
  "$PY" -c "import importlib.metadata as m; print('\n'.join(sorted({f'{d.metadata[\"Name\"]}=={d.version}'.lower() for d in m.distributions() if d.metadata['Name']})))"
}
want_stamp() { printf '%s %s\n%s\n' "$DEPS" "$files_hash" "$(installed)"; }
MODE=${1:-install}
if [ "$MODE" = --record ]; then
  want_stamp > "$STAMP"
  echo "[setup_env] recorded the packages of $VENV as set up"
  exit 0
fi
if [ -f "$STAMP" ] && [ -x "$PY" ]; then
  now=$(want_stamp)
  if [ "$(cat "$STAMP")" = "$now" ]; then
    [ "$MODE" = --check ] && echo "[setup_env] $VENV is as set up"
    exit 0
  fi
  if [ "$(head -n1 "$STAMP")" = "$DEPS $files_hash" ]; then
    echo "[setup_env] the packages in $VENV changed since it was set up (< then, > now):"
    diff <(tail -n +2 "$STAMP") <(printf '%s\n' "$now" | tail -n +2) | grep '^[<>]' | head -20 || true
  else
    echo "[setup_env] wsod_d2's install files changed since $VENV was set up"
  fi
  [ "$MODE" = --check ] && exit 1
  echo "[setup_env] reinstalling what wsod_d2 sets up"
elif [ "$MODE" = --check ]; then
  echo "[setup_env] $VENV is not set up (no $STAMP)"
  exit 1
fi
if [ ! -x "$PY" ]; then
  if "$BASE_PY" -c "import detectron2" >/dev/null 2>&1; then
    echo "[setup_env] using the detectron2 of $BASE_PY"
    "$BASE_PY" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PY" -m venv "$VENV"
  fi
fi
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup_env] installing torch 2.14.1, torchvision 0.29.1 into $VENV"
  "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
if [ "$DEPS" = locked ]; then
  echo "[setup_env] installing requirements.txt with the versions of requirements-lock.txt"
  "${PIP[@]}" -r "$ROOT/requirements.txt" -c "$ROOT/requirements-lock.txt"
else
  echo "[setup_env] installing requirements.txt, newest releases"
  "${PIP[@]}" --upgrade --upgrade-strategy eager -r "$ROOT/requirements.txt"
fi
# Our Python-only detectron2 from before the alias patch (version without the local label) is
# replaced; one built from source is left alone (wsod_d2's startup check names what it lacks).
if ! "$PY" - <<'PYEOF'
import importlib.metadata
import sys

try:
    from detectron2 import _C
except ImportError:
    sys.exit(1)
ours = getattr(_C, "WSOD_D2_STANDIN", False)
sys.exit(ours and "+aliases.patched" not in importlib.metadata.version("detectron2"))
PYEOF
then
  echo "[setup_env] installing detectron2 0.6 (Python code, removed numpy/Pillow aliases patched)"
  "$PY" "$ROOT/tools/install_detectron2.py"
fi
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import wsod_d2, detectron2, torch, numpy, PIL; print('[setup_env] ready:', '$VENV', 'torch', torch.__version__, 'detectron2', detectron2.__version__, 'numpy', numpy.__version__, 'Pillow', PIL.__version__)"
"$PY" -c "from wsod_d2.utils.env import check_environment; check_environment()"
want_stamp > "$STAMP"
