#!/usr/bin/env python3
"""Where does grasping fail: in what the encoder sees, or in what the AC predictor predicts? On unseen grasp
layouts, the scripted oracle brings the open hand around the cube (the "down" sub-goal); from there the hand
either closes (the "grasp" sub-goal's move) or stays open. Per layout it reports

- seen: the latent L1 distance to the "grasp" sub-goal image of the frame after really closing, and after
  really staying open (the encoder's view of the true outcomes; a camera and encoder that show the fingers
  give closing the lower distance);
- predicted: the AC predictor's energy to the same image for the action "close" and for "stay" (what CEM
  ranks; a predictor that knows the gripper gives "close" the lower energy);
- the same two at horizon 2 toward the "lifted" sub-goal: [close, up 5 cm] against [stay, up 5 cm], both seen
  (done for real) and predicted;
  "close" is the gripper action the data record for a grasp (the state's change: the fingers stop at the cube,
  ~+0.4), and separately +1 (what the data record for closing on nothing);
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
    p.add_argument("--encoder", default="",
                   help="only the seen numbers, with this encoder instead of the world model's: FILE.safetensors or "
                        "random:PRESET[@IMG] (screens cameras and resolutions without training a predictor)")
    p.add_argument("--json", default="", help="also write the per-layout numbers here")
    a = p.parse_args(argv)
    if a.layouts < 1:
        p.error(f"--layouts must be >= 1, got {a.layouts}")
    import numpy as np
    import torch

    from robot.simtools.physics import PhysicsArm
    from robot.simtools.sim_eval import load_world_model
    from robot.simtools.tasks import CUBE, draw_task, go_ready, run_script, scripted_plan

    arm = PhysicsArm(a.camera, 256)
    rows = []
    if a.encoder:
        import torch.nn.functional as F

        from vjepa_fast.data.transforms import preprocess_image
        from vjepa_fast.diagnostics import encoder_from_spec

        wm, encoder = None, encoder_from_spec(f"encoder={a.encoder}")[1].eval()
        img = encoder.config.img_size
        size = img if isinstance(img, int) else int(img[0])

        def enc(frames: list) -> torch.Tensor:  # WorldModel.encode's way: the frame as a 2-frame clip, layer-normed
            z = encoder(torch.stack([preprocess_image(f, size) for f in frames]))
            return F.layer_norm(z.float(), (z.shape[-1],), eps=1e-6)
    else:
        wm = load_world_model(a.world_model)

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
            held = 0.0
            outcomes = {}
            for name, grip in (("close", 1.0), ("stay", None)):
                arm.restore(snaps["down"])
                arm.move_to(arm.commanded, grip)
                outcomes[name] = arm.render()
                if name == "close":  # the recorded action of a grasp: the state's change (the fingers stop at the cube)
                    held = float(arm.state()[6] - state[0, 6])
            for name, grip in (("close_up", 1.0), ("stay_up", None)):  # the horizon-2 outcomes, for real
                arm.restore(snaps["down"])
                arm.move_to(arm.commanded, grip)
                arm.move_to(arm.commanded + np.array([0.0, 0.0, 0.05]))
                outcomes[name] = arm.render()
            arm.restore(snaps["down"])
            arm.move_to(arm.commanded + np.array([0.0, 0.0, 0.02]))
            outcomes["up2cm"] = arm.render()
            z_out = dict(zip(outcomes, enc(list(outcomes.values())), strict=True))
            g1, g2 = z_goal["grasp"][None], z_goal["lifted"][None]
            row = {"layout": a.seed + i, "grasp_delta": held, "seen_close": dist(z_out["close"], g1[0]),
                   "seen_stay": dist(z_out["stay"], g1[0]), "seen_down_vs_up2cm": dist(z_out["up2cm"], z_obs[0]),
                   "seen2_close_up": dist(z_out["close_up"], g2[0]), "seen2_stay_up": dist(z_out["stay_up"], g2[0])}
            if wm is not None:
                acts = torch.zeros(6, 2, 7)
                acts[[0, 2], 0, 6] = held  # close as the data record a grasp
                acts[[4, 5], 0, 6] = 1.0  # close as the data record closing on nothing
                acts[[2, 3, 5], 1, 2] = 0.05  # then up 5 cm
                pred = wm.rollout(z_obs, state, acts[None], return_all=True)[0]  # [6, T, N, D]

                def e(k: int, g: torch.Tensor, t: int) -> float:
                    return float((pred[k, t] - g[0]).abs().mean())

                row.update(pred_close=e(0, g1, 0), pred_stay=e(1, g1, 0), pred_close_full=e(4, g1, 0),
                           pred2_close_up=e(2, g2, 1), pred2_stay_up=e(3, g2, 1), pred2_close_full_up=e(5, g2, 1))
            rows.append(row)
            print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    arm.close()

    def frac(key_a: str, key_b: str) -> str:
        n = sum(r[key_a] < r[key_b] for r in rows)
        gap = np.mean([r[key_b] - r[key_a] for r in rows])
        return f"{n}/{len(rows)} (mean gap {gap:+.5f})"

    move = np.mean([r["seen_down_vs_up2cm"] for r in rows])
    close = np.mean([r["seen_stay"] - r["seen_close"] for r in rows])
    lift = np.mean([r["seen2_stay_up"] - r["seen2_close_up"] for r in rows])
    print(f"\n{len(rows)} grasp layouts from seed {a.seed}, camera {a.camera}, "
          f"{a.encoder or a.world_model}:")
    print("  seen:      closing lands closer to the grasp image than staying open in "
          f"{frac('seen_close', 'seen_stay')}; [close, up] closer to the lifted image than [stay, up] in "
          f"{frac('seen2_close_up', 'seen2_stay_up')}")
    print(f"  salience:  a 2 cm move up from 'down' changes the latent by {move:.5f}; closing changes the distance to "
          f"the grasp image by {close:+.5f} ({close / move:.1%} of it), closing before the lift the distance to "
          f"the lifted image by {lift:+.5f} ({lift / move:.1%})")
    if wm is not None:
        print(f"  predicted: 'close' scores lower than 'stay' toward the grasp image in "
              f"{frac('pred_close', 'pred_stay')}")
        print(f"  horizon 2: [close, up] scores lower than [stay, up] toward the lifted image in "
              f"{frac('pred2_close_up', 'pred2_stay_up')}")
        print(f"  (close = the recorded grasp's state change, mean {np.mean([r['grasp_delta'] for r in rows]):+.3f}; "
              "with +1, the change of closing on nothing: "
              f"{frac('pred_close_full', 'pred_stay')} at horizon 1, {frac('pred2_close_full_up', 'pred2_stay_up')} "
              "at 2)")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
