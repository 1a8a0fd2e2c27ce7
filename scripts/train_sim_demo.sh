#!/usr/bin/env bash
# The simulator demo world model, end to end on the CPU (numbers in benchmarks/SIM_DEMO.md):
#   1. collect random safe end-effector moves on franky-sim (robot/collect.py, resumable);
#   2. frozen random tiny encoder (seed 0, 64 px) -> latent cache -> tiny AC predictor (train_ac), held-out
#      evaluation vs the copy baselines, export encoder + predictor as one safetensors file;
#   3. closed-loop reaching with the trained model vs the random one (benchmarks/sim_demo_closed_loop.py).
#
#   EPISODES=48 STEPS=12 TRAIN_STEPS=1500 bash scripts/train_sim_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EPISODES=${EPISODES:-48}
STEPS=${STEPS:-12}
TRAIN_STEPS=${TRAIN_STEPS:-1500}
OUT=${OUT:-runs/sim_demo}
MODEL=${MODEL:-$OUT/sim_demo_world_model.safetensors}
export MUJOCO_GL=${MUJOCO_GL:-egl}

"$PY" robot/collect.py --out runs/sim_data --episodes "$EPISODES" --steps "$STEPS"
"$PY" -m vjepa_fast.train.sim_demo --episodes runs/sim_data --out "$OUT" --steps "$TRAIN_STEPS" \
    --probe tiny64 tiny128 cpu_small128 --export "$MODEL"
"$PY" benchmarks/sim_demo_closed_loop.py --trials 5 --max-steps 8 --model "trained=$MODEL" --model random=random \
    --out "$OUT/closed_loop" --markdown "$OUT/closed_loop/table.md"
