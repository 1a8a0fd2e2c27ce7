#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh) and runs the main job. Until the robot loop exists this is the
# stand-in job `vjepa-fast demo` (tiny V-JEPA pretraining on synthetic video, CPU). Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vjepa-fast demo "$@"
