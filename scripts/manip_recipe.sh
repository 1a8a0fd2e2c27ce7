#!/usr/bin/env bash
# The manipulation recipe from nothing, through the public commands (benchmarks/MANIP_RECIPE.md):
#   1. generate   robot/simtools/generate_physics.py: episodes with contact (physics in-process, gripper in state and action)
#   2. pretrain   vjepa-fast pretrain: a tiny V-JEPA 2 encoder on those episodes' video at 128 px (stage 1)
#   3. train-ac   vjepa-fast train-ac --preset manip_tiny: the AC predictor on the frozen encoder (stage 2), and the
#                 same on a random encoder (the baseline that says whether stage 1 earns its place)
#   4. train-bc   vjepa-fast train-bc: the goal-image-conditioned behaviour-cloning baseline on the same latents
#   5. evaluate   diagnostics (object-position probe and energy ranking on held-out episodes, both encoders) and
#                 vjepa-fast sim-eval --task grasp / push / pick_place on unseen layouts with every baseline
# Every step is resumable: stop anywhere (Ctrl-C) and run the script again with the same settings.
#
#   bash scripts/manip_recipe.sh                   # the shipped model's settings (~1.2 h on a 2-core CPU)
#   EPISODES=8 STEPS=8 HELDOUT=4 PRETRAIN_STEPS=4 AC_STEPS=4 BC_STEPS=4 GOALS=1 OUT=runs/manip_smoke \
#     bash scripts/manip_recipe.sh                 # a smoke run: minutes
#
# Settings (environment; the defaults made the shipped model): OUT (runs/manip), EPISODES (1000) x STEPS (20 actions:
# 20,000 transitions), WORKERS (2), HELDOUT (50 episodes, seed 500, for the diagnostics), PRETRAIN_STEPS (3000),
# PRETRAIN_BATCH (16), AC_STEPS (1500), AC_MORE_STEPS (3000: the predictor trained that many steps more, restarted
# from the first AC_STEPS with a new warmup and decay, as the shipped model was made; 0 = off), BC_STEPS (1000),
# GOALS (20 layouts per task), TASKS (grasp push pick_place),
# EXPORT (OUT/world_model.safetensors; robot/assets/sim_manip_world_model.safetensors to ship it),
# WRIST (1; 0 = off): also record the same episodes from the hand's wrist camera, train an AC predictor on them
# (WRIST_AC_STEPS, 3000; on the pretrained and on the random encoder) and evaluate the two-view models
# (table_right + wrist, sim-eval --method NAME=FILE1+FILE2: try 6 of the results), EXPORT_WRIST
# (OUT/world_model_wrist.safetensors; robot/assets/sim_manip_wrist_world_model.safetensors to ship it),
# V21_STEPS (0 = off): also pretrain a tiny V-JEPA 2.1 encoder (objective vjepa2_1, preset v21_tiny_cpu) that many
# steps on the same video, train the AC predictor on it, and evaluate it as method ours-v2.1 beside the others.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) stops the recipe too
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/manip}
EPISODES=${EPISODES:-1000}
STEPS=${STEPS:-20}
WORKERS=${WORKERS:-2}
HELDOUT=${HELDOUT:-50}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-3000}
PRETRAIN_BATCH=${PRETRAIN_BATCH:-16}
AC_STEPS=${AC_STEPS:-1500}
AC_MORE_STEPS=${AC_MORE_STEPS:-3000}
BC_STEPS=${BC_STEPS:-1000}
GOALS=${GOALS:-20}
V21_STEPS=${V21_STEPS:-0}
WRIST=${WRIST:-1}
WRIST_AC_STEPS=${WRIST_AC_STEPS:-3000}
EXPORT_WRIST=${EXPORT_WRIST:-$OUT/world_model_wrist.safetensors}
TASKS=${TASKS:-grasp push pick_place}
EXPORT=${EXPORT:-$OUT/world_model.safetensors}
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -x .venv/bin/python ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
mkdir -p "$OUT"
log() { echo "[manip_recipe $(date +%H:%M:%S)] $*"; }
t0=$SECONDS

log "1/5 generate: $EPISODES episodes x $STEPS actions -> $OUT/episodes (held-out: $HELDOUT, seed 500)"
python robot/simtools/generate_physics.py --out "$OUT/episodes" --episodes "$EPISODES" --steps "$STEPS" --seed 0 \
  --workers "$WORKERS"
python robot/simtools/generate_physics.py --out "$OUT/heldout" --episodes "$HELDOUT" --steps "$STEPS" --seed 500 \
  --workers "$WORKERS"
t1=$SECONDS

log "2/5 pretrain: tiny encoder at 128 px, $PRETRAIN_STEPS steps of $PRETRAIN_BATCH clips -> $OUT/pretrain"
vjepa-fast pretrain --preset tiny_cpu "data.sources=[\"$OUT/episodes\"]" data.crop_size=128 cooldown.crop_size=128 \
  "steps=$PRETRAIN_STEPS" "global_batch_size=$PRETRAIN_BATCH" optim.warmup_steps=200 save_every=250 \
  "out_dir=$OUT/pretrain"
t2=$SECONDS

