#!/usr/bin/env bash
# Sets up ./.venv (scripts/setup.sh) and runs the main job: closed-loop latent MPC on the embedded simulator
# (franky-sim MuJoCo FR3 behind the real libfranka protocol on loopback), 8 MPC steps toward a goal image
# rendered at an offset of (+5, +5, -5) cm (8.7 cm away). Logs, episode and plots go to runs/mpc-sim. Extra
# arguments go to robot/run_mpc.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec .venv/bin/python robot/run_mpc.py --sim --goal-offset 0.05 0.05 -0.05 --max-steps 8 --log-dir runs/mpc-sim "$@"
