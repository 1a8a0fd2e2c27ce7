#!/usr/bin/env python3
"""Closed-loop manipulation on the simulator: grasp, push, pick-and-place with image sub-goals, each method on
the same unseen layouts. `vjepa-fast sim-eval --task {grasp,push,pick_place}` lands here (reach: robot/simtools/sim_eval.py).

    vjepa-fast sim-eval --task pick_place --goals 20 --seed 0 --out runs/eval_pick_place \\
        --method ours=robot/assets/sim_manip_world_model.safetensors --method random-model \\
        --method random-actions --method oracle --method bc=runs/bc/policy.safetensors

The physics runs in-process (robot/simtools/physics.py: franky-sim's MuJoCo scene and controller stepped without the
protocol, as robot/simtools/generate_physics.py recorded the training data); `python robot/run_mpc.py --sim --task
pick_place` runs the same episode through the real libfranka protocol, the 1 kHz loop and the gripper process.

Per trial: layout i is `robot.simtools.tasks.draw_task(task, seed + i)` (the evaluation stream: never a training
layout, whatever the seed); the sub-goal images come from the scripted oracle on a private copy of the scene (robot/simtools/tasks.py);
the arm starts at rest at READY with the hand open; then up to `max_steps` actions. Each step: frame -> the
method's action (dxyz in the 5 cm ball, gripper delta) -> the safety clamp (workspace, step bound) -> the hand
closes when the planned gripper change is > +grip_threshold (per task by default: GRIP_THRESHOLDS), opens when
< -grip_threshold (holding the cube: when <= -release x the gripper state, robot.mpc.binary_grip), else stays -> the
arm moves and comes to rest. The trial stops early once the task's success
condition holds (robot/simtools/tasks.py `success`).

Sub-goal switching (methods with a goal image): the current sub-goal advances after `subgoal_steps[k]` steps on
it (the step budget), or earlier when the observed frame's latent distance to it has not improved by 2% over
the best so far for 2 steps in a row (a plateau), never past the last one.

Methods (`--method NAME[=SPEC]`): `NAME=FILE.safetensors` a world model (encoder + AC predictor) planned on with
latent CEM over xyz + gripper (7-D actions, rotation held); `NAME=FILE1+FILE2` one world model per camera (each
file records its camera, e.g. table_right and the hand's wrist camera), planned on as one model whose energy
sums the views (vjepa_fast.planning.multiview; `--view-weights` weighs them per sub-goal); `random-model` the first model's architecture with
random weights; `random-actions` a uniform step in the box and a random gripper change; `oracle` the scripted
plan on the true state (robot/simtools/tasks.py); `NAME=bc:FILE` a goal-image-conditioned behaviour-cloning policy
(vjepa_fast.train.bc, `vjepa-fast train-bc`), one forward per step.

Outputs in --out: trials.jsonl (resumable), sim_eval.md, sim_eval.json ({"config", "summary": rows of method,
success, trials, success_rate, plan_s_per_step: the mean seconds from frame to action, the frame's encoding
included}), sim_eval.png, and per trial a frame strip PNG under
trials/METHOD/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from robot.simtools.eval_report import summarise_tasks as summarise  # noqa: F401 - public here too
from robot.simtools.eval_report import run_and_report
from robot.simtools.eval_report import write_task_report as write_report
from robot.mpc import GRIP_THRESHOLD
from robot.simtools.tasks import TASKS, check_task, subgoal_phases

_LOG = logging.getLogger("task_eval")
BASELINES = ("random-model", "random-actions", "oracle")
# Step budget per sub-goal (robot.simtools.tasks.subgoal_phases), by task and phase; the intermediate sub-goals
# ("approach_k", "carry_k", "push_k", "lower_k") by prefix. A trial's default length is the sum of its sub-goals'
# budgets: grasp 17, push 23, pick_place 33 (TaskEvalConfig's defaults: two approach legs; push's descent behind the
# cube and its push in two legs each, pick_place's descent with the cube in two).
SUBGOAL_BUDGETS = {"grasp": {"above": 4, "down": 4, "grasp": 2, "lifted": 4},
                   "push": {"above": 4, "descend": 3, "prepush": 4, "push": 3, "pushed": 6},
                   "pick_place": {"above": 4, "down": 4, "grasp": 2, "lifted": 3, "carry": 3, "over_target": 8,
                                  "lower": 3, "lowered": 3, "placed": 3}}
# A planned gripper change past +-this closes / opens the hand. The data record closing on the cube as +0.375 (the
# fingers stop at it; +1 is closing on nothing), so tasks that grasp need a bar below it (try 5 of MANIP_RECIPE.md);
# push keeps the hand closed, and a lower bar there only lets planner noise open it (2/20 against 6/20, try 5).
GRIP_THRESHOLDS = {"grasp": 0.25, "push": GRIP_THRESHOLD, "pick_place": 0.25}
# What the CEM's gripper Gaussian is refit on (PlannerConfig.gripper_range_fit), per task. Refit on the clipped changes,
# a gripper the energy says nothing about leans +-0.4 toward the other state (a planner test: past +-0.25 in 34-35 of
# 40 plans, past 0.5 in 4-9; refit on the drawn ones 7 and 0-2). Push keeps its hand closed throughout, so there the
# lean only opens it: "raw". Grasp and pick-and-place must close on the cube, and the lean toward closing helps
# there as much as the flip-flops it causes hurt: pick-and-place on seed 300, 13/20 clipped (try 8), 11/20 raw
# (MANIP_RECIPE.md try 9); they keep "clipped".
GRIP_FITS = {"grasp": "clipped", "push": "raw", "pick_place": "clipped"}
# Default legs of the stroke that moves the cube (TaskEvalConfig.stroke_legs = 0): push in two (16/20 against 12/20 in
# one, seed 300, MANIP_RECIPE.md try 8); pick_place's carry in one (3 legs did not help, try 7).
STROKE_LEGS = {"grasp": 1, "push": 2, "pick_place": 1}
# Sub-goals a multi-view model plans toward with its first (scene) view alone (TaskEvalConfig.weights_for's default),
# by task and phase prefix: push's stroke ("push_k", "pushed"). Behind the cube the wrist camera sees it straight
# ahead whatever the cube's place on the table, so with it the energy keeps the cube centred before the fingers: when
# the cube veers, the hand follows it off the line (19 of try 8's 24 push failures); the scene view judges where the
# cube is. Closed loop, seed 500 with try 9's other defaults: 17/20 with the scene view alone on the stroke, 12/20 with
# both; from the oracle's pre-push pose (scripts/leg_test.py) the two tie, 29/40 and 28/40 (MANIP_RECIPE.md try 9).
FIRST_VIEW_PHASES = {"push": ("push", "pushed")}
APPROACH_BUDGET = 3  # steps per intermediate approach sub-goal (TaskEvalConfig.approach_legs)
CLOSE_ON_CUBE = 0.375  # the gripper state change the data record for closing on the cube (the fingers stop at it)


def subgoal_budget(task: str, phase: str) -> int:
    """The default step budget of one sub-goal (SUBGOAL_BUDGETS; APPROACH_BUDGET for "approach_k")."""
    if phase.startswith("approach_"):
        return APPROACH_BUDGET
    return SUBGOAL_BUDGETS[task][phase.split("_")[0] if phase[-1].isdigit() else phase]


@dataclass(frozen=True)
class TaskEvalConfig:
    """A manipulation evaluation (`vjepa-fast sim-eval --task NAME`); the command's flags are generated from here."""

    task: str = "grasp"  # grasp, push or pick_place (robot/simtools/tasks.py)
    goals: int = 20  # layouts
    seed: int = 0  # layout i is robot.simtools.tasks.draw_task(task, seed + i), from the evaluation stream: any seed >= 0 gives layouts never used for training
    max_steps: int = 0  # actions per trial (0: the sum of the sub-goals' budgets)
    subgoal_steps: tuple[int, ...] = ()  # step budget per sub-goal (none: per task and phase, SUBGOAL_BUDGETS)
    samples: int = 192  # CEM samples per iteration (192 x 4: 0.67 s per step on the 2-core CPU, two views; 64 x 4 planned worse, MANIP_RECIPE.md try 7)
    topk: int = 16  # CEM elites
    iterations: int = 4  # CEM iterations
    horizon: int = 1  # actions per planned sequence (the first is executed, then the plan is made again)
    max_step: float = 0.05  # largest translation per action, m
    camera: str = "table_right"  # scene camera of the frames (robot/sim.py CAMERAS)
    stop_on_success: bool = True  # stop a trial once the task's success condition holds
    planner: str = "cem"  # cem, mppi, icem, gradient or cem_grad (vjepa_fast.planning.planners); the sizes are shared
    planner_options: tuple[tuple[str, int | float], ...] = ()  # the planner's own options (MPPIOptions, ...)
    init_policy: str = ""  # a policy file (vjepa-fast distill or train-bc) whose action is the planner's initial mean each step (instead of the previous plan shifted)
    gripper_range: bool = True  # score only gripper changes the hand can make from its state (PlannerConfig.gripper_range)
    grip_fit: str = ""  # with gripper_range, the CEM's gripper Gaussian refit on the drawn changes ("raw": no lean toward toggling where the energy has no gripper signal) or on the clipped ones ("clipped", tries 4-8; PlannerConfig.gripper_range_fit); "": per task (GRIP_FITS: push raw, grasp and pick_place clipped)
    grip_threshold: float = 0.0  # a planned gripper change past +-this closes / opens the hand; 0: per task (GRIP_THRESHOLDS: grasp and pick_place 0.25, below the +0.375 the data record for closing on the cube; push 0.5, whose hand stays closed)
    approach_legs: int = 2  # legs from READY to the first sub-goal ("above"): n > 1 adds n - 1 intermediate sub-goal images on the straight line (robot.simtools.tasks.subgoal_phases), each with a budget of 3 steps; 1 = straight to "above" (tries 1-5)
    release: float = 0.8  # holding an object (the fingers stopped on it), the hand opens when the planned change is <= -release x the gripper state, in place of -grip_threshold (robot.mpc.binary_grip; 0: the plain threshold rule, tries 1-8)
    grip_choice: float = 0.0  # 0: the planned gripper change acts past grip_threshold; m > 0: the gripper is chosen by the energy instead: the plan's first action rolled out with the hand kept and toggled (closed by +0.375, what the data record for a grasp, or opened to 0), the toggle taken when its energy is lower by the relative margin m
    stroke_legs: int = 0  # legs of the stroke that moves the cube (pick_place: lifted -> over the target; push: the push): n > 1 adds n - 1 intermediate sub-goal images on it, the oracle's state there, 3 steps of budget each; 0: per task (STROKE_LEGS: push 2, pick_place 1)
    lower_legs: int = 2  # legs of the task's ~10 cm descent (pick_place: with the cube, from over the target to "lowered"; push: from "above" to behind the cube, "prepush"; robot.simtools.tasks.LOWERS): n > 1 adds n - 1 intermediate sub-goal images on it (3 steps of budget each); 1: one 10 cm leg, on which the scene camera's energy pulled the hand up and aside (pick_place tries 1-7, push tries 1-8; MANIP_RECIPE.md tries 8-9)
    view_weights: str = ""  # multi-view models (FILE1+FILE2): per sub-goal, the views' energy weights, e.g. "1,0;1,0;1,1" (sub-goals 1-2: the first view only; then both; the last group holds for later sub-goals); "": the first view alone toward the approach sub-goals and "above" (a hand camera does not see the cube from afar) and toward push's stroke (FIRST_VIEW_PHASES), every view 1 elsewhere

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.goals < 1:
            raise ValueError(f"goals must be >= 1, got {self.goals}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.grip_threshold < 1.0:
            raise ValueError(f"grip_threshold must be in (0, 1) (or 0: per task), got {self.grip_threshold}")
        if self.max_steps < 0 or any(s < 1 for s in self.subgoal_steps):
            raise ValueError("max_steps must be >= 0 and every subgoal step budget >= 1")
        if self.init_policy and not Path(self.init_policy).is_file():
            raise ValueError(f"init_policy {self.init_policy}: no such file (vjepa-fast distill or train-bc writes one)")
        self.weights_per_subgoal()  # a malformed view_weights fails here
        if self.approach_legs < 1:
            raise ValueError(f"approach_legs must be >= 1, got {self.approach_legs}")
        if not 0.0 <= self.release <= 1.0:
            raise ValueError(f"release must be in [0, 1] (a fraction of the way to open; 0: off), got {self.release}")
        if not 0.0 <= self.grip_choice < 1.0:
            raise ValueError(f"grip_choice must be in [0, 1) (a relative energy margin; 0: off), got {self.grip_choice}")
        if self.stroke_legs < 0:
            raise ValueError(f"stroke_legs must be >= 1 (or 0: per task), got {self.stroke_legs}")
        if self.lower_legs < 1:
            raise ValueError(f"lower_legs must be >= 1, got {self.lower_legs}")
        if self.subgoal_steps and len(self.subgoal_steps) != len(self.phases):
            raise ValueError(f"{self.task} has {len(self.phases)} sub-goals ({', '.join(self.phases)}), got "
                             f"{len(self.subgoal_steps)} budgets")

    def weights_for(self, views: int) -> list[list[float]]:
        """[[weight per view] per sub-goal] of a `views`-view model: view_weights, or by default the first view alone
        for the approach_legs far sub-goals (approach_*, "above") and the task's FIRST_VIEW_PHASES (push's stroke), all
        views at 1 elsewhere (benchmarks/MANIP_RECIPE.md try 6: a wrist view misleads the far legs and makes the near
        ones; try 9: it makes the push follow a veering cube)."""
        groups = self.weights_per_subgoal()
        if not groups:
            first, every = [1.0] + [0.0] * (views - 1), [1.0] * views
            groups = [first] * self.approach_legs + [every]
            alone = FIRST_VIEW_PHASES.get(self.task, ())
            if alone:  # every sub-goal spelled out: the task's first-view-alone phases among them
                groups = [first if k < self.approach_legs or ph.split("_")[0] in alone else every
                          for k, ph in enumerate(self.phases)]
        if len(groups[0]) != views:
            raise ValueError(f"view_weights {self.view_weights!r} has {len(groups[0])} weights per sub-goal, the "
                             f"model {views} views")
        return groups

    def weights_per_subgoal(self) -> list[list[float]]:
        """view_weights parsed: [[weight per view] per sub-goal] ([] when unset)."""
        if not self.view_weights.strip():
            return []
        try:
            groups = [[float(x) for x in g.split(",")] for g in self.view_weights.split(";")]
        except ValueError:
            groups = []
        if (not groups or len({len(g) for g in groups}) != 1 or any(x < 0 for g in groups for x in g)
                or not all(any(g) for g in groups)):
            raise ValueError(f"view_weights {self.view_weights!r}: expected groups of per-view weights >= 0 (not all "
                             "0), one group per sub-goal separated by ';', e.g. '1,0;1,1'")
        return groups

    @property
    def fit(self) -> str:
        """The CEM's gripper refit in use (PlannerConfig.gripper_range_fit): grip_fit, or the task's (GRIP_FITS)."""
        return self.grip_fit or GRIP_FITS[self.task]

    @property
    def grip(self) -> float:
        """The gripper threshold in use: grip_threshold, or the task's (GRIP_THRESHOLDS)."""
        return self.grip_threshold or GRIP_THRESHOLDS[self.task]

    @property
    def phases(self) -> tuple[str, ...]:
        return subgoal_phases(self.task, self.approach_legs, self.strokes, self.lower_legs)

    @property
    def strokes(self) -> int:
        """The legs of the stroke that moves the cube in use: stroke_legs, or the task's (STROKE_LEGS)."""
        return self.stroke_legs or STROKE_LEGS[self.task]

    @property
    def steps(self) -> int:
        """max_steps, or the sum of the sub-goals' budgets."""
        return self.max_steps or sum(self.budgets)

    @property
    def budgets(self) -> tuple[int, ...]:
        return self.subgoal_steps or tuple(subgoal_budget(self.task, p) for p in self.phases)


@dataclass
class TaskTrial:
    method: str
    task: str
    index: int
    seed: int
    success: bool
    steps: int
    plan_seconds_per_step: float
    info: dict[str, float] = field(default_factory=dict)
    subgoal_at_step: list[int] = field(default_factory=list)
    latent_distance: list[float] = field(default_factory=list)
    oracle_success: bool = True
    model_evals_per_step: float | None = None  # rollouts per planning decision (a gradient step counts 2)
    trace: list[list[float]] = field(default_factory=list)  # per step after the action: hand x, y, z (m), grip command (0 open, 1 closed), cube x, y, z (m), rounded to 0.1 mm
    grip_plan: list[float] = field(default_factory=list)  # per step, the planned gripper change (action[6]) and the gripper state it was planned from, flattened pairs [change, state, ...], rounded to 0.001
    subgoal_hand_error: list[float | None] = field(default_factory=list)  # per sub-goal, the hand's closest xyz distance (m) to the oracle's pose for it while it was the current one (None: never current; model methods only)


class ModelPolicy:
    """Latent planning toward the current sub-goal (xyz + gripper planned): CEM, or cfg.planner."""

    def __init__(self, wm: Any, cfg: TaskEvalConfig, seed: int) -> None:
        from vjepa_fast.planning import PlannerConfig
        from vjepa_fast.planning.planners import CountingPlanner, make_planner

        self.wm = wm
        pcfg = PlannerConfig(num_samples=cfg.samples, topk=cfg.topk, iterations=cfg.iterations, horizon=cfg.horizon,
                             max_norm=cfg.max_step, bound="box", gripper="plan", gripper_step=1.0, seed=seed,
                             gripper_range=cfg.gripper_range, gripper_range_fit=cfg.fit)
        self.planner = CountingPlanner(make_planner(cfg.planner, wm, pcfg, **dict(cfg.planner_options)))
        self.grip_choice = cfg.grip_choice
        self.warm = None
        self.init = None
        if cfg.init_policy:
            from vjepa_fast.train.bc import load_bc_policy
            from vjepa_fast.train.distill import PolicyWarmStart

            self.init = PolicyWarmStart(load_bc_policy(cfg.init_policy).head, pcfg.max_norm, pcfg.gripper_step,
                                        pcfg.action_dims)

    def act(self, z_obs: Any, state: np.ndarray, z_goal: Any) -> np.ndarray:
        import torch

        from vjepa_fast.planning import shift_plan

        with torch.inference_mode():
            st = torch.as_tensor(state, dtype=torch.float32)[None]
            init = self.warm if self.init is None else self.init.init_mean(z_obs, st, z_goal)
            res = self.planner.plan(z_obs, st, z_goal, init_mean=init)
            action = res.actions[0, 0].float().cpu().numpy()
            if self.grip_choice:
                action[6] = self.choose_grip(z_obs, st, z_goal, res.actions[:, :1])
        self.warm = shift_plan(res.mean)
        return action

    def choose_grip(self, z_obs: Any, st: Any, z_goal: Any, first: Any) -> float:
        """The gripper by the energy (TaskEvalConfig.grip_choice): the planned first action [1, 1, 7] with the
        hand kept and with it toggled, one rollout each; +1 (close) / -1 (open) when the toggle's energy is lower
        by the margin, else 0 (keep)."""
        from vjepa_fast.planning import l1_energy

        g = float(st[0, 6])
        toggle = CLOSE_ON_CUBE if g < 0.5 * CLOSE_ON_CUBE else -g  # closed on the cube the state reads 0.375
        cand = first[:, None].repeat(1, 2, 1, 1)  # [1, 2, 1, 7]: keep, toggle
        cand[0, 0, 0, 6], cand[0, 1, 0, 6] = 0.0, toggle
        e = l1_energy(self.wm.rollout(z_obs, st, cand), z_goal)[0]
        self.planner.model_evals += 2
        return float(np.sign(toggle)) if float(e[1]) < float(e[0]) * (1.0 - self.grip_choice) else 0.0


class RandomPolicy:
    """A uniform step in the box of max_step per axis and a uniform gripper change in [-1, 1]."""

    def __init__(self, max_step: float, seed: int) -> None:
        self.rng, self.max_step = np.random.default_rng(seed), max_step

    def act(self, z_obs: Any, state: np.ndarray, z_goal: Any) -> np.ndarray:
        return np.r_[self.rng.uniform(-self.max_step, self.max_step, 3), 0.0, 0.0, 0.0, self.rng.uniform(-1.0, 1.0)]


class OraclePolicy:
    """The scripted plan (robot/simtools/tasks.py) from the true cube position, one action per step."""

    def __init__(self, arm: Any, inst: Any, max_step: float) -> None:
        from robot.simtools.generate_physics import _scripted_steps
        from robot.simtools.tasks import CUBE, scripted_plan

        self.arm = arm
        self.steps = _scripted_steps(scripted_plan(inst.task, arm.object_xyz(CUBE), inst.target), arm, max_step)

    def act(self, z_obs: Any, state: np.ndarray, z_goal: Any) -> np.ndarray:
        nxt = next(self.steps, None)
        if nxt is None:
            return np.zeros(7)
        xyz, grip = nxt
        dg = 0.0 if grip == self.arm.grip_command else (1.0 if grip > self.arm.grip_command else -1.0)
        return np.r_[np.asarray(xyz) - self.arm.commanded, 0.0, 0.0, 0.0, dg]


def model_files(spec: str) -> list[str]:
    """The world-model files of a method spec: one file, or several joined by '+' (one per camera)."""
    return spec.split("+") if spec else []


def load_model(spec: str, random_like: str | None = None) -> Any:
    """A WorldModel from one file, or a MultiViewModel from FILE1+FILE2+... (each file's recorded camera is its
    view). random_like: the same architecture(s) with random weights."""
    from robot.simtools.sim_eval import load_world_model

    files = model_files(random_like or spec)
    if len(files) == 1:
        return load_world_model(spec, random_like=random_like)
    from robot.sim import model_camera
    from vjepa_fast.planning.multiview import MultiViewModel

    cams = [model_camera(f) for f in files]
    if None in cams:
        raise ValueError(f"multi-view spec {random_like or spec!r}: {files[cams.index(None)]} records no camera "
                         "(vjepa-fast train-ac exports it from the episodes)")
    views = [load_world_model("" if random_like else f, random_like=f if random_like else None) for f in files]
    return MultiViewModel(views, cameras=cams)


def render_views(arm: Any, wm: Any) -> list[np.ndarray] | list[list[np.ndarray]]:
    """The observation a world model encodes now: [frame] of the arm's camera, or one [frame] per view."""
    cams = getattr(wm, "cameras", None)
    return [[arm.render(c)] for c in cams] if cams else [arm.render()]


def encode(wm: Any, images: list) -> Any:
    """Latents [B, N, D] of images (one list per view for a MultiViewModel)."""
    return wm.encode_views(images) if getattr(wm, "cameras", None) else wm.encode_image_files(images)


def parse_methods(items: list[str]) -> dict[str, str | None]:
    methods: dict[str, str | None] = {}
    for item in items:
        name, _, spec = item.partition("=")
        paths = [spec[3:]] if spec.startswith("bc:") else model_files(spec)
        if not name:
            raise ValueError(f"--method {item!r}: expected NAME=FILE.safetensors, NAME=FILE1+FILE2 (one world model "
                             f"per camera), NAME=bc:FILE or one of {BASELINES}")
        for path in paths:
            if not Path(path).is_file():
                raise ValueError(f"--method {item!r}: file {path} does not exist")
        if not spec and name not in BASELINES:
            raise ValueError(f"--method {item!r}: a model method needs a file (NAME=FILE.safetensors or "
                             f"NAME=bc:FILE); baselines are {BASELINES}")
        if name in methods:
            raise ValueError(f"--method {name} given twice")
        methods[name] = spec or None
    if not methods:
        raise ValueError("give at least one --method")
    return methods


def execute(arm: Any, action: np.ndarray, grip_threshold: float, release: float = 0.0) -> None:
    """One planned action [7] on the arm: the xyz step through the safety clamp; the hand closed when the planned
    gripper change is > +grip_threshold, opened when < -grip_threshold (holding an object, when it is <= -release x
    the gripper state instead: robot.mpc.binary_grip, the live loop's rule), else as it is; then the arm at rest."""
    from robot.mpc import binary_grip

    target, _ = arm.target_for(np.r_[action[:3], 0.0, 0.0, 0.0, 0.0])
    grip = binary_grip(float(action[6]), float(arm.state()[6]), arm.grip_command, grip_threshold, release)
    arm.move_to(target, grip)


def run_trial(arm: Any, goal_arm: Any, inst: Any, method: str, policy_factory: Any, wm: Any, cfg: TaskEvalConfig,
              strip_path: Path | None = None, goal_cache: dict | None = None) -> TaskTrial:
    """One closed-loop episode of `inst` with the method's policy; the arm and goal_arm are reset here.
    goal_cache: {(task, seed, cameras, approach_legs, stroke_legs, lower_legs): (sub-goal frames, oracle info)} shared by the
    methods of one evaluation."""
    import torch

    from robot.simtools.tasks import CUBE, go_ready, goal_frames, success

    cams = tuple(getattr(wm, "cameras", None) or ())
    key = (inst.task, inst.seed, cams, cfg.approach_legs, cfg.strokes, cfg.lower_legs)
    if goal_cache is not None and key in goal_cache:
        goals, oracle = goal_cache[key]
    else:
        goals, oracle = goal_frames(inst, goal_arm, cams, cfg.approach_legs, cfg.strokes, cfg.lower_legs)
        if goal_cache is not None:
            goal_cache[key] = (goals, oracle)
    arm.reset(inst.layout)
    go_ready(arm)
    policy = policy_factory(arm, inst)
    z_goals = None if wm is None else encode(wm, [oracle["views"][c] for c in cams] if cams else goals)
    from vjepa_fast.planning import SubgoalSchedule

    switch = SubgoalSchedule(cfg.budgets)
    try:
        weights = cfg.weights_for(len(cams)) if cams else []
    except ValueError as e:
        raise ValueError(f"{e} ({', '.join(cams)})") from None

    def distance(k: int) -> float:
        """Latent L1 distance to sub-goal k, each view weighted as sub-goal k plans (the plateau rule's)."""
        diff = (z_obs - z_goals[k : k + 1]).abs()
        if weights:
            wm.set_weights(weights[min(k, len(weights) - 1)])
            diff = wm.weigh(diff)
        return float(diff.mean())

    frames, plan_s, sub_at, dists, trace, grip_plan = [arm.render()], [], [], [], [], []
    hand_err: list[float | None] = [None] * len(goals)
    ok = False
    for _ in range(cfg.steps):
        frame, state = frames[-1], arm.state()
        z_obs = z_goal = None
        views = render_views(arm, wm) if cams else [frame]  # the cameras' frames (not planning time)
        t0 = time.perf_counter()  # planning time per step: the frame's encoding included
        if wm is not None:
            with torch.inference_mode():
                z_obs = encode(wm, views)
                d = [distance(k) for k in range(len(goals))]
            k = switch.update(d[switch.index])
            z_goal = z_goals[k : k + 1]
            if weights:
                wm.set_weights(weights[min(k, len(weights) - 1)])
                z_goal = wm.weigh(z_goal)
            dists.append(d[k])
            sub_at.append(k)
        action = np.asarray(policy.act(z_obs, state, z_goal), dtype=np.float64)
        plan_s.append(time.perf_counter() - t0)
        grip_plan += [round(float(action[6]), 3), round(float(state[6]), 3)]
        execute(arm, action, cfg.grip, cfg.release)
        frames.append(arm.render())
        hand = np.asarray(arm.state()[:3])
        trace.append([round(float(v), 4) for v in (*hand, arm.grip_command, *arm.object_xyz(CUBE))])
        if sub_at:
            e = float(np.linalg.norm(hand - np.asarray(oracle["states"][sub_at[-1]][:3])))
            prev = hand_err[sub_at[-1]]
            hand_err[sub_at[-1]] = e if prev is None else min(prev, e)
        ok, _ = success(inst, arm)
        if ok and cfg.stop_on_success:
            break
    ok, info = success(inst, arm)
    if strip_path is not None:
        _save_strip(strip_path, goals, frames, ok)
    return TaskTrial(method=method, task=inst.task, index=-1, seed=inst.seed, success=bool(ok), steps=len(frames) - 1,
                     plan_seconds_per_step=float(np.mean(plan_s)) if plan_s else float("nan"), info=info,
                     subgoal_at_step=sub_at, latent_distance=dists, oracle_success=bool(oracle["success"]), trace=trace,
                     subgoal_hand_error=hand_err if sub_at else [], grip_plan=grip_plan)


def _save_strip(path: Path, goals: list[np.ndarray], frames: list[np.ndarray], ok: bool) -> None:
    """Goal images, then every frame of the episode, 128 px each, one row: a glance at what happened."""
    from PIL import Image

    def small(im: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(im).resize((128, 128)))

    sep = np.full((128, 8, 3), (40, 160, 40) if ok else (190, 40, 40), np.uint8)
    row = np.concatenate([small(g) for g in goals] + [sep] + [small(f) for f in frames], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def evaluate(methods: dict[str, str | None], cfg: TaskEvalConfig, out_dir: str | Path, *,
             progress: bool = True) -> list[TaskTrial]:
    """Runs every (method, layout) trial not yet in out/trials.jsonl; returns all of them."""
    import torch

    from robot.simtools.physics import PhysicsArm
    from robot.simtools.tasks import draw_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = [TaskTrial(**json.loads(line)) for line in log.read_text().splitlines() if line.strip()] \
        if log.exists() else []
    have = {(t.method, t.index) for t in done if t.task == cfg.task}
    todo = [(m, i) for m in methods for i in range(cfg.goals) if (m, i) not in have]
    if not todo:
        return [t for t in done if t.task == cfg.task]
    files = [s for s in methods.values() if s and not s.startswith("bc:")]
    if "OMP_NUM_THREADS" not in os.environ:  # the user's choice wins (several evaluations side by side)
        torch.set_num_threads(max(1, os.cpu_count() or 2))
    arm, goal_arm = PhysicsArm(cfg.camera, 256), PhysicsArm(cfg.camera, 256)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(methods) * cfg.goals, initial=len(methods) * cfg.goals - len(todo),
                   desc=f"sim-eval {cfg.task}", unit="trial")
    try:
        encoder_wm = load_model(files[0]) if files else None
        goal_cache: dict = {}
        for method, spec in methods.items():
            pending = [i for m, i in todo if m == method]
            if not pending:
                continue
            wm = encoder_wm
            if method == "random-model":
                if not files:
                    raise ValueError("random-model needs a model file among the methods (its architecture)")
                wm = load_model("", random_like=files[0])
            elif spec and spec.startswith("bc:"):
                from vjepa_fast.train.bc import load_bc_policy

                bc = load_bc_policy(spec[3:])
                wm = bc.world_model
            elif spec:
                wm = load_model(spec)
            for i in pending:
                inst = draw_task(cfg.task, cfg.seed + i)
                if method in ("random-model",) or (spec and not spec.startswith("bc:")):
                    def factory(a: Any, t: Any, _wm: Any = wm, _i: int = i) -> Any:
                        return ModelPolicy(_wm, cfg, seed=_i)
                elif method == "random-actions":
                    def factory(a: Any, t: Any, _i: int = i) -> Any:
                        return RandomPolicy(cfg.max_step, seed=cfg.seed * 31 + _i)
                elif method == "oracle":
                    def factory(a: Any, t: Any) -> Any:
                        return OraclePolicy(a, t, cfg.max_step)
                else:
                    def factory(a: Any, t: Any, _bc: Any = bc) -> Any:
                        return _bc
                made: list[Any] = []

                def counted(a: Any, t: Any, _f: Any = factory) -> Any:
                    made.append(_f(a, t))
                    return made[-1]

                trial = run_trial(arm, goal_arm, inst, method, counted, wm, cfg,
                                  strip_path=out / "trials" / method / f"{cfg.task}_{i:03d}.png",
                                  goal_cache=goal_cache)
                trial.index = i
                planners = [p.planner for p in made if isinstance(p, ModelPolicy)]
                if planners and sum(p.decisions for p in planners):
                    trial.model_evals_per_step = (sum(p.model_evals for p in planners)
                                                  / sum(p.decisions for p in planners))
                done.append(trial)
                with open(log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(trial)) + "\n")
                _LOG.info("%s %s %d: %s %s", method, cfg.task, i, "success" if trial.success else "miss", trial.info)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        arm.close()
        goal_arm.close()
    return [t for t in done if t.task == cfg.task]


