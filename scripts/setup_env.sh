#!/usr/bin/env bash
# Creates and fills the project's virtual environment in .venv (once; later runs reuse it):
# pinned Python dependencies, the ROS 2 Jazzy wheels, the generated sampt_ros messages, and
# sampt_ros itself as an editable install (sampt-eval, sampt-demo, ... in .venv/bin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"

need_py() {
  "$py" - <<'PY' || { echo "sampt_ros needs Python 3.10-3.12 (the ROS 2 Jazzy wheels); set PYTHON=python3.11" >&2; exit 1; }
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PY
}

if [ ! -x "$venv/bin/python" ]; then
  need_py
  echo "[setup] creating $venv"
  "$py" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }

# Re-install only when the pinned requirements or setup.py changed.
stamp="$venv/.sampt-requirements"
want="$(cat "$root/scripts/requirements.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned dependencies (first run: torch is large, a few minutes)"
  pip install -q -r "$root/scripts/requirements.txt"
  # SAM 2.1 (segmenter.kind: sam2) is an sdist: build it against the torch above (no build isolation,
  # which would fetch a second torch) and without its optional CUDA extension; its dependencies are
  # pinned in requirements.txt.
  SAM2_BUILD_CUDA=0 pip install -q --no-deps --no-build-isolation sam2==1.1.0
  # vos-benchmark (the DAVIS J/F reference) wants opencv-python; we use the headless build.
  pip install -q --no-deps vos-benchmark==0.1.0
  pip install -q --no-deps --no-build-isolation -e "$root" --config-settings editable_mode=compat
  echo "$want" > "$stamp"
fi

# The custom messages, generated with rosidl and cmake into the venv (skips when up to date).
bash "$root/scripts/build_msgs.sh" "$venv"
