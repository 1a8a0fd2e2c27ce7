#!/usr/bin/env python3
"""Closed-loop success rate on the embedded simulator: N unseen goal poses, each method, one table and a PNG.

    python robot/simtools/sim_eval.py --goals 20 --out runs/sim_eval \\
        --method ours=robot/assets/sim_demo_world_model.safetensors --method random-model --method random-actions \\
        --method oracle
    (the same through `vjepa-fast sim-eval ...`)

One franky-sim server, camera and 1 kHz control loop serve every trial. Goal i is drawn from the seed
(seed, i) inside the evaluation box (the collection box around the home pose, z >= box_z_min); its start lies
`start_min`-`start_max` m away in a random direction, inside the box; both where the arm reaches with the hand
pointing down (franky-sim's IK; `--any-goal` drops that check). Per trial: the arm moves (unrecorded)
to the goal, a fresh frame there is the goal image, then to the start; then up to `max_steps` MPC steps.
Success: the MEASURED end-effector position ends within `success_m` of the goal position after the last step.
Every method sees the same goals and starts (paired).

Methods (`--method NAME[=SPEC]`):
- `NAME=FILE.safetensors`: a world model file (encoder + AC predictor, as `vjepa-fast train-ac` exports: world_model.safetensors),
  planned on with latent CEM;
- `random-model`: the same architecture as the first model file with random weights (seed 0), latent CEM;
- `random-actions`: a uniformly random step (L2 ball of the max step) each MPC step;
- `oracle`: straight to the goal (the true goal position, clipped to the max step): what perfect control does.
Outputs in --out: `trials.jsonl` (one line per trial, appended as they finish: an interrupted run resumes
where it stopped), `sim_eval.md` (the table), `sim_eval.json`, `sim_eval.png` (final-distance distributions
and success rates), and each trial's MPC log under `trials/METHOD/goal_NNN/`.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from robot.simtools.eval_args import add_eval_arguments, eval_config
from robot.simtools.eval_report import run_and_report, summarise, write_report  # noqa: F401 - public here too
from vjepa_fast.config import Flag

_LOG = logging.getLogger("sim_eval")
BASELINES = ("random-model", "random-actions", "oracle")


@dataclass(frozen=True)
class EvalConfig:
    """The reach evaluation (`vjepa-fast sim-eval`): goals, trials, the planner's sizes (flags generated from here)."""

    goals: int = 20  # goal poses
    seed: int = 1000  # goal i is drawn from (seed, i): keep clear of the data generator's seeds
    max_steps: int = 10  # MPC steps per trial
    success_m: float = 0.03  # success radius, m
    start_min: float = 0.06  # start distance from the goal, m (at least)
    start_max: float = 0.10  # start distance from the goal, m (at most)
    box_half: tuple[float, float, float] = (0.12, 0.15, 0.12)  # evaluation box around the home pose, m
    box_z_min: float = 0.15  # lowest goal z, m
    max_step: float = 0.05  # largest translation per MPC step, m
    samples: int = 64  # CEM samples per iteration
    topk: int = 8  # CEM elites
    iterations: int = 3  # CEM iterations
    horizon: int = 1  # actions per plan (the energy scores the last predicted frame only: with 2+, the first action is not pinned down)
    settle_timeout: float = 30.0  # s to reach each target
    camera: str = ""  # scene camera (robot/sim.py CAMERAS; "": the one the first model file records, else robot.sim.DEFAULT_CAMERA)
    reachable_only: bool = True  # draw goals and starts only where the arm reaches with the hand down
    fresh_sim: bool = True  # restart the simulator before every trial (each starts from the initial joint state)
    workspace_margin: float = 0.01  # m: targets clamped to the evaluation box + this (< 0: the default workspace)
    planner: str = "cem"  # cem, mppi, icem, gradient or cem_grad (vjepa_fast.planning.planners); the sizes are shared
    planner_options: tuple[tuple[str, int | float], ...] = ()  # the planner's own options (MPPIOptions, ...)

    def __post_init__(self) -> None:
        if self.goals < 1 or self.max_steps < 1:
            raise ValueError(f"goals and max_steps must be >= 1, got {self.goals}, {self.max_steps}")
        if not 0 < self.start_min <= self.start_max:
            raise ValueError(f"need 0 < start_min <= start_max, got {self.start_min}, {self.start_max}")
        if self.success_m <= 0:
            raise ValueError(f"success_m must be > 0, got {self.success_m}")


@dataclass
class Trial:
    method: str
    goal_index: int
    goal_xyz: list[float]
    start_xyz: list[float]
    start_distance: float
    final_distance: float | None
    success: bool
    steps: int
    plan_seconds_per_step: float
    ok: bool
    reason: str
    distances: list[float] = field(default_factory=list)
    model_evals_per_step: float | None = None  # rollouts per decision (a gradient step counts 2); None: no model