def build_parser() -> argparse.ArgumentParser:
    from robot.simtools.eval_args import add_eval_arguments
    from vjepa_fast.config import Flag

    p = argparse.ArgumentParser(prog="sim-eval --task", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", action="append", default=[], metavar="NAME[=SPEC]",
                   help="NAME=FILE.safetensors (world model), NAME=FILE1+FILE2 (one world model per camera), "
                        f"NAME=bc:FILE (BC policy), or one of {', '.join(BASELINES)}; repeat for several")
    p.add_argument("--out", default="", help="output folder (default runs/sim_eval_TASK; resumes its trials)")
    p.add_argument("-v", "--verbose", action="store_true")
    add_eval_arguments(p, TaskEvalConfig, [Flag("--sim-camera", "camera"),
                                           Flag("--no-early-stop", "stop_on_success", const=False,
                                                help="run every step even after success")],
                       choices={"task": TASKS, "grip_fit": ("raw", "clipped")})
    return p


def main(argv: list[str] | None = None) -> int:
    from robot.simtools.eval_args import eval_config

    a = build_parser().parse_args(argv)
    try:
        cfg = eval_config(a)
        methods = parse_methods(a.method)
        from robot.sim import check_camera

        check_camera(cfg.camera)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"sim-eval: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _LOG.setLevel(logging.INFO)
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(a.out or f"runs/sim_eval_{cfg.task}")
    return run_and_report(evaluate, write_report, methods, cfg, out)


if __name__ == "__main__":
    sys.exit(main())