ac_run() {  # ac_run ENCODER OUT_DIR STEPS [INIT]; the episodes: AC_DATA (default OUT/episodes)
  local init=()
  [ -n "${4:-}" ] && init=("init=\"$4\"" "cache=\"$(dirname "$4")/latent_cache\"")
  vjepa-fast train-ac --preset manip_tiny "data.sources=[\"${AC_DATA:-$OUT/episodes}\"]" "data.encoder=\"$1\"" \
    "out_dir=\"$2\"" "total_steps=$3" "warmup_steps=$(($3 / 10 > 0 ? $3 / 10 : 1))" \
    "decay_steps=$(($3 / 4 > 0 ? $3 / 4 : 1))" "ckpt_every=$(($3 < 250 ? $3 : 250))" "${init[@]}"
}
ac() {  # ac ENCODER OUT_DIR: AC_STEPS steps, then AC_MORE_STEPS more (OUT_DIR_more); echoes the final model
  ac_run "$1" "$2" "$AC_STEPS" >&2
  if [ "$AC_MORE_STEPS" -gt 0 ]; then
    ac_run "$1" "$2_more" "$AC_MORE_STEPS" "$2/world_model.safetensors" >&2
    echo "$2_more/world_model.safetensors"
  else
    echo "$2/world_model.safetensors"
  fi
}
log "3/5 train-ac: $AC_STEPS (+ $AC_MORE_STEPS) steps on the pretrained encoder -> $EXPORT, and on a random one"
ours_model=$(ac "$OUT/pretrain/encoder.safetensors" "$OUT/ac")
if [ ! -f "$EXPORT" ] || ! cmp -s "$ours_model" "$EXPORT"; then
  cp "$ours_model" "$EXPORT"
fi
random_model=$(ac "random:tiny@128" "$OUT/ac_random")
v21_method=()
if [ "$V21_STEPS" -gt 0 ]; then
  log "3b/5 V-JEPA 2.1: tiny 2.1 encoder, $V21_STEPS steps -> $OUT/pretrain_v21; its AC predictor -> $OUT/ac_v21"
  vjepa-fast pretrain --preset v21_tiny_cpu "data.sources=[\"$OUT/episodes\"]" data.crop_size=128 \
    cooldown.crop_size=128 "steps=$V21_STEPS" "global_batch_size=$PRETRAIN_BATCH" optim.warmup_steps=200 \
    save_every=250 "out_dir=$OUT/pretrain_v21"
  v21_model=$(ac "$OUT/pretrain_v21/encoder.safetensors" "$OUT/ac_v21")
  v21_method=(--method "ours-v2.1=$v21_model")
fi
wrist_method=()
if [ "$WRIST" = 1 ]; then
  log "3c/5 wrist camera: the same episodes seen from the hand -> $OUT/episodes_wrist; AC predictors," \
    "$WRIST_AC_STEPS steps, on the pretrained encoder -> $EXPORT_WRIST and on the random one"
  python robot/simtools/generate_physics.py --out "$OUT/episodes_wrist" --episodes "$EPISODES" --steps "$STEPS" \
    --seed 0 --camera wrist --workers "$WORKERS"
  AC_DATA="$OUT/episodes_wrist" ac_run "$OUT/pretrain/encoder.safetensors" "$OUT/ac_wrist" "$WRIST_AC_STEPS"
  if [ ! -f "$EXPORT_WRIST" ] || ! cmp -s "$OUT/ac_wrist/world_model.safetensors" "$EXPORT_WRIST"; then
    cp "$OUT/ac_wrist/world_model.safetensors" "$EXPORT_WRIST"
  fi
  AC_DATA="$OUT/episodes_wrist" ac_run "random:tiny@128" "$OUT/ac_wrist_random" "$WRIST_AC_STEPS"
  wrist_method=(--method "ours-2view=$EXPORT+$EXPORT_WRIST"
                --method "ours-2view-random-encoder=$random_model+$OUT/ac_wrist_random/world_model.safetensors")
fi
t3=$SECONDS

log "4/5 train-bc: $BC_STEPS steps on the pretrained encoder's latents -> $OUT/bc"
if [ ! -f "$OUT/bc/policy.safetensors" ]; then
  vjepa-fast train-bc --cache "$OUT/ac/latent_cache" --encoder "$EXPORT" --out "$OUT/bc" --steps "$BC_STEPS"
fi
t4=$SECONDS

log "5/5 evaluate: diagnostics on $HELDOUT held-out episodes; closed loop on $GOALS unseen layouts per task"
for target in red_cube ee; do
  vjepa-fast energy-quality --episodes "$OUT/heldout" --encoder "pretrained=$EXPORT" \
    --encoder "random=random:tiny@128" --target "$target" --max-frames 600 --out "$OUT/diagnostics_$target"
done
for task in $TASKS; do
  vjepa-fast sim-eval --task "$task" --goals "$GOALS" --out "$OUT/sim_eval_$task" --method "ours=$EXPORT" \
    --method "ours-random-encoder=$random_model" --method "bc=bc:$OUT/bc/policy.safetensors" \
    --method random-actions --method oracle "${v21_method[@]}" "${wrist_method[@]}"
done
t5=$SECONDS
log "done in $((t5 - t0)) s: generate $((t1 - t0)) s, pretrain $((t2 - t1)) s, train-ac $((t3 - t2)) s," \
  "train-bc $((t4 - t3)) s, evaluate $((t5 - t4)) s; results in $OUT (sim_eval_*/sim_eval.md, diagnostics_*/)"
