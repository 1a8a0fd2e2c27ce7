#!/usr/bin/env python3
"""Which camera's latent energy points the hand at the next sub-goal? (No predictor: what the encoder sees.)

On unseen grasp layouts, for two legs of the grasp:
  above  from the start pose (READY, 10-20 cm away) toward the "above" sub-goal (hand 10 cm over the cube);
  half   from halfway between READY and "above" toward "above" (what an intermediate sub-goal would leave);
  down   from 5 cm off "above" toward the "down" sub-goal (the open hand around the cube),
the hand is really moved 4 cm in each of 26 directions (the cube's faces, edges and corners) and each frame is
encoded; the direction whose frame is closest (L1) to the sub-goal image is the one a perfect predictor would
make CEM pick. Reported per camera and for the views summed (the first + WEIGHT x the others, as
`MultiViewModel.set_weights` weighs them): the mean cosine between that direction and the true one (1: always
straight at the goal; the best of 26 directions reaches 0.85-1.0).

    .venv/bin/python scripts/view_landscape.py --cameras table_right,wrist --layouts 8 \\
        --encoder robot/assets/sim_manip_world_model.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="robot/assets/sim_manip_world_model.safetensors",
                   help="a world_model.safetensors (its encoder is used)")
    p.add_argument("--cameras", default="table_right,wrist", help="comma-separated scene cameras (robot/sim.py)")
    p.add_argument("--layouts", type=int, default=8, help="grasp layouts (the evaluation stream)")
    p.add_argument("--seed", type=int, default=100, help="first layout's seed (sim-eval's --seed)")
    p.add_argument("--weights", default="0.1,0.25,0.5,1", help="weights of the other views in the sums")
    p.add_argument("--json", default="", help="also write the per-layout cosines here")
    a = p.parse_args(argv)
    cams = [c for c in a.cameras.split(",") if c]
    if a.layouts < 1 or not cams:
        p.error("need --layouts >= 1 and at least one camera")
    weights = [float(w) for w in a.weights.split(",") if w] if len(cams) > 1 else []
    import numpy as np
    import torch

    from robot.sim import check_camera
    from robot.simtools.physics import PhysicsArm
    from robot.simtools.sim_eval import load_world_model
    from robot.simtools.tasks import CUBE, GRASP_Z, LIFT_Z, READY, draw_task, goal_frames

    for c in cams:
        check_camera(c)
    wm = load_world_model(a.encoder)
    arm = PhysicsArm(cams[0], 256)
    dirs = np.array([d for d in itertools.product([-1, 0, 1], repeat=3) if any(d)], dtype=np.float64)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    cols = cams + [f"sum_w{w:g}" for w in weights]
    out: dict[str, dict[str, list[float]]] = {leg: {c: [] for c in cols} for leg in ("above", "half", "down")}
    with torch.inference_mode():
        for i in range(a.layouts):
            inst = draw_task("grasp", a.seed + i)
            _, oracle = goal_frames(inst, arm, tuple(cams))
            goals = {c: wm.encode_image_files(oracle["views"][c][:2]) for c in cams}
            arm.reset(inst.layout)
            cube = arm.object_xyz(CUBE)
            above = np.array([cube[0], cube[1], LIFT_Z])
            legs = (("above", 0, READY.copy(), above), ("half", 0, (READY + above) / 2, above),
                    ("down", 1, above + np.array([0.04, -0.03, 0.0]), np.array([cube[0], cube[1], GRASP_Z])))
            for leg, g, start, goal in legs:
                arm.reset(inst.layout)
                arm.teleport(start)
                snap = arm.snapshot()
                energy = {c: np.zeros(len(dirs)) for c in cams}
                for j, d in enumerate(dirs):
                    arm.restore(snap)
                    arm.teleport(start + 0.04 * d)
                    for c in cams:
                        z = wm.encode_image_files([arm.render(c)])
                        energy[c][j] = float((z - goals[c][g : g + 1]).abs().mean())
                true = (goal - start) / np.linalg.norm(goal - start)
                for c in cams:
                    out[leg][c].append(float(dirs[energy[c].argmin()] @ true))
                for w in weights:
                    total = energy[cams[0]] + w * sum(energy[c] for c in cams[1:])
                    out[leg][f"sum_w{w:g}"].append(float(dirs[total.argmin()] @ true))
            print(f"layout {a.seed + i}: " + "; ".join(
                f"{leg} " + " ".join(f"{c} {v[-1]:+.2f}" for c, v in r.items()) for leg, r in out.items()), flush=True)
    arm.close()
    print(f"\n{a.layouts} grasp layouts from seed {a.seed}, encoder {a.encoder}: mean cosine of the best 4 cm step "
          "with the true direction")
    print("| leg | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for leg, r in out.items():
        print(f"| {leg} | " + " | ".join(f"{np.mean(v):.2f}" for v in r.values()) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
