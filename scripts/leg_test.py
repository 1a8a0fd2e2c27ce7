#!/usr/bin/env python3
"""One leg of a manipulation task in isolation: the arm put at the scripted oracle's own pose at the start of the
leg, then sim-eval's planner (the same CEM, gripper rule and sub-goal switching) toward the rest of the task's
sub-goal images. Success is the task's own. What a sub-goal split is worth, without the earlier legs' noise.

  pick_place  from "over_target" (the cube held 10 cm over the target): the descent ("lower_k" ... "lowered"),
              then "placed"; reports the hand's closest distance to the oracle's "lowered" pose too.
  push        from "prepush" (the closed hand behind the cube): the push ("push_k" ... "pushed").

    .venv/bin/python scripts/leg_test.py --task pick_place --legs 2 --seeds 100:120
    .venv/bin/python scripts/leg_test.py --task push --legs 1 --seeds 100:120

Layout i is sim-eval's (`draw_task(task, i)`). A line per layout, then a summary; --out appends JSON lines.
benchmarks/MANIP_RECIPE.md try 8 reports its numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHIPPED = ("robot/assets/sim_manip_world_model.safetensors+"
           "robot/assets/sim_manip_wrist_world_model.safetensors")
LEGS = {"pick_place": ("over_target", "lowered"), "push": ("prepush", "pushed")}  # (start pose, end of the split leg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(LEGS), default="pick_place")
    p.add_argument("--legs", type=int, default=2, help="legs of the split leg (lower_legs / stroke_legs)")
    p.add_argument("--seeds", default="100:120", help="layouts FIRST:END (sim-eval's seeds)")
    p.add_argument("--model", default=SHIPPED, help="world model(s), FILE or FILE1+FILE2 (default: the shipped pair)")
    p.add_argument("--leg-budget", type=int, default=0,
                   help="step budget of each sub-goal of the split leg (default: sim-eval's, 3; try 7's one-leg "
                        "descent had 5)")
    p.add_argument("--view-weights", default="", help="per-view energy weights on the split leg, e.g. 0,1")
    p.add_argument("--samples", type=int, default=192, help="CEM samples (sim-eval's 192 x 4, top 16)")
    p.add_argument("--max-step", type=float, default=0.05, help="largest translation per action, m")
    p.add_argument("--out", default="", help="append a JSON line per layout here")
    a = p.parse_args(argv)
    if a.legs < 1 or a.leg_budget < 0:
        p.error(f"--legs must be >= 1 and --leg-budget >= 0, got {a.legs} and {a.leg_budget}")
    try:
        first, end = (int(x) for x in a.seeds.split(":"))
    except ValueError:
        p.error(f"--seeds must be FIRST:END, got {a.seeds!r}")
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    import torch

    from robot.simtools.physics import PhysicsArm
    from robot.simtools.task_eval import (ModelPolicy, TaskEvalConfig, encode, execute, load_model,
                                          render_views)
    from robot.simtools.tasks import (CUBE, _split_stroke, draw_task, go_ready, run_script, scripted_plan,
                                      subgoal_phases, success)
    from vjepa_fast.planning import SubgoalSchedule

    wm = load_model(a.model)
    cams = tuple(getattr(wm, "cameras", None) or ())
    legs = {"lower_legs": 1, "stroke_legs": 1, ("lower_legs" if a.task == "pick_place" else "stroke_legs"): a.legs}
    cfg = TaskEvalConfig(task=a.task, samples=a.samples, max_step=a.max_step, approach_legs=1, **legs)
    start, leg_end = LEGS[a.task]
    phases = cfg.phases
    todo = phases[phases.index(start) + 1:]
    budgets = [a.leg_budget if a.leg_budget and k <= todo.index(leg_end) else cfg.budgets[phases.index(ph)]
               for k, ph in enumerate(todo)]
    weights = None
    if a.view_weights:
        w = [float(x) for x in a.view_weights.split(",")]
        weights = [w if k <= todo.index(leg_end) else [1.0] * len(w) for k in range(len(todo))]
    arm = PhysicsArm(cfg.camera, 256)
    n_ok = 0
    try:
        for seed in range(first, end):
            t0 = time.perf_counter()
            inst = draw_task(a.task, seed)
            arm.reset(inst.layout)
            go_ready(arm)
            plan = _split_stroke(a.task, scripted_plan(a.task, arm.object_xyz(CUBE), inst.target), cfg.strokes,
                                 cfg.lower_legs)
            snaps = run_script(arm, plan)
            goals = []
            for ph in todo:  # the oracle's own states, rendered as sim-eval renders its sub-goal images
                arm.restore(snaps[ph])
                goals.append(render_views(arm, wm))
            with torch.inference_mode():
                z_goals = torch.cat([encode(wm, g) for g in goals])
            arm.restore(snaps[leg_end])
            want = np.asarray(arm.state()[:3])
            arm.restore(snaps[start])
            policy, schedule = ModelPolicy(wm, cfg, seed=seed), SubgoalSchedule(budgets)
            closest, on = float("inf"), []
            for _ in range(sum(budgets)):
                with torch.inference_mode():
                    z = encode(wm, render_views(arm, wm))
                    k0 = schedule.index
                    if weights:
                        wm.set_weights(weights[k0])
                    diff = (z - z_goals[k0:k0 + 1]).abs()
                    d = float((wm.weigh(diff) if weights else diff).mean())
                    k = schedule.update(d)
                    goal = z_goals[k:k + 1]
                    if weights:
                        wm.set_weights(weights[k])
                        goal = wm.weigh(goal)
                execute(arm, policy.act(z, arm.state(), goal), cfg.grip, cfg.release)
                on.append(k)
                if k <= todo.index(leg_end):
                    closest = min(closest, float(np.linalg.norm(np.asarray(arm.state()[:3]) - want)))
                if success(inst, arm)[0]:
                    break
            ok, info = success(inst, arm)
            n_ok += ok
            row = {"task": a.task, "seed": seed, "legs": a.legs, "success": bool(ok), "steps": len(on),
                   "leg_end_hand_error_m": round(closest, 4), "subgoal_at_step": on,
                   **{k: round(v, 4) for k, v in info.items()}, "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    finally:
        arm.close()
    print(f"leg test {a.task}, {a.legs} leg(s) from {start!r}: {n_ok}/{end - first} succeeded "
          f"(layouts {first}..{end - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