_REACH_ARM: Any = None


def arm_reaches(goal: np.ndarray, start: np.ndarray) -> bool:
    """Whether the arm can stand at the goal and then at the start with the hand pointing down (the held
    orientation): franky-sim's own IK on robot/simtools/generate.py's kinematic arm, from the initial joint state. The
    box's far-high corner is out of reach that way; there the live IK blows up (seen: 0.016 -> 1.27 m)."""
    global _REACH_ARM
    if _REACH_ARM is None:
        from robot.simtools.generate import KinematicArm

        _REACH_ARM = KinematicArm()
    _REACH_ARM.reset()
    return bool(_REACH_ARM.move_to(np.asarray(goal, dtype=np.float64))
                and _REACH_ARM.move_to(np.asarray(start, dtype=np.float64)))


def draw_goal(cfg: EvalConfig, home: np.ndarray, index: int, reachable: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(goal xyz, start xyz) of trial `index`: uniform in the box, the start start_min..start_max away, both
    where the arm reaches (`reachable(goal, start)`, default `arm_reaches` when cfg.reachable_only). A draw that
    fails is redrawn from the same generator, so the goals that were reachable stay the same."""
    rng = np.random.default_rng([cfg.seed, index])
    lo = home - np.asarray(cfg.box_half)
    lo[2] = max(lo[2], cfg.box_z_min)
    hi = home + np.asarray(cfg.box_half)
    if reachable is None and cfg.reachable_only:
        reachable = arm_reaches
    for _ in range(1000):
        goal = rng.uniform(lo, hi)
        d = rng.normal(size=3)
        start = goal + d / np.linalg.norm(d) * rng.uniform(cfg.start_min, cfg.start_max)
        if np.all(start >= lo) and np.all(start <= hi) and (reachable is None or reachable(goal, start)):
            return goal, start
    raise RuntimeError("could not draw a reachable start inside the box: the box is too small for start_max")


class _FixedPlanner:
    """A baseline with the planner's interface: one action per step from `choose(state xyz) -> dxyz`."""

    def __init__(self, choose, horizon: int = 1) -> None:
        self.choose, self.horizon = choose, horizon

    def plan(self, z_obs, state, z_goal, init_mean=None):
        import torch

        from vjepa_fast.planning import PlanResult, to_actions

        d = torch.as_tensor(self.choose(state[0, :3].double().numpy()), dtype=torch.float32)
        mean = d.view(1, 1, 3).expand(1, self.horizon, 3).contiguous()
        return PlanResult(mean=mean, actions=to_actions(mean), energy=torch.full((1,), float("nan")),
                          std=torch.zeros_like(mean))


def oracle_planner(goal: np.ndarray, max_step: float) -> _FixedPlanner:
    def choose(xyz: np.ndarray) -> np.ndarray:
        d = goal - xyz
        n = np.linalg.norm(d)
        return d if n <= max_step else d * (max_step / n)

    return _FixedPlanner(choose)


def random_planner(max_step: float, seed: int) -> _FixedPlanner:
    rng = np.random.default_rng(seed)

    def choose(xyz: np.ndarray) -> np.ndarray:
        d = rng.normal(size=3)
        return d / np.linalg.norm(d) * max_step * rng.uniform() ** (1 / 3)

    return _FixedPlanner(choose)


def load_world_model(spec: str, random_like: str | None = None):
    """WorldModel from a safetensors file (encoder + predictor), or random weights of that file's architecture."""
    import torch

    from vjepa_fast.checkpoints import load_safetensors
    from vjepa_fast.models import ActionConditionedPredictor, VideoEncoder
    from vjepa_fast.planning import WorldModel

    loaded = load_safetensors(random_like or spec)
    if loaded.encoder is None or loaded.predictor is None:
        raise ValueError(f"{random_like or spec} must hold an encoder and an AC predictor")
    enc, pred = loaded.encoder, loaded.predictor
    if random_like is not None:
        torch.manual_seed(0)
        enc, pred = VideoEncoder(enc.config), ActionConditionedPredictor(pred.config)
    return WorldModel(enc.eval(), pred.eval())


def eval_safety(cfg: EvalConfig) -> Any:
    """The safety limits of the trials: sim-eval's step bound, and (cfg.workspace_margin >= 0) the workspace
    clamped to the evaluation box + that margin, which is where the generated training data lies: a planner
    driven out of it extrapolates its model (seen: a goal at the box's y edge reached to 1.2 cm, then the plan
    wandered out of the box, beyond y = 0.15 m, and the arm drifted off to 18.6 cm)."""
    from robot.simtools.generate import KinematicArm
    from robot.safety import SafetyConfig

    base = SafetyConfig(max_step=cfg.max_step, planner_timeout=120.0)
    if cfg.workspace_margin < 0:
        return base
    home = KinematicArm().pose()[:3, 3]  # franky-sim's initial pose: where the server starts the arm
    lo = home - np.asarray(cfg.box_half)
    lo[2] = max(lo[2], cfg.box_z_min)
    hi = home + np.asarray(cfg.box_half)
    lo = np.maximum(lo - cfg.workspace_margin, base.workspace_min)
    hi = np.minimum(hi + cfg.workspace_margin, base.workspace_max)
    return dataclasses.replace(base, workspace_min=tuple(float(v) for v in lo),
                               workspace_max=tuple(float(v) for v in hi))


def _move_to(control, target: np.ndarray, safety, timeout: float) -> None:
    from robot import shm
    from robot.safety import safe_target

    here = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
    for _ in range(200):
        if np.linalg.norm(target - here) < 1e-4:
            return
        here, _ = safe_target(here, np.r_[target - here, 0.0, 0.0, 0.0, 0.0], safety)
        control.send_target(here, 0.0)
        if not control.wait_settled(timeout):
            raise RuntimeError(f"the arm did not reach {np.round(here, 4).tolist()}: "
                               f"{control.error() or 'timeout'}")
    raise RuntimeError(f"could not reach {np.round(target, 4).tolist()} in 200 safe steps")


def evaluate(methods: dict[str, str | None], cfg: EvalConfig, out_dir: str | Path, *, progress: bool = True
             ) -> list[Trial]:
    """Runs every (method, goal) trial not yet in out/trials.jsonl; returns all trials."""
    import torch

    from robot.collect import _fresh_frame
    from robot.mpc import MPCRunner
    from robot.rig import Rig
    from robot.safety import SafetyConfig
    from vjepa_fast.planning import PlannerConfig
    from vjepa_fast.planning.planners import CountingPlanner, make_planner

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = [Trial(**json.loads(line)) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    have = {(t.method, t.goal_index) for t in done}
    todo = [(m, i) for m in methods for i in range(cfg.goals) if (m, i) not in have]
    if not todo:
        return done
    files = [s for s in methods.values() if s]
    safety = eval_safety(cfg)
    planner_cfg = PlannerConfig(num_samples=cfg.samples, topk=cfg.topk, iterations=cfg.iterations,
                                horizon=cfg.horizon, max_norm=cfg.max_step, bound="ball")
    bar = None
    from robot.sim import resolve_sim_camera

    camera = resolve_sim_camera(cfg.camera, files[0] if files else None)
    _LOG.info("sim camera: %s", camera)
    def fresh_rig() -> Rig:  # Rig.start closes what it started if it fails
        return Rig(out / "rig", safety, sim=True, camera_fps=15.0, gripper=False, max_log_seconds=30.0,
                   sim_camera=camera).start()

    # Every trial starts from the simulator's initial state (a fresh server, as a real evaluation homes the arm
    # in joint space between episodes): near the edge of the reach franky-sim's IK can flip the elbow or turn
    # the hand, and an arm carried over in that posture would spoil every later trial (seen: 9 of them).
    rig = fresh_rig()
    trials_on_rig = 0
    try:
        home = rig.commanded_xyz()
        if "OMP_NUM_THREADS" not in os.environ:  # the user's choice wins
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(methods) * cfg.goals, initial=len(done), desc="sim-eval", unit="trial")
        encoder_model = None
        for method, spec in methods.items():
            pending = [i for m, i in todo if m == method]
            if not pending:
                continue
            if method == "random-model":
                if not files:
                    raise ValueError("random-model needs a model file among the methods (its architecture)")
                wm = load_world_model("", random_like=files[0])
            elif spec:
                wm = load_world_model(spec)
                encoder_model = encoder_model or wm
            elif files:  # baselines plan without a model; the runner still encodes the frames it logs
                wm = encoder_model or load_world_model(files[0])
            else:
                raise ValueError(f"{method} needs a model file among the methods (to encode the frames it logs)")
            for i in pending:
                if cfg.fresh_sim and trials_on_rig > 0:
                    rig.close()
                    rig = fresh_rig()
                    trials_on_rig = 0
                trials_on_rig += 1
                goal, start = draw_goal(cfg, home, i)
                _move_to(rig.control, goal, safety, cfg.settle_timeout)
                time.sleep(0.15)
                goal_frame = _fresh_frame(rig.camera, time.monotonic())
                _move_to(rig.control, start, safety, cfg.settle_timeout)
                time.sleep(0.15)
                if method == "oracle":
                    planner = oracle_planner(goal, cfg.max_step)
                elif method == "random-actions":
                    planner = random_planner(cfg.max_step, seed=cfg.seed * 7919 + i)
                else:
                    planner = CountingPlanner(make_planner(cfg.planner, wm, planner_cfg.replace(seed=i),
                                                           **dict(cfg.planner_options)))
                runner = MPCRunner(wm, planner, rig.control, rig.camera, safety, [goal_frame],
                                   out / "trials" / method / f"goal_{i:03d}", goal_xyz=goal,
                                   settle_timeout=cfg.settle_timeout)
                s = runner.run(cfg.max_steps, stop_control=False)
                start_d = float(np.linalg.norm(start - goal))
                dists = [r.ee_distance_to_goal for r in s.records] + (
                    [s.final_ee_distance_to_goal] if s.final_ee_distance_to_goal is not None else [])
                final = s.final_ee_distance_to_goal
                trial = Trial(method=method, goal_index=i, goal_xyz=goal.tolist(), start_xyz=start.tolist(),
                              start_distance=start_d, final_distance=final,
                              success=bool(s.ok and final is not None and final <= cfg.success_m), steps=s.steps,
                              plan_seconds_per_step=float(np.mean([r.plan_seconds for r in s.records]))
                              if s.records else float("nan"), ok=s.ok, reason=s.reason,
                              distances=[float(d) for d in dists],
                              model_evals_per_step=planner.evals_per_decision
                              if isinstance(planner, CountingPlanner) and planner.decisions else None)
                done.append(trial)
                with open(log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(trial)) + "\n")
                _LOG.info("%s goal %d: %.3f -> %s m (%s)", method, i, start_d,
                          "?" if final is None else f"{final:.3f}", "success" if trial.success else "miss")
                if bar is not None:
                    bar.update(1)
                if not s.ok:
                    raise RuntimeError(f"trial {method}/{i} stopped: {s.reason}")
    finally:
        if bar is not None:
            bar.close()
        rig.close()
    return done


