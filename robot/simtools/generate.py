#!/usr/bin/env python3
"""Random-exploration episodes rendered straight from the simulator's MuJoCo model, without the 1 kHz protocol.

    python robot/simtools/generate.py --out data/sim_gen --episodes 1700 --steps 12 --workers 2

robot/collect.py's data (scene, camera, collection box, move distribution, actions, episode format), ~16x faster
(2 workers on the 2-core machine: 33.6 transitions/s against collect.py's 2.1): instead of driving the arm
through franky-sim's server in robot time, the arm is moved kinematically with franky-sim's OWN Cartesian pose
IK (`BaseRobot.cartesian_position_control`: 5 damped least-squares iterations per command from the current q,
pinocchio, the "tcp" frame; run unchanged on a q we hold), along the straight move cut into 2 mm commands (or,
`--path ruckig`, the control loop's own 1 ms jerk-limited trajectory). The new q is the IK's joint target, which
is what the live controller servoes to: measured over 24-move sequences against franky-sim + our 1 kHz loop, the
generator's q stays within 1.3e-3 rad of the live IK target q_d (null space included); the live arm's measured q
itself lags q_d by up to 2.4e-2 rad 0.15 s after a move (what robot/collect.py records) and sags ~2e-3 rad at
rest.

Frames come from `robot.camera.SceneRenderer`, the sim camera process's own code path, on the scene XML that
robot/sim.py builds for the server (`scene_xml()`), so a generated frame equals the live frame for the same
qpos (tests/test_generate.py: 0 pixels differ). The rest of the scene stands as MujocoSimulator starts it
(objects where the XML puts them, fingers at the initial 0.04 m). The 7-D state is franky-sim's O_T_EE for
the q (its own kinematics, float64; the server sends float32) as (xyz, extrinsic-xyz Euler, gripper); the
gripper state is read from the finger opening as robot/collect.py does (0.5: the sim's initial width).

Episodes: each starts from franky-sim's initial joint configuration (episodes do not depend on each other,
unlike robot/collect.py's chained ones), moves unrecorded to a random start in the collection box (in
collection-safety steps, as collect.py), then takes `steps` random moves (xyz uniform in +-max_delta per axis,
kept in the box; rotation and gripper held), one frame + state after each move: steps + 1 frames, actions =
commanded target - commanded position before (none for the last step). A start or move the controller could
not follow (out of reach with the hand pointing down: the box's far-high corner, ~9% of it) is drawn again
(~5% of moves; counted in meta extra.generator.redrawn). Episode i draws from the seed (seed, i) as
robot/collect.py's episode i does: the same start and moves up to the first redraw.

Atomic and resumable per episode: written into `.OUT.partial/ep_NNNNNN` beside OUT and renamed into OUT once
complete; a re-run skips complete episodes and redoes a torn one. Parallel over `--workers` processes.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from robot.collect import collection_box, collection_safety, episode_dir, publish_episode
from robot.sim import DEFAULT_CAMERA, check_camera
from robot.simtools.kinematic_arm import PATHS, REST_TOL, KinematicArm, pose_state  # noqa: F401 - public here too
from vjepa_fast.config import Flag, add_config_arguments, config_from_args

_LOG = logging.getLogger("generate")
MAX_DRAWS = 100  # redraws of a start or a move that is out of the arm's reach


@dataclass(frozen=True)
class GenerateConfig:
    """Random-exploration episodes of `robot/simtools/generate.py` (its flags are generated from here)."""

    episodes: int = 1700  # episodes to write
    steps: int = 12  # random moves per episode (frames = steps + 1)
    max_delta: float = 0.05  # largest move per axis per step, m (robot/collect.py's)
    box_half: tuple[float, float, float] = (0.12, 0.15, 0.12)  # half extent of the collection box around the home pose, m
    box_z_min: float = 0.15  # lowest end-effector z, m
    seed: int = 0  # episode i draws from (seed, i)
    camera: str = DEFAULT_CAMERA  # which of the scene's cameras renders (robot/sim.py CAMERAS)
    size: int = 256  # frame size, px
    fps: float = 4.0  # nominal rate written to the episode meta (as collect.py and the MPC log)
    # How a move is cut into IK commands: "step" = straight segments of `ik_step` m; "ruckig" = the control loop's
    # own jerk-limited trajectory, one IK call per 1 ms cycle (~300 per 5 cm move, 2x slower in all). Measured
    # over 24 moves against the live controller's IK target q_d: step 2 mm within 1.3e-3 rad, ruckig within
    # 2.2e-3 rad (the live IK starts from the lagging measured q, which neither reproduces): step it is.
    path: str = "step"  # IK commands per move: step = straight steps of ik_step, ruckig = the control loop's own 1 ms trajectory (2x slower)
    ik_step: float = 0.002  # m per IK command with path = step
    video: bool = False  # pack each episode's frames into frames.mp4 (lossy MPEG-4, ~6x smaller) instead of PNGs

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.steps < 1:
            raise ValueError(f"episodes and steps must be >= 1, got {self.episodes}, {self.steps}")
        if not 0 < self.max_delta <= 0.1:
            raise ValueError(f"max_delta must be in (0, 0.1] m, got {self.max_delta}")
        if len(self.box_half) != 3 or not all(0 < h <= 0.3 for h in self.box_half):
            raise ValueError(f"box_half must be 3 half extents in (0, 0.3] m, got {self.box_half}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        check_camera(self.camera)
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024] px, got {self.size}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")
        if not 1e-4 <= self.ik_step <= 0.02:
            raise ValueError(f"ik_step must be in [1e-4, 0.02] m, got {self.ik_step}")


# ------------------------------------------------------------------------------------------ the scene


class SimScene:
    """The simulator's MuJoCo scene without its physics: a kinematic arm, the joint state (qpos) it stands
    for, and the sim camera's renderer.

        scene = SimScene("scene_cam", 256)
        scene.arm.move_to(xyz); frame = scene.render(); state = scene.state()
    """

    def __init__(self, camera: str = DEFAULT_CAMERA, size: int = 256, *, path: str = "step",
                 ik_step: float = 0.002) -> None:
        import mujoco
        from franky_sim.constants import DEFAULT_HAND_INITIAL_WIDTH

        from robot.camera import SceneRenderer
        from robot.safety import SafetyConfig
        from robot.sim import scene_xml

        check_camera(camera)
        self.renderer = SceneRenderer.from_string(scene_xml(), size, camera)
        model = self.renderer.model

        def joints(names: list[str]) -> list[int]:
            ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in names]
            if min(ids) < 0:
                raise RuntimeError(f"the scene lacks a joint of {names}")
            return ids

        arm_joints = joints([f"robot0_fr3_joint{i}" for i in range(1, 8)])
        self.arm_qpos = model.jnt_qposadr[arm_joints]
        self.finger_qpos = model.jnt_qposadr[joints(["robot0_finger_joint1", "robot0_finger_joint2"])]
        # The live physics stops the joints at the model's ranges: a move past one is one the arm cannot make.
        self.arm = KinematicArm(path=path, ik_step=ik_step, joint_range=model.jnt_range[arm_joints])
        # The rest of the scene as MujocoSimulator starts it (add_robot's defaults): objects where the XML puts
        # them, each finger at half the initial hand width.
        self.base_qpos = model.qpos0.copy()
        self.base_qpos[self.finger_qpos] = DEFAULT_HAND_INITIAL_WIDTH / 2.0
        self.gripper_width_open = SafetyConfig().gripper_width_open

    def qpos(self, q: np.ndarray | None = None) -> np.ndarray:
        """The scene's qpos [nq] with the arm at q (default: the arm's current q)."""
        out = self.base_qpos.copy()
        out[self.arm_qpos] = self.arm.q if q is None else q
        return out

    def gripper(self) -> float:
        """Gripper state in [0, 1] (0 open) from the finger width, as robot/collect.py reads the gripper."""
        width = float(self.base_qpos[self.finger_qpos].sum())
        return float(min(1.0, max(0.0, 1.0 - width / self.gripper_width_open)))

    def state(self) -> np.ndarray:
        """7-D state [7] of the arm now: franky-sim's O_T_EE for its q, and the gripper."""
        return pose_state(self.arm.pose(), self.gripper())

    def render(self, qpos: np.ndarray | None = None) -> np.ndarray:
        """Frame uint8 [size, size, 3] RGB of qpos [nq] (default: the scene with the arm's current q)."""
        return self.renderer.render(self.qpos() if qpos is None else qpos)

    def close(self) -> None:
        self.renderer.close()


