"""Manipulation tasks on the simulator: grasp, push, pick-and-place of the red cube, each drawn from a seed.

    inst = draw_task("pick_place", seed=7)             # layout (object start) + target
    plan = scripted_plan(inst.task, cube_xyz, target)  # waypoints [(xyz [3], grip)] of the scripted oracle
    goals = goal_frames(inst, arm)                     # sub-goal images rendered from the target states
    ok, info = success(inst, arm)                      # judged on the simulator's true state

Success (judged at the end of an episode on the physics state):
  grasp       the cube's centre >= 5 cm above its start height and held (both fingers touching it);
  push        the cube's centre within 2 cm (xy) of the target;
  pick_place  the cube resting on the table (centre within 5 mm of its resting height) within 3 cm (xy) of the
              target, released (fingers not holding it).
Sub-goal images (rendered by running the scripted oracle on a private copy of the scene, from the same layout):
  grasp       [above: hand open 10 cm above the cube, pre-grasp: hand open around the cube on the table, grasp
              pose: closed on it, lifted: held 10 cm up];
  push        [above: closed hand 10 cm above the pre-push point, pre-push: lowered behind the cube, pushed: cube
              on the target];
  pick_place  [above, pre-grasp, grasp pose, lifted: held 10 cm up, over the target: held above it, lowered: the
              cube held on the table at the target, placed: the hand opened around it].
(Open-hand pre-grasp images come first so that a one-step planner does not close the hand on its way down.)
Layouts: the red cube's start in the task region, the other two objects placed around it (never closer than
9 cm); push targets 6-12 cm from the start, pick-and-place targets 10-20 cm away, all inside the region.
Evaluation layouts come from their own random stream, keyed (seed, task, EVAL_STREAM); training episodes
(robot/simtools/generate_physics.py) draw from (seed, index) keys without it, so whatever the seed, no evaluated layout is
a training one: `sim-eval --task T --seed S` accepts any S >= 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot.simtools.physics import OBJECT_HALF, TABLE_TOP, Layout, PhysicsArm

TASKS = ("grasp", "push", "pick_place")
EVAL_STREAM = 0xE7A1  # third word of every evaluation layout's key: a stream training never draws from
CUBE = "red_cube"
REGION = ((0.44, 0.64), (-0.16, 0.16))  # where the cube starts and targets lie (x, y), m
READY = np.array([0.50, 0.0, 0.25])  # where episodes and tasks start: the hand 20 cm above the table
GRASP_Z = TABLE_TOP + OBJECT_HALF[CUBE][2] + 0.005  # TCP height that grasps the cube (fingertips near its base)
LIFT_Z = 0.15
PUSH_Z = TABLE_TOP + 0.025  # TCP height while pushing: the closed fingers against the cube's lower half
REST_Z = TABLE_TOP + OBJECT_HALF[CUBE][2]


@dataclass(frozen=True)
class TaskInstance:
    task: str
    seed: int
    layout: Layout
    target: tuple[float, float] | None  # the cube's target centre (x, y), m (push and pick_place)

    @property
    def cube_start(self) -> np.ndarray:
        x, y, _ = self.layout.objects[CUBE]
        return np.array([x, y, REST_Z])


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    return task


def draw_task(task: str, seed: int) -> TaskInstance:
    """The task instance of `seed` (deterministic): layout and target."""
    check_task(task)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, TASKS.index(task), EVAL_STREAM])
    (xl, xh), (yl, yh) = REGION
    for _ in range(1000):
        cube = rng.uniform([xl, yl], [xh, yh])
        target = None
        if task != "grasp":
            dist = rng.uniform(0.06, 0.12) if task == "push" else rng.uniform(0.10, 0.20)
            ang = rng.uniform(-math.pi, math.pi)
            t = cube + dist * np.array([math.cos(ang), math.sin(ang)])
            if not (xl <= t[0] <= xh and yl <= t[1] <= yh):
                continue
            target = (float(t[0]), float(t[1]))
        layout = Layout.draw(rng, fixed={CUBE: (float(cube[0]), float(cube[1]))})
        if target is not None and any(math.hypot(target[0] - x, target[1] - y) < 0.08
                                      for name, (x, y, _) in layout.objects.items() if name != CUBE):
            continue  # another object sits on the target
        return TaskInstance(task, int(seed), layout, target)
    raise RuntimeError(f"no {task} layout for seed {seed}")


def scripted_plan(task: str, cube: np.ndarray, target: tuple[float, float] | None,
                  rng: np.random.Generator | None = None, noise: float = 0.0) -> list[tuple[np.ndarray, float, str]]:
    """Waypoints [(xyz [3], grip 0 open / 1 closed, phase)] of the scripted oracle for the cube at `cube` [3].

    noise > 0 (m) perturbs the grasp and push points (training data: imperfect demonstrations)."""
    rng = rng or np.random.default_rng(0)

    def jitter(scale: float = 1.0) -> np.ndarray:
        return rng.normal(0.0, noise * scale, 3) if noise > 0 else np.zeros(3)

    cx, cy = float(cube[0]), float(cube[1])
    if task in ("grasp", "pick_place"):
        g = np.array([cx, cy, GRASP_Z]) + jitter() * np.array([1.0, 1.0, 0.5])
        plan = [(np.array([g[0], g[1], LIFT_Z]), 0.0, "above"), (g, 0.0, "down"), (g, 1.0, "grasp"),
                (np.array([g[0], g[1], LIFT_Z]), 1.0, "lifted")]
        if task == "pick_place":
            tx, ty = target
            p = np.array([tx, ty, GRASP_Z + 0.005]) + jitter() * np.array([1.0, 1.0, 0.3])
            plan += [(np.array([p[0], p[1], LIFT_Z]), 1.0, "over_target"), (p, 1.0, "lowered"), (p, 0.0, "placed"),
                     (np.array([p[0], p[1], p[2] + 0.06]), 0.0, "retreat")]
        return plan
    if task == "push":
        tx, ty = target
        d = np.array([tx - cx, ty - cy])
        d /= max(np.linalg.norm(d), 1e-9)
        behind = np.array([cx, cy]) - d * (OBJECT_HALF[CUBE][0] + 0.035)
        end = np.array([tx, ty]) - d * (OBJECT_HALF[CUBE][0] + 0.012)
        j = jitter()
        pre = np.array([behind[0] + j[0], behind[1] + j[1], PUSH_Z])
        return [(np.array([pre[0], pre[1], LIFT_Z]), 1.0, "above"), (pre, 1.0, "prepush"),
                (np.array([end[0], end[1], PUSH_Z]), 1.0, "pushed"), (np.array([end[0], end[1], LIFT_Z]), 1.0, "up")]
    raise ValueError(f"no scripted plan for task {task!r}")


# The sub-goal images a task is given, in order (phases of the scripted plan). Each starts with the hand above the
# cube (or behind it): from READY the pre-grasp pose is ~20 cm away, too far for the L1 latent energy to tell a
# step toward it from a step away (the arm hovered at the start); ~10 cm legs it does tell apart, as in reaching.
SUBGOAL_PHASES = {"grasp": ("above", "down", "grasp", "lifted"), "push": ("above", "prepush", "pushed"),
                  "pick_place": ("above", "down", "grasp", "lifted", "over_target", "lowered", "placed")}
# The stroke that moves the cube, which stroke_legs > 1 splits (subgoal_phases): pick_place's carry from "lifted"
# to "over_target", push's push from "prepush" to "pushed" (prefix of the intermediate sub-goals, from, to).
STROKES = {"pick_place": ("carry", "lifted", "over_target"), "push": ("push", "prepush", "pushed")}
# The ~10 cm descent that lower_legs > 1 splits: pick_place's with the cube, from "over_target" to "lowered"
# ("lower_k"), and push's to behind the cube, from "above" to "prepush" ("descend_k"). The scene camera's latent
# distance saturates past ~5 cm of hand travel (to "lowered", 0.233 from over the target, 0.230 from 6 cm above it,
# 0.002 there; MANIP_RECIPE.md try 8), so one 10 cm leg let the energy pull the hand up and aside (push: the hand
# never got down behind the cube in 3 of 20, try 9).
LOWERS = {"pick_place": ("lower", "over_target", "lowered"), "push": ("descend", "above", "prepush")}


def split_move(start: np.ndarray, end: np.ndarray, max_delta: float = 0.05) -> list[np.ndarray]:
    """Intermediate targets from start to end [3], each step at most max_delta per axis (the data's moves)."""
    n = max(1, int(math.ceil(float(np.abs(end - start).max()) / max_delta - 1e-9)))
    return [start + (end - start) * (k / n) for k in range(1, n + 1)]


def run_script(arm: PhysicsArm, plan: list[tuple[np.ndarray, float, str]], *, on_step: Any = None,
               max_delta: float = 0.05) -> dict[str, dict[str, Any]]:
    """Executes a scripted plan in moves of at most max_delta per axis (and one hand move per grip change);
    on_step(arm) after each action. Returns {phase: snapshot} at the end of each phase."""
    snaps = {}
    for xyz, grip, phase in plan:
        if grip != arm.grip_command:
            arm.move_to(arm.commanded, grip)
            if on_step is not None:
                on_step(arm)
        for wp in split_move(arm.commanded, np.asarray(xyz, dtype=np.float64), max_delta):
            arm.move_to(wp)
            if on_step is not None:
                on_step(arm)
        snaps[phase] = arm.snapshot()
    return snaps


def go_ready(arm: PhysicsArm, ready: np.ndarray = READY) -> None:
    """The task's start: the arm at rest with the hand open at `ready` (unrecorded)."""
    arm.teleport(ready)


def subgoal_phases(task: str, approach_legs: int = 1, stroke_legs: int = 1, lower_legs: int = 1) -> tuple[str, ...]:
    """The task's sub-goals (SUBGOAL_PHASES) with approach_legs - 1 intermediate ones ("approach_1", ...) on the
    straight line from READY to the first ("above"): shorter legs, where the latent energy points the way better
    (scripts/view_landscape.py: cosine 0.47 from READY, 0.72 from halfway, table_right); and stroke_legs - 1 on the
    stroke that moves the cube (STROKES: "carry_k" from lifted to over the target, "push_k" along the push), the
    cube moved with it; and lower_legs - 1 on the task's descent (LOWERS: pick_place's "lower_k" from over the
    target to "lowered", push's "descend_k" from "above" to "prepush"). Grasp has no stroke (its lift is one short leg)."""
    check_task(task)
    for name, legs in (("approach_legs", approach_legs), ("stroke_legs", stroke_legs), ("lower_legs", lower_legs)):
        if legs < 1:
            raise ValueError(f"{name} must be >= 1, got {legs}")
    phases = tuple(f"approach_{k}" for k in range(1, approach_legs)) + SUBGOAL_PHASES[task]
    for splits, legs in ((STROKES, stroke_legs), (LOWERS, lower_legs)):
        if task in splits and legs > 1:
            prefix, _, end = splits[task]
            i = phases.index(end)
            phases = phases[:i] + tuple(f"{prefix}_{k}" for k in range(1, legs)) + phases[i:]
    return phases


def _split_stroke(task: str, plan: list[tuple[np.ndarray, float, str]], stroke_legs: int, lower_legs: int = 1
                  ) -> list[tuple[np.ndarray, float, str]]:
    """The scripted plan with stroke_legs - 1 waypoints inserted on the straight line of the task's stroke (STROKES)
    and lower_legs - 1 on its descent with the cube (LOWERS); the oracle's path is unchanged, each intermediate point
    named as its sub-goal."""
    for splits, legs in ((STROKES, stroke_legs), (LOWERS, lower_legs)):
        if task not in splits or legs == 1:
            continue
        prefix, start, end = splits[task]
        names = [p for _, _, p in plan]
        a, b = np.asarray(plan[names.index(start)][0]), plan[names.index(end)]
        extra = [(a + (np.asarray(b[0]) - a) * (k / legs), b[1], f"{prefix}_{k}") for k in range(1, legs)]
        i = names.index(end)
        plan = plan[:i] + extra + plan[i:]
    return plan


def goal_frames(inst: TaskInstance, arm: PhysicsArm, cameras: tuple[str, ...] = (), approach_legs: int = 1,
                stroke_legs: int = 1, lower_legs: int = 1) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Sub-goal frames [uint8 [S, S, 3]] of the task (subgoal_phases(task, approach_legs, stroke_legs, lower_legs)),
    rendered by running the scripted oracle from the instance's layout on `arm` (a private scene; it is reset). Also returns
    what the oracle reached: {"success": bool, "states": [7-D state per sub-goal], "views": {camera: [frames]} for
    each of `cameras` (multi-view planning; the arm's own camera's are `frames`)}. An intermediate approach sub-goal is
    the arm moved from READY to k/approach_legs of the way to the first waypoint, the cube untouched; an
    intermediate stroke (descent) sub-goal is the oracle's own state k/stroke_legs (k/lower_legs) of the way along
    it."""
    phases = subgoal_phases(inst.task, approach_legs, stroke_legs, lower_legs)
    arm.reset(inst.layout)
    go_ready(arm)
    ready = arm.snapshot()
    plan = _split_stroke(inst.task, scripted_plan(inst.task, arm.object_xyz(CUBE), inst.target), stroke_legs,
                         lower_legs)
    snaps = run_script(arm, plan)
    ok, _ = success(inst, arm)
    first_xyz, first_grip = np.asarray(plan[0][0], dtype=np.float64), plan[0][1]
    for k in range(1, approach_legs):
        arm.restore(ready)
        arm.move_to(READY + (first_xyz - READY) * (k / approach_legs), first_grip)
        snaps[f"approach_{k}"] = arm.snapshot()
    frames, states = [], []
    views: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    for phase in phases:
        arm.restore(snaps[phase])
        frames.append(arm.render())
        states.append(arm.state())
        for c in cameras:
            views[c].append(arm.render(c))
    return frames, {"success": ok, "states": states, "views": views}


def success(inst: TaskInstance, arm: PhysicsArm) -> tuple[bool, dict[str, float]]:
    """Whether the task is done in the scene's state now, and the numbers it was judged on."""
    cube = arm.object_xyz(CUBE)
    held = arm.holding(CUBE)
    info: dict[str, float] = {"cube_x": float(cube[0]), "cube_y": float(cube[1]), "cube_z": float(cube[2]),
                              "held": float(held)}
    if inst.task == "grasp":
        lift = float(cube[2] - inst.cube_start[2])
        info["lift_m"] = lift
        return bool(lift >= 0.05 and held), info
    dist = math.hypot(cube[0] - inst.target[0], cube[1] - inst.target[1])
    info["target_distance_m"] = dist
    if inst.task == "push":
        return bool(dist <= 0.02), info
    resting = abs(float(cube[2]) - REST_Z) <= 0.005
    info["resting"] = float(resting)
    return bool(dist <= 0.03 and resting and not held), info
