#!/usr/bin/env bash
# The whole simulator recipe from nothing, through the public commands (benchmarks/SIM_RECIPE.md):
#   1. generate   robot/simtools/generate.py: random-exploration episodes rendered from the simulator's MuJoCo model
#   2. pretrain   vjepa-fast pretrain: a tiny V-JEPA 2 encoder on those episodes' video (stage 1)
#   3. train-ac   vjepa-fast train-ac --preset sim_tiny: latent cache (built once) + the AC predictor (stage 2)
#                 on the frozen encoder, exported as one world-model file (encoder + predictor, camera recorded)
#   4. evaluate   diagnostics (a) energy quality, (b) perfect-dynamics ceiling, and vjepa-fast sim-eval
#                 (closed loop on unseen goals, with the baselines)
# Every step is resumable: stop anywhere (Ctrl-C) and run the script again with the same settings; finished
# episodes, checkpoints, caches and trials are kept and the step continues where it stopped.
#
#   bash scripts/sim_recipe.sh                    # the shipped model's settings (2-core CPU: see SIM_RECIPE.md)
#   EPISODES=6 HELDOUT=2 PRETRAIN_STEPS=6 AC_STEPS=6 GOALS=1 CEILING=0 OUT=runs/smoke bash scripts/sim_recipe.sh
#
# Settings (environment): OUT (runs/recipe), EPISODES (1700 x 12 moves = 20,400 transitions), CAMERA
# (front_right), WORKERS (2), HELDOUT (24 episodes for diagnostic (a), seed 500), PRETRAIN_STEPS (10000; 0 keeps
# the random encoder), PRETRAIN_BATCH (16), ENCODER (random:tiny when PRETRAIN_STEPS=0),
# AC_STEPS (3000), GOALS (20), CEILING (1: run diagnostic (b), ~25 min per encoder on one core),
# EXPORT (OUT/world_model.safetensors; robot/assets/sim_demo_world_model.safetensors to ship it).
# On a GPU machine (VJEPA_FAST_CUDA=ON bash scripts/setup.sh first) pretraining and the AC training use the GPU
# (device=cuda), so steps 2-3 take minutes; generation and the closed loop stay on the CPU (MuJoCo, the robot).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/recipe}
EPISODES=${EPISODES:-1700}
CAMERA=${CAMERA:-front_right}
WORKERS=${WORKERS:-2}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-10000}
PRETRAIN_BATCH=${PRETRAIN_BATCH:-16}
AC_STEPS=${AC_STEPS:-3000}
GOALS=${GOALS:-20}
HELDOUT=${HELDOUT:-24}
CEILING=${CEILING:-1}
EXPORT=${EXPORT:-$OUT/world_model.safetensors}
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -x .venv/bin/python ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
mkdir -p "$OUT"
log() { echo "[sim_recipe $(date +%H:%M:%S)] $*"; }
t0=$SECONDS

log "1/4 generate: $EPISODES episodes x 12 moves, camera $CAMERA -> $OUT/episodes"
python robot/simtools/generate.py --out "$OUT/episodes" --episodes "$EPISODES" --steps 12 --seed 0 \
  --sim-camera "$CAMERA" --workers "$WORKERS"
t1=$SECONDS

if [ "$PRETRAIN_STEPS" -gt 0 ]; then
  log "2/4 pretrain: tiny encoder, $PRETRAIN_STEPS steps of $PRETRAIN_BATCH clips -> $OUT/pretrain"
  vjepa-fast pretrain --preset tiny_cpu "data.sources=[\"$OUT/episodes\"]" "steps=$PRETRAIN_STEPS" \
    "global_batch_size=$PRETRAIN_BATCH" optim.warmup_steps=200 save_every=250 "out_dir=$OUT/pretrain"
  ENCODER=${ENCODER:-$OUT/pretrain/encoder.safetensors}
else
  ENCODER=${ENCODER:-random:tiny}
fi
t2=$SECONDS

log "3/4 train-ac: encoder $ENCODER, $AC_STEPS steps -> $EXPORT"
vjepa-fast train-ac --preset sim_tiny "data.sources=[\"$OUT/episodes\"]" "data.encoder=\"$ENCODER\"" \
  "out_dir=\"$OUT/ac\"" "total_steps=$AC_STEPS" "warmup_steps=$((AC_STEPS / 10 > 0 ? AC_STEPS / 10 : 1))" \
  "decay_steps=$((AC_STEPS / 3 > 0 ? AC_STEPS / 3 : 1))" "ckpt_every=$((AC_STEPS < 250 ? AC_STEPS : 250))"
if [ ! -f "$EXPORT" ] || ! cmp -s "$OUT/ac/world_model.safetensors" "$EXPORT"; then
  cp "$OUT/ac/world_model.safetensors" "$EXPORT"
fi
t3=$SECONDS

log "4/4 evaluate: (a) energy quality, (b) ceiling, closed loop on $GOALS unseen goals"
python robot/simtools/generate.py --out "$OUT/heldout" --episodes "$HELDOUT" --steps 12 --seed 500 --sim-camera "$CAMERA" \
  --workers "$WORKERS"
vjepa-fast energy-quality --episodes "$OUT/heldout" --encoder "model=$EXPORT" --encoder "random=random:tiny" \
  --max-frames $((HELDOUT * 13)) --out "$OUT/energy_quality"
if [ "$CEILING" = 1 ]; then
  vjepa-fast energy-ceiling --goals "$GOALS" --encoder "model=$EXPORT" --workers "$WORKERS" --out "$OUT/ceiling"
fi
vjepa-fast sim-eval --goals "$GOALS" --method "ours=$EXPORT" --method random-model --method random-actions \
  --method oracle --out "$OUT/sim_eval"
t4=$SECONDS
log "done in $((t4 - t0)) s: generate $((t1 - t0)) s, pretrain $((t2 - t1)) s, train-ac $((t3 - t2)) s," \
  "evaluate $((t4 - t3)) s; results in $OUT (sim_eval/sim_eval.md, energy_quality/, ceiling/)"
