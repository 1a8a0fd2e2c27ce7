"""`robot/run_mpc.py --sim --task NAME`: a manipulation task through the real protocol. `prepare_task` places the
layout and renders its sub-goal images with the scripted oracle; `start_task` brings the arm to the task's start
and returns the early-stop check (the live simulator's state judged by robot/simtools/tasks.py)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_LOG = logging.getLogger("run_mpc")


def prepare_task(args: argparse.Namespace, log_dir: Path) -> dict:
    """The task instance, its sub-goal frames (the scripted oracle in the in-process physics, saved as
    goal_K.png), the manipulation workspace (unless --workspace-* were given) and the episode settings."""
    from robot.camera import save_png
    from robot.simtools.physics import PhysicsArm, manipulation_safety
    from robot.simtools.task_eval import TaskEvalConfig
    from robot.simtools.tasks import draw_task, goal_frames

    inst = draw_task(args.task, 0 if args.task_seed is None else args.task_seed)
    with PhysicsArm(args.sim_camera, 256) as arm:
        given = {k: getattr(args, k, None) for k in ("approach_legs", "stroke_legs", "lower_legs")}
        cfg = TaskEvalConfig(task=args.task, **{k: v for k, v in given.items() if v is not None})
        goals, oracle = goal_frames(inst, arm, (), cfg.approach_legs, cfg.strokes, cfg.lower_legs)
    for k, frame in enumerate(goals):
        save_png(frame, log_dir / f"goal_{k}.png")
    ws = manipulation_safety()
    if tuple(args.workspace_min) == (0.25, -0.45, 0.08):
        args.workspace_min = ws.workspace_min
    if tuple(args.workspace_max) == (0.80, 0.45, 0.75):
        args.workspace_max = ws.workspace_max
    _LOG.info("task %s, layout seed %d: %d sub-goal images (%s) in %s (the scripted oracle %s this layout)",
              args.task, inst.seed, len(goals), ", ".join(cfg.phases), log_dir,
              "solves" if oracle["success"] else "FAILS")
    return {"instance": inst, "goals": goals, "budgets": cfg.budgets, "max_steps": cfg.steps,
            "grip_threshold": cfg.grip}


def start_task(rig: Any, safety: Any, task: dict, settle: float) -> Callable[[], bool]:
    """Opens the hand, moves the arm to the task's start (READY) through the control loop, and returns the
    early-stop check: the live simulator's state (qpos) judged by robot/simtools/tasks.py `success`."""
    from robot import shm
    from robot.simtools.physics import PhysicsArm
    from robot.safety import safe_target
    from robot.simtools.tasks import READY, success

    if rig.gripper is not None:
        rig.gripper.wait_done(rig.gripper.command(safety.gripper_width_open), settle)
    here = rig.commanded_xyz()
    for _ in range(50):
        if np.linalg.norm(READY - here) < 1e-6:
            break
        here, _ = safe_target(here, np.r_[READY - here, 0.0, 0.0, 0.0, 0.0], safety)
        rig.control.send_target(here, 0.0)
        if not rig.control.wait_settled(settle):
            raise RuntimeError("the arm did not reach the task's start pose")
    judge = PhysicsArm(render=False)
    block = shm.SeqlockArray(rig.sim.qpos_name, (rig.sim.NQ_MAX,), np.float64, create=False)
    buf = np.zeros(rig.sim.NQ_MAX)
    inst = task["instance"]

    def state_now() -> tuple[bool, dict]:
        block.read_into(buf)
        judge.data.qpos[:] = buf[: judge.model.nq]
        judge._mj.mj_forward(judge.model, judge.data)
        return success(inst, judge)

    task["judge"] = state_now
    return lambda: state_now()[0]
