#!/usr/bin/env bash
# The GPU check of dfbench's paper path: one pass/fail table in under 8 minutes (see
# benchmarks/gpu_check.py and docs/scaling.md). Run it first on any machine with a CUDA GPU:
#
#   benchmarks/gpu_check.sh                  # writes gpu-check.md and gpu-check.json here too
#   benchmarks/gpu_check.sh --dry            # the same steps on the CPU at tiny sizes (what CI runs)
#
# Arguments go to gpu_check.py; without an --out, the table is also written to ./gpu-check.{md,json}.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/gpu_check.py"
args=("$@")
if [[ " ${args[*]-} " != *" --out "* && " ${args[*]-} " != *" --out="* ]]; then
  args+=(--out gpu-check.md --out gpu-check.json)
fi
exec "${PYTHON:-python3}" "$script" "${args[@]}"
