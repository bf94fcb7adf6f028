#!/usr/bin/env bash
# Sets up .venv when needed, then runs the demo: a generated sequence is written as a rosbag and
# replayed through the real node with the weight-free profile; prints J&F, FPS and the report paths.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/sampt-demo" "$@"
