#!/usr/bin/env bash
# One GPU check of carabm (docs/gpu.md, "Running the GPU check"): install, pytest -m gpu,
# compute-sanitizer, benchmarks, per-kernel timings and one JSON summary, in about 8 minutes.
# A thin wrapper: the work is scripts/gpu_check.py, run with $PYTHON (default: python).
#   scripts/gpu_check.sh [--out DIR] [--budget SECONDS] [--only PART] [--skip PART] [--timeout PART=SECONDS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
