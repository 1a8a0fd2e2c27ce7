#!/usr/bin/env python3
"""Where does grasping fail: in what the encoder sees, or in what the AC predictor predicts? On unseen grasp
layouts, the scripted oracle brings the open hand around the cube (the "down" sub-goal); from there the hand
either closes (the "grasp" sub-goal's move) or stays open. Per layout it reports

- seen: the latent L1 distance to the "grasp" sub-goal image of the frame after really closing, and after
  really staying open (the encoder's view of the true outcomes; a camera and encoder that show the fingers
  give closing the lower distance);
- predicted: the AC predictor's energy to the same image for the action "close" and for "stay" (what CEM
  ranks; a predictor that knows the gripper gives "close" the lower energy);
- the same two at horizon 2 toward the "lifted" sub-goal: [close, up 5 cm] against [stay, up 5 cm];
- scale: the seen distance change of a 2 cm hand move from "down", for comparison.

    .venv/bin/python scripts/grasp_boundary.py --world-model robot/assets/sim_manip_world_model.safetensors \\
        --layouts 10 --seed 100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-model", default="robot/assets/sim_manip_world_model.safetensors",
                   help="world_model.safetensors (encoder + AC predictor)")
    p.add_argument("--layouts", type=int, default=10, help="grasp layouts (the evaluation stream)")
    p.add_argument("--seed", type=int, default=100, help="first layout's seed (sim-eval's --seed)")
    p.add_argument("--camera", default="table_right", help="scene camera (the model's training camera)")
    p.add_argument("--json", default="", help="also write the per-layout numbers here")
    a = p.parse_args(argv)
    if a.layouts < 1:
        p.error(f"--layouts must be >= 1, got {a.layouts}")
    import numpy as np
    import torch

    from robot.simtools.physics import PhysicsArm
    from robot.simtools.sim_eval import load_world_model
    from robot.simtools.tasks import CUBE, draw_task, go_ready, run_script, scripted_plan

    wm = load_world_model(a.world_model)
    arm = PhysicsArm(a.camera, 256)
    rows = []

    def enc(frames: list) -> torch.Tensor:
        return wm.encode_image_files(frames)

    def dist(z: torch.Tensor, g: torch.Tensor) -> float:
        return float((z - g).abs().mean())

    with torch.inference_mode():
        for i in range(a.layouts):
            inst = draw_task("grasp", a.seed + i)
            arm.reset(inst.layout)
            go_ready(arm)
            snaps = run_script(arm, scripted_plan("grasp", arm.object_xyz(CUBE), inst.target))
            goals = {}
            for phase in ("down", "grasp", "lifted"):
                arm.restore(snaps[phase])
                goals[phase] = arm.render()
            z_goal = dict(zip(goals, enc(list(goals.values())), strict=True))
            arm.restore(snaps["down"])
            state = torch.as_tensor(arm.state(), dtype=torch.float32)[None]
            z_obs = z_goal["down"][None]
            outcomes = {}
            for name, grip in (("close", 1.0), ("stay", None)):
                arm.restore(snaps["down"])
                arm.move_to(arm.commanded, grip)
                outcomes[name] = arm.render()
            arm.restore(snaps["down"])
            arm.move_to(arm.commanded + np.array([0.0, 0.0, 0.02]))
            outcomes["up2cm"] = arm.render()
            z_out = dict(zip(outcomes, enc(list(outcomes.values())), strict=True))
            g1, g2 = z_goal["grasp"][None], z_goal["lifted"][None]
            acts = torch.zeros(4, 2, 7)
            acts[0, 0, 6] = 1.0  # close
            acts[2, 0, 6] = 1.0  # close, then up
            acts[2:, 1, 2] = 0.05  # up 5 cm
            pred = wm.rollout(z_obs, state, acts[None], return_all=True)[0]  # [4, T, N, D]
            e1 = [float((pred[k, 0] - g1[0]).abs().mean()) for k in (0, 1)]
            e2 = [float((pred[k, -1] - g2[0]).abs().mean()) for k in (2, 3)]
            row = {"layout": a.seed + i, "seen_close": dist(z_out["close"], g1[0]),
                   "seen_stay": dist(z_out["stay"], g1[0]),
                   "pred_close": e1[0], "pred_stay": e1[1], "pred2_close_up": e2[0], "pred2_stay_up": e2[1],
                   "seen_down_vs_up2cm": dist(z_out["up2cm"], z_obs[0])}
            rows.append(row)
            print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    arm.close()

    def frac(key_a: str, key_b: str) -> str:
        n = sum(r[key_a] < r[key_b] for r in rows)
        gap = np.mean([r[key_b] - r[key_a] for r in rows])
        return f"{n}/{len(rows)} (mean gap {gap:+.5f})"

    print(f"\n{len(rows)} grasp layouts from seed {a.seed}, world model {a.world_model}:")
    print("  seen:      closing lands closer to the grasp image than staying open in "
          f"{frac('seen_close', 'seen_stay')}")
    print(f"  predicted: 'close' scores lower than 'stay' toward the grasp image in "
          f"{frac('pred_close', 'pred_stay')}")
    print(f"  horizon 2: [close, up] scores lower than [stay, up] toward the lifted image in "
          f"{frac('pred2_close_up', 'pred2_stay_up')}")
    move = np.mean([r["seen_down_vs_up2cm"] for r in rows])
    close = np.mean([r["seen_stay"] - r["seen_close"] for r in rows])
    print(f"  scale: a 2 cm move up from 'down' changes the latent by {move:.5f}; closing changes the distance to "
          f"the grasp image by {close:+.5f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