# ------------------------------------------------------------------------------------------ episodes


def is_complete(path: Path) -> bool:
    """An episode folder whose meta.json says complete (what a finished EpisodeWriter leaves)."""
    import json

    try:
        return bool(json.loads((path / "meta.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def generate_episode(scene: SimScene, cfg: GenerateConfig, index: int, path: Path, tmp: Path) -> Path:
    """Renders episode `index` into `tmp`, then renames it to `path` (atomic per episode). `tmp` must be on the
    same file system and outside the episode tree (a torn episode is never listed)."""
    from robot.safety import safe_target
    from vjepa_fast.data.episodes import EpisodeWriter

    safety = collection_safety(cfg.max_delta)
    rng = np.random.default_rng([cfg.seed, index])
    arm = scene.arm
    arm.reset()
    home = arm.commanded.copy()
    lo, hi = collection_box(home, cfg.box_half, cfg.box_z_min, safety)
    redrawn_starts = redrawn_moves = 0
    for _ in range(MAX_DRAWS):
        start = rng.uniform(lo, hi)
        here, reached = home, True
        for _ in range(100):  # unrecorded, in safe steps as robot/collect.py reaches its start
            if np.linalg.norm(start - here) < 1e-4:
                break
            here, _ = safe_target(here, np.r_[start - here, 0.0, 0.0, 0.0, 0.0], safety)
            if not arm.move_to(here):
                reached = False
                break
        if reached:
            break
        redrawn_starts += 1
        arm.reset()
    else:
        raise RuntimeError(f"episode {index}: no reachable start in {MAX_DRAWS} draws in the box {lo} - {hi}")
    if tmp.exists():
        shutil.rmtree(tmp)
    extra = {"source": "robot/simtools/generate.py", "seed": cfg.seed, "index": index, "max_delta": cfg.max_delta,
             "box_lo": lo.tolist(), "box_hi": hi.tolist(),
             "generator": {"ik": "franky_sim BaseRobot.cartesian_position_control, kinematic", "path": cfg.path,
                           "ik_step": cfg.ik_step if cfg.path == "step" else None,
                           "limits": {"max_velocity": arm.max_velocity, "max_acceleration": arm.max_acceleration,
                                      "max_jerk": arm.max_jerk},
                           "start_q": arm.initial_q.tolist(), "size": cfg.size, "video": cfg.video}}
    writer = EpisodeWriter(tmp, fps=cfg.fps, camera=f"sim:{cfg.camera}", extra=extra)
    try:
        commanded = here.copy()
        for step in range(cfg.steps + 1):
            frame, state = scene.render(), scene.state()
            if step == cfg.steps:
                writer.append(frame, state, None)
                break
            for _ in range(MAX_DRAWS):  # a move out of the arm's reach is drawn again
                delta = rng.uniform(-cfg.max_delta, cfg.max_delta, size=3)
                wanted = np.clip(commanded + delta, lo, hi)
                target, _ = safe_target(commanded, np.r_[wanted - commanded, 0.0, 0.0, 0.0, state[6]], safety)
                if arm.move_to(target):
                    break
                redrawn_moves += 1
            else:
                raise RuntimeError(f"episode {index}: no reachable move from {commanded} in {MAX_DRAWS} draws")
            writer.append(frame, state, np.r_[target - commanded, 0.0, 0.0, 0.0, 0.0])
            commanded = target
        writer.extra["generator"]["redrawn"] = {"starts": redrawn_starts, "moves": redrawn_moves}
        writer.close(encode_mp4=cfg.video)
    except BaseException:
        writer.close()
        raise
    return publish_episode(tmp, path)


_WORKER: dict[str, Any] = {}


def _worker_init(make_scene: Any, episode: Any, cfg: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    import torch

    torch.set_num_threads(1)
    _WORKER.update(scene=make_scene(cfg), episode=episode, cfg=cfg)


def _worker_episode(job: tuple[int, str, str]) -> int:
    index, path, tmp = job
    _WORKER["episode"](_WORKER["scene"], _WORKER["cfg"], index, Path(path), Path(tmp))
    return index


def make_sim_scene(cfg: GenerateConfig) -> SimScene:
    return SimScene(cfg.camera, cfg.size, path=cfg.path, ik_step=cfg.ik_step)


def run_episodes(out_dir: str | Path, cfg: Any, episodes: int, make_scene: Any, episode: Any, *, workers: int = 2,
                 progress: bool = True, desc: str = "generate") -> list[Path]:
    """Writes `episodes` episodes into out_dir/ep_NNNNNN, skipping complete ones, with `workers` processes (1: in
    this process); returns the paths of all of them. make_scene(cfg) builds a worker's scene (it has .close());
    episode(scene, cfg, index, path, tmp) writes episode `index` into tmp and renames it to path. Both must be
    module-level functions (they travel to spawned workers)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = [episode_dir(out, i) for i in range(episodes)]
    todo = [i for i in range(episodes) if not is_complete(paths[i])]
    if not todo:
        _LOG.info("all %d episodes already in %s", episodes, out)
        return paths
    # Beside the output folder, not in it: `find_episodes` lists every meta.json under the output folder.
    partial = out.with_name(f".{out.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(paths[i]), str(partial / paths[i].name)) for i in todo]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, initial=episodes - len(todo), desc=desc, unit="ep")
    try:
        if workers == 1:
            scene = make_scene(cfg)
            try:
                for index, path, tmp in jobs:
                    episode(scene, cfg, index, Path(path), Path(tmp))
                    if bar is not None:
                        bar.update(1)
            finally:
                scene.close()
        else:
            ctx = mp.get_context("spawn")  # fresh processes: no EGL context or torch threads inherited
            with ctx.Pool(min(workers, len(jobs)), initializer=_worker_init,
                          initargs=(make_scene, episode, cfg)) as pool:
                for _ in pool.imap_unordered(_worker_episode, jobs):
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return paths


def generate(out_dir: str | Path, cfg: GenerateConfig, *, workers: int = 2, progress: bool = True) -> list[Path]:
    """Renders cfg.episodes episodes into out_dir/ep_NNNNNN (skipping complete ones) with `workers` processes
    (1: in this process); returns the paths of all cfg.episodes episodes."""
    return run_episodes(out_dir, cfg, cfg.episodes, make_sim_scene, generate_episode, workers=workers,
                        progress=progress)


def generator_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """The command line of an episode generator: --out, --workers, and the config's flags, generated (--config,
    --set, --print-config; --sim-camera and --mp4 kept for camera and video)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder of episodes (ep_000000, ...); required unless --print-config")
    p.add_argument("--workers", type=int, default=2, help="processes (1: no pool)")
    p.add_argument("-v", "--verbose", action="store_true")
    add_config_arguments(p, cls, flags=True, choices={"path": PATHS},
                         aliases=[Flag("--sim-camera", "camera"),
                                  Flag("--mp4", "video", const=True, help="store frames as frames.mp4 (video = true)")])
    return p


def generator_args(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any]:
    """(arguments, config) of a generator_parser command line; prints the config and exits on --print-config;
    ValueError on a bad value."""
    a = p.parse_args(argv)
    try:
        cfg = config_from_args(a)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if a.out is None:
        raise ValueError("--out is required")
    if a.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {a.workers}")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return a, cfg


def main(argv: list[str] | None = None) -> int:
    try:
        a, cfg = generator_args(generator_parser(GenerateConfig, __doc__), argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        paths = generate(a.out, cfg, workers=a.workers)
    except KeyboardInterrupt:
        print("generate: interrupted: complete episodes are kept; run again to resume", file=sys.stderr)
        return 130
    except ValueError as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2
    wall = time.monotonic() - t0
    print(f"generate: {len(paths)} episodes x {cfg.steps} moves in {a.out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
