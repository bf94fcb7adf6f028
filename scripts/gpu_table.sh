#!/usr/bin/env bash
# The GPU table of README "Measured" and docs/sam_family.md: the fast_gpu, jetson, paper and paper_hq
# profiles at 1, 2, 4 and 8 objects with random weights (speeds real, masks meaningless), one process
# per profile, then the decoder alone with the object counts interleaved. Prints the summary lines
# (one per profile and count, then the profile's decoder scaling) and writes each profile's whole
# report to OUT/PROFILE.json.
#
#   bash scripts/gpu_table.sh [OUT]                       # OUT defaults to outputs/gpu_table
#   PYTHON=python3 FRAMES=20 bash scripts/gpu_table.sh    # another Python (one with torch and the SAM
#                                                         # packages: segment-anything, segment-anything-hq, timm)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/gpu_table}"
python="${PYTHON:-.venv/bin/python}"
frames="${FRAMES:-20}"
profiles="${PROFILES:-fast_gpu jetson paper paper_hq}"
mkdir -p "$out"
failed=0
for profile in $profiles; do
    # one profile failing (a missing package, say) must not lose the others' rows
    if ! "$python" -m sampt_ros.tools.benchmark --profile "$profile" --random-weights --size 854x480 \
            --objects 1,2,4,8 --frames "$frames" --warmup 3 --decoder-rounds 3 --no-progress \
            --json "$out/$profile.json" > "$out/$profile.log" 2>&1; then
        echo "gpu_table: $profile failed; the end of $out/$profile.log:" >&2
        tail -n 5 "$out/$profile.log" >&2
        failed=1
        continue
    fi
    grep '^{' "$out/$profile.log"
done
exit "$failed"