def parse_methods(items: list[str]) -> dict[str, str | None]:
    methods: dict[str, str | None] = {}
    for item in items:
        name, _, spec = item.partition("=")
        if not name:
            raise ValueError(f"--method {item!r}: expected NAME=FILE.safetensors or one of {BASELINES}")
        if spec:
            if not Path(spec).is_file():
                raise ValueError(f"--method {item!r}: model file {spec} does not exist")
        elif name not in BASELINES:
            raise ValueError(f"--method {item!r}: a model method needs a file (NAME=FILE.safetensors); baselines "
                             f"are {BASELINES}")
        if name in methods:
            raise ValueError(f"--method {name} given twice")
        methods[name] = spec or None
    if not methods:
        raise ValueError("give at least one --method")
    return methods


# Today's flags of the keys in other names or units (the generated ones are --success-m, --fresh-sim, ...).
EVAL_FLAGS = [
    Flag("--success-cm", "success_m", scale=0.01, help="success radius, cm"),
    Flag("--start-cm", ("start_min", "start_max"), scale=0.01, metavar=("MIN", "MAX"),
         help="start distance from the goal, cm"),
    Flag("--sim-camera", "camera"),
    Flag("--workspace-margin-cm", "workspace_margin", scale=0.01,
         help="clamp targets to the evaluation box (where the generated data lies) + this margin, cm; negative: the "
              "default safety workspace"),
    Flag("--keep-sim", "fresh_sim", const=False,
         help="one simulator for all trials (faster; the arm's posture carries over from trial to trial)"),
    Flag("--any-goal", "reachable_only", const=False,
         help="also draw goals the arm cannot reach with the hand down (the box's far-high corner)"),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sim-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", choices=("reach", "grasp", "push", "pick_place"),
                   help="reach (this evaluator, through the protocol) or a manipulation task (robot/simtools/task_eval.py: "
                        "`sim-eval --task grasp --help`)")
    p.add_argument("--method", action="append", default=[], metavar="NAME[=FILE]",
                   help=f"a world model file (NAME=FILE.safetensors) or a baseline {BASELINES}; repeatable")
    p.add_argument("--out", default="runs/sim_eval", help="output folder (resumes the trials already in it)")
    p.add_argument("-v", "--verbose", action="store_true")
    add_eval_arguments(p, EvalConfig, EVAL_FLAGS)
    return p


def _task_of(argv: list[str]) -> str | None:
    for i, item in enumerate(argv):
        if item == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if item.startswith("--task="):
            return item.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    task = _task_of(argv)
    if task is not None and task != "reach":  # manipulation: robot/simtools/task_eval.py (in-process physics)
        from robot.simtools.task_eval import main as task_main

        return task_main(argv)
    p = build_parser()
    a = p.parse_args(argv)
    try:
        cfg = eval_config(a)
        methods = parse_methods(a.method)
        if cfg.camera:
            from robot.sim import check_camera

            check_camera(cfg.camera)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"sim-eval: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _LOG.setLevel(logging.INFO)
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(a.out)
    return run_and_report(evaluate, write_report, methods, cfg, out)


if __name__ == "__main__":
    sys.exit(main())
