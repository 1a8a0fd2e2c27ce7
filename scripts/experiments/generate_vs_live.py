#!/usr/bin/env python3
"""How close robot/simtools/generate.py's kinematic arm is to the live controller: the same moves through franky-sim (a
SimServer) and a 1 kHz Cartesian-impedance pose loop like robot/control.py's (same ruckig trajectory and
limits), then the joint configurations compared at rest.

    MUJOCO_GL=egl .venv/bin/python scripts/experiments/generate_vs_live.py --moves 24 --hold-ms 150

The loop runs here (not in robot/control.py's process) because it reads q_d, the IK's joint target, which the
control process does not publish. Columns per move: gen-q_d = max |q_generator - q_d| (rad) for --path step
and ruckig; q-q_d = how far the live measured q still is from its target after the hold (what the camera
shows); O_T_EE-FK(q_d) = franky-sim's reported pose against the kinematics of q_d (float32 protocol);
FK(q)-O_T_EE = the reported pose against the measured q's; gen-O_T_EE = the generator's position against the
reported one (m).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--moves", type=int, default=24)
    p.add_argument("--hold-ms", type=int, default=150, help="cycles at the target before reading (collect.py: 150+)")
    a = p.parse_args(argv)
    import pylibfranka as pf

    from robot.collect import collection_box, collection_safety
    from robot.simtools.generate import KinematicArm
    from robot.safety import safe_target
    from robot.sim import SimServer

    safety = collection_safety(0.05)
    server = SimServer(tempfile.mkdtemp(prefix="generate_vs_live_")).start()
    try:
        robot = pf.Robot(server.hostname, pf.RealtimeConfig.kIgnore)
        robot.set_collision_behavior([20.0] * 7, [40.0] * 7, [20.0] * 6, [40.0] * 6)
        first = robot.read_once()
        pose0 = np.array(first.O_T_EE).reshape(4, 4, order="F")
        q_d0 = np.array(first.q_d)
        arms = {"step": KinematicArm(q_d0), "ruckig": KinematicArm(q_d0, path="ruckig")}
        planner = KinematicArm(q_d0, path="ruckig")  # the control loop's trajectory
        home = pose0[:3, 3].copy()
        lo, hi = collection_box(home, (0.12, 0.15, 0.12), 0.15, safety)
        rng = np.random.default_rng(a.seed)
        here, probe, targets = home.copy(), KinematicArm(q_d0), []
        while len(targets) < a.moves:  # reachable moves only, as the generator draws them
            delta = np.clip(here + rng.uniform(-0.05, 0.05, 3), lo, hi) - here
            target, _ = safe_target(here, np.r_[delta, 0.0, 0.0, 0.0, 0.0], safety)
            if probe.move_to(target):
                targets.append(target)
                here = target
        ctrl = robot.start_cartesian_pose_control(pf.ControllerMode.CartesianImpedance)
        values = pose0.flatten(order="F").tolist()  # orientation held, as robot/control.py
        worst: dict[str, float] = {}
        try:
            for k, target in enumerate(targets):
                path = planner.trajectory(target)
                planner.commanded = target.copy()
                for xyz in list(path) + [target] * a.hold_ms:
                    ctrl.readOnce()
                    values[12:15] = list(xyz)
                    ctrl.writeOnce(pf.CartesianPose(values))
                state, _ = ctrl.readOnce()
                ctrl.writeOnce(pf.CartesianPose(values))
                q, q_d = np.array(state.q), np.array(state.q_d)
                reported = np.array(state.O_T_EE).reshape(4, 4, order="F")
                row = {}
                for name, arm in arms.items():
                    arm.move_to(target)
                    row[f"gen({name})-q_d"] = float(np.abs(arm.q - q_d).max())
                row["q-q_d"] = float(np.abs(q - q_d).max())
                row["O_T_EE-FK(q_d)"] = float(np.abs(arms["step"].pose(q_d) - reported).max())
                row["FK(q)-O_T_EE"] = float(np.linalg.norm(arms["step"].pose(q)[:3, 3] - reported[:3, 3]))
                row["gen-O_T_EE"] = float(np.linalg.norm(arms["step"].pose()[:3, 3] - reported[:3, 3]))
                worst = {key: max(worst.get(key, 0.0), v) for key, v in row.items()}
                print(f"{k:3d} " + " ".join(f"{key} {v:.1e}" for key, v in row.items()), flush=True)
        finally:
            ctrl.readOnce()
            done = pf.CartesianPose(values)
            done.motion_finished = True
            ctrl.writeOnce(done)
        print("max " + " ".join(f"{key} {v:.1e}" for key, v in worst.items()))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
