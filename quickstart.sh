#!/usr/bin/env bash
# One-command setup + run. Creates/reuses .venv in the repo, installs requirements.txt,
# then torchmeta 1.8.0 with --no-deps (it pins an old torch; see utils/data/torchmeta_compat.py).
#   bash quickstart.sh demo   # a few CPU minutes: sparse-MAML learns on built-in data
#   bash quickstart.sh test   # lint (ruff) and the test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=$VENV/bin/python
[ -x "$PY" ] || python3 -m venv "$VENV"
if [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ]; then
    "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
    "$PY" -m pip install -q --disable-pip-version-check --no-deps torchmeta==1.8.0
    touch "$VENV/.installed"
fi
cmd=${1:-demo}
shift || true
case "$cmd" in
    demo) exec "$PY" train.py --config configs/demo_strokes.json "$@" ;;
    test) "$PY" -m ruff check . && exec "$PY" -m pytest "$@" ;;
    *) echo "usage: bash quickstart.sh {demo|test} [extra args]" >&2; exit 2 ;;
esac
