#!/usr/bin/env python3
"""Manipulation episodes with contact: the simulator's physics stepped in-process (robot/simtools/physics.py), the cubes
free, the hand planned, frames from the camera process's renderer.

    python robot/simtools/generate_physics.py --out data/manip --episodes 2500 --steps 20 --workers 2

Each episode draws a layout (key (seed, index); robot/simtools/tasks.py draws evaluation layouts from another stream), puts the hand
open at a random start near READY (unrecorded), then records `steps` actions, a frame + 7-D state after each
(steps + 1 frames; the gripper as DROID's, 0 open .. 1 closed, read from the fingers). What the actions are
(`--mix`, weights of grasp/push/pick_place/explore/regrasp, default 0.3/0.2/0.3/0.2/0):
  grasp       the scripted oracle's grasp + lift of the red cube with noise (grasp point jittered by ~N(0, 1 cm),
              so some grasps fail and the cube slips or is knocked);
  push        a scripted push of the cube 6-12 cm along a random direction (pre-push point jittered);
  pick_place  grasp, carry 10-20 cm, lower, release (both points jittered);
  explore     random moves near the objects: toward a random point around the cube (+-8 cm, up to 15 cm above it),
              +-3 cm of noise, the hand toggled with probability 0.15 per step;
  regrasp     grasp practice: down around the cube, close, then 2-3 cycles of lift 3-10 cm, set down 0-3 cm off,
              open, and close again in place or after rising 2-6 cm (many close / open moments with the fingers
              at the cube, lifts with and without it: what the closed loop's grasp decision turns on).
In every kind each step is replaced by a random one with probability `--epsilon` (0.15), and once the script
is done the episode goes on exploring. Moves are at most `max_delta` (5 cm) per axis; a hand move is its own
step. The action written is the commanded change (dxyz, 0, 0, 0, dgrip); train-ac derives its actions from the
states (the V-JEPA 2-AC convention).

Atomic and resumable per episode (as robot/simtools/generate.py).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from robot.collect import publish_episode
from robot.simtools.generate import generator_args, generator_parser, run_episodes
from robot.sim import check_camera
from robot.simtools.tasks import CUBE, READY, REGION, scripted_plan, split_move

_LOG = logging.getLogger("generate_physics")
KINDS = ("grasp", "push", "pick_place", "explore", "regrasp")
MANIP_CAMERA = "table_right"


@dataclass(frozen=True)
class PhysicsGenConfig:
    """Manipulation episodes of `robot/simtools/generate_physics.py` (its flags are generated from here)."""

    episodes: int = 2500  # episodes to write
    steps: int = 20  # actions per episode (frames = steps + 1)
    # weights of the episode kinds: grasp, push, pick_place, explore, regrasp (4 weights: regrasp 0)
    mix: tuple[float, ...] = (0.3, 0.2, 0.3, 0.2, 0.0)
    epsilon: float = 0.15  # probability that a step is random instead of scripted
    noise: float = 0.01  # m: std of the jitter on scripted grasp / push / place points
    max_delta: float = 0.05  # largest move per axis per step, m
    seed: int = 0  # episode i draws its layout from (seed, i)
    camera: str = MANIP_CAMERA  # which of the scene's cameras renders (robot/sim.py CAMERAS)
    size: int = 256  # frame size, px
    fps: float = 4.0  # nominal rate written to the episode meta
    video: bool = False  # store frames as frames.mp4 (lossy, ~6x smaller than PNG)

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.steps < 1:
            raise ValueError(f"episodes and steps must be >= 1, got {self.episodes}, {self.steps}")
        if len(self.mix) == len(KINDS) - 1:  # written before regrasp existed
            object.__setattr__(self, "mix", (*self.mix, 0.0))
        if len(self.mix) != len(KINDS) or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"mix must be {len(KINDS)} weights >= 0 ({', '.join(KINDS)}; 4: regrasp 0), "
                             f"got {self.mix}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 0 <= self.noise <= 0.05:
            raise ValueError(f"noise must be in [0, 0.05] m, got {self.noise}")
        if not 0 < self.max_delta <= 0.1:
            raise ValueError(f"max_delta must be in (0, 0.1] m, got {self.max_delta}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_camera(self.camera)
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024] px, got {self.size}")


def _explore_step(arm: Any, rng: np.random.Generator, aim: np.ndarray, max_delta: float) -> tuple[np.ndarray, float]:
    """A random step toward `aim` [3] with noise; the hand toggled with probability 0.15."""
    delta = np.clip(0.6 * (aim - arm.commanded) + rng.uniform(-0.03, 0.03, 3), -max_delta, max_delta)
    grip = 1.0 - arm.grip_command if rng.random() < 0.15 else arm.grip_command
    return arm.commanded + delta, grip


def _aim(arm: Any, rng: np.random.Generator) -> np.ndarray:
    cube = arm.object_xyz(CUBE)
    return cube + np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08), rng.uniform(0.0, 0.15)])


def regrasp_plan(cube: np.ndarray, rng: np.random.Generator, noise: float,
                 cycles: int | None = None) -> list[tuple[np.ndarray, float, str]]:
    """Waypoints [(xyz, grip, phase)] of a `regrasp` episode: the hand down around the cube (grasp point jittered
    by `noise`), closed, then `cycles` (2-3) of: lift 3-10 cm, set down 0-3 cm off, open, and close again,
    either in place or after rising 2-6 cm and coming back down."""
    plan = scripted_plan("grasp", cube, None, rng, noise)[:3]  # the oracle's above, down (jittered), grasp
    g = plan[-1][0]
    for _ in range(int(rng.integers(2, 4)) if cycles is None else cycles):
        plan.append((g + np.array([0.0, 0.0, rng.uniform(0.03, 0.10)]), 1.0, "lifted"))
        ang = rng.uniform(-np.pi, np.pi)
        off = rng.uniform(0.0, 0.03) * np.array([np.cos(ang), np.sin(ang)])
        g = np.array([np.clip(g[0] + off[0], REGION[0][0], REGION[0][1]),
                      np.clip(g[1] + off[1], REGION[1][0], REGION[1][1]), g[2]])
        plan += [(g, 1.0, "set_down"), (g, 0.0, "released")]
        if rng.random() < 0.5:
            plan.append((g + np.array([0.0, 0.0, rng.uniform(0.02, 0.06)]), 0.0, "risen"))
            plan.append((g, 0.0, "down"))
        plan.append((g, 1.0, "grasp"))
    return plan


def _scripted_steps(plan: list[tuple[np.ndarray, float, str]], arm: Any, max_delta: float):
    """Yields (target [3], grip) one action at a time along a scripted plan (hand changes as their own step);
    recomputes each leg from wherever the arm is commanded, so random steps in between are recovered from."""
    for xyz, grip, _ in plan:
        if grip != arm.grip_command:
            yield arm.commanded.copy(), grip
        while np.abs(np.asarray(xyz) - arm.commanded).max() > 1e-6:
            yield split_move(arm.commanded, np.asarray(xyz, dtype=np.float64), max_delta)[0], grip


def physics_episode(arm: Any, cfg: PhysicsGenConfig, index: int, path: Path, tmp: Path) -> Path:
    """Records episode `index` into tmp, then renames it to path."""
    from robot.simtools.physics import Layout
    from vjepa_fast.data.episodes import EpisodeWriter

    rng = np.random.default_rng([cfg.seed, index])
    layout = Layout.draw(rng, region=REGION)
    arm.reset(layout)
    arm.teleport(READY + rng.uniform([-0.06, -0.10, -0.05], [0.06, 0.10, 0.05]))
    kind = KINDS[int(rng.choice(len(KINDS), p=np.asarray(cfg.mix) / sum(cfg.mix)))]
    cube = arm.object_xyz(CUBE)
    target = None
    if kind in ("push", "pick_place"):
        dist = rng.uniform(0.06, 0.12) if kind == "push" else rng.uniform(0.10, 0.20)
        ang = rng.uniform(-np.pi, np.pi)
        target = tuple(np.clip(cube[:2] + dist * np.array([np.cos(ang), np.sin(ang)]),
                               [REGION[0][0], REGION[1][0]], [REGION[0][1], REGION[1][1]]))
    if kind == "explore":
        script = None
    else:
        plan = regrasp_plan(cube, rng, cfg.noise) if kind == "regrasp" else scripted_plan(kind, cube, target, rng,
                                                                                           cfg.noise)
        script = _scripted_steps(plan, arm, cfg.max_delta)
    if tmp.exists():
        shutil.rmtree(tmp)
    extra = {"source": "robot/simtools/generate_physics.py", "seed": cfg.seed, "index": index, "kind": kind,
             "layout": {k: list(v) for k, v in layout.objects.items()}, "target": None if target is None else
             [float(v) for v in target], "epsilon": cfg.epsilon, "noise": cfg.noise, "max_delta": cfg.max_delta,
             "generator": {"physics": "franky-sim MuJoCo, in-process (robot/simtools/physics.py)", "size": cfg.size}}
    writer = EpisodeWriter(tmp, fps=cfg.fps, camera=f"sim:{cfg.camera}", extra=extra)
    aim = _aim(arm, rng)
    random_steps = 0
    objects: dict[str, list[list[float]]] = {name: [] for name in layout.objects}
    try:
        for step in range(cfg.steps + 1):
            frame, state = arm.render(), arm.state()
            for name, track in objects.items():  # per frame, for probes of what the latents hold
                track.append([round(float(v), 5) for v in arm.object_xyz(name)])
            if step == cfg.steps:
                writer.append(frame, state, None)
                break
            nxt = next(script, None) if script is not None else None
            if nxt is None or rng.random() < cfg.epsilon:
                if rng.random() < 0.25:
                    aim = _aim(arm, rng)
                nxt = _explore_step(arm, rng, aim, cfg.max_delta)
                random_steps += 1
            target_xyz, grip = nxt
            before, grip_before = arm.commanded.copy(), arm.grip_command
            target_xyz, _ = arm.target_for(np.r_[np.asarray(target_xyz) - before, 0.0, 0.0, 0.0, 0.0])
            arm.move_to(target_xyz, grip)
            writer.append(frame, state, np.r_[target_xyz - before, 0.0, 0.0, 0.0, grip - grip_before])
        writer.extra["random_steps"] = random_steps
        writer.extra["cube_end"] = arm.object_xyz(CUBE).tolist()
        writer.extra["objects_xyz"] = objects
        writer.close(encode_mp4=cfg.video)
    except BaseException:
        writer.close()
        raise
    return publish_episode(tmp, path)


def make_physics_arm(cfg: PhysicsGenConfig) -> Any:
    from robot.simtools.physics import PhysicsArm

    return PhysicsArm(cfg.camera, cfg.size)


def generate_physics(out_dir: str | Path, cfg: PhysicsGenConfig, *, workers: int = 2,
                     progress: bool = True) -> list[Path]:
    """Writes cfg.episodes episodes into out_dir (skipping complete ones); returns their paths."""
    return run_episodes(out_dir, cfg, cfg.episodes, make_physics_arm, physics_episode, workers=workers,
                        progress=progress, desc="generate-physics")


def main(argv: list[str] | None = None) -> int:
    try:
        a, cfg = generator_args(generator_parser(PhysicsGenConfig, __doc__), argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"generate_physics: error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        paths = generate_physics(a.out, cfg, workers=a.workers)
    except KeyboardInterrupt:
        print("generate_physics: interrupted: complete episodes are kept; run again to resume", file=sys.stderr)
        return 130
    wall = time.monotonic() - t0
    print(f"generate_physics: {len(paths)} episodes x {cfg.steps} actions in {a.out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
