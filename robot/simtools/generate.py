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
from robot.sim import CAMERAS, DEFAULT_CAMERA, check_camera

_LOG = logging.getLogger("generate")
PATHS = ("ruckig", "step")
MAX_DRAWS = 100  # redraws of a start or a move that is out of the arm's reach
REST_TOL = 1e-4  # m: franky-sim's IK stops iterating below a pose error of 1e-4


@dataclass(frozen=True)
class GenerateConfig:
    episodes: int = 1700
    steps: int = 12
    max_delta: float = 0.05  # m per axis per move (robot/collect.py's)
    box_half: tuple[float, float, float] = (0.12, 0.15, 0.12)  # collection box around the home pose, m
    box_z_min: float = 0.15
    seed: int = 0
    camera: str = DEFAULT_CAMERA
    size: int = 256
    fps: float = 4.0  # nominal rate written to the episode meta (as collect.py and the MPC log)
    # How a move is cut into IK commands: "step" = straight segments of `ik_step` m; "ruckig" = the control loop's
    # own jerk-limited trajectory, one IK call per 1 ms cycle (~300 per 5 cm move, 2x slower in all). Measured
    # over 24 moves against the live controller's IK target q_d: step 2 mm within 1.3e-3 rad, ruckig within
    # 2.2e-3 rad (the live IK starts from the lagging measured q, which neither reproduces): step it is.
    path: str = "step"
    ik_step: float = 0.002
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


# ------------------------------------------------------------------------------------------ kinematics


def _ik_robot_class() -> type:
    from franky_sim.base_simulator import InnerRobotState
    from franky_sim.mujoco_simulator import FrankaMujocoRobot

    class IKRobot(FrankaMujocoRobot):
        """franky-sim's FR3 whose Cartesian pose controller stops after the IK: `cartesian_position_control`
        (franky-sim's code, unchanged) reads the joint state from `self.q` and hands back the joint target it
        would have servoed to (`self.target_q`) instead of torques."""

        def __init__(self) -> None:
            super().__init__()  # the defaults MujocoSimulator.add_robot() uses
            self.q = np.array(self.initial_q, dtype=np.float64)
            self.target_q = self.q.copy()

        def _get_state(self) -> Any:
            return InnerRobotState(q=tuple(self.q), dq=(0.0,) * 7, tau_j=(0.0,) * 7)

        def joint_position_control(self, target_q: Any, has_new_command: bool = True) -> None:
            self.target_q = np.array(target_q, dtype=np.float64)

    return IKRobot


class KinematicArm:
    """The FR3 moved without physics: each commanded pose goes through franky-sim's Cartesian IK from the
    current q, and the joint target becomes the new q (the controller's tracking lag left out).

        arm = KinematicArm()
        ok = arm.move_to(np.array([0.6, 0.05, 0.45]))  # [3] m; orientation held at the start pose's
        arm.q, arm.pose()                               # [7] rad, [4, 4] franky-sim's O_T_EE

    A move the controller could not follow (the IK loses the commanded pose by more than `track_tol` at some
    cycle or is more than REST_TOL short of the target at rest: the target is out of reach with the hand
    pointing down; or a joint leaves `joint_range`) is undone and `move_to` returns False. On the live
    simulator such a move "settles" on the command while the arm lags by centimetres, and the arm comes back
    with a different elbow posture (joint 4 at its limit).
    """

    def __init__(self, q0: np.ndarray | None = None, *, path: str = "step", ik_step: float = 0.002,
                 joint_range: np.ndarray | None = None, track_tol: float = 1e-3) -> None:
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        self._robot = _ik_robot_class()()
        self.path, self.ik_step, self.track_tol = path, float(ik_step), float(track_tol)
        self.joint_range = None if joint_range is None else np.asarray(joint_range, dtype=np.float64).reshape(7, 2)
        limits = collection_safety(0.05)
        self.max_velocity, self.max_acceleration, self.max_jerk = (limits.max_velocity, limits.max_acceleration,
                                                                   limits.max_jerk)
        self.reset(q0)

    @property
    def initial_q(self) -> np.ndarray:
        """franky-sim's initial joint configuration (the server starts the arm there)."""
        return np.array(self._robot.initial_q, dtype=np.float64)

    def reset(self, q0: np.ndarray | None = None) -> None:
        """Put the arm at q0 (default: franky-sim's initial q); the held orientation becomes the pose's there
        (as the control loop holds the orientation it measured at start)."""
        import pinocchio as pin

        q = self.initial_q if q0 is None else np.array(q0, dtype=np.float64)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q0 must be 7 finite joint angles, got {q0!r}")
        self.q = q
        start = self.pose()
        self._rotation = start[:3, :3].copy()
        self.commanded = start[:3, 3].copy()
        quat = pin.Quaternion(self._rotation)
        # The server turns the commanded O_T_EE into [x, y, z, qx, qy, qz, qw] just so.
        self._quat = np.array([quat.x, quat.y, quat.z, quat.w])
        self.ik_calls = 0

    def pose(self, q: np.ndarray | None = None) -> np.ndarray:
        """franky-sim's O_T_EE for q (default: the current q): [4, 4] float64, what the server reports."""
        return np.array(self._robot.kinematics(self.q if q is None else np.asarray(q, dtype=np.float64)).homogeneous)

    def command(self, xyz: np.ndarray) -> float:
        """One control cycle: the commanded pose (xyz [3], held orientation) through franky-sim's IK; returns
        the distance (m) between the commanded and the reached position."""
        self._robot.q = self.q
        self._robot.cartesian_position_control(np.r_[xyz, self._quat], None)
        self.q = self._robot.target_q
        self.ik_calls += 1
        return float(np.linalg.norm(self._robot.kinematics(self.q).translation - xyz))

    def trajectory(self, target: np.ndarray) -> np.ndarray:
        """The commanded positions [T, 3] from the commanded position to `target` [3], both at rest: the
        control loop's 1 ms ruckig cycles, or straight steps of at most ik_step ("step")."""
        start = self.commanded
        if self.path == "step":
            n = max(1, int(np.ceil(np.linalg.norm(target - start) / self.ik_step)))
            return start + (target - start) * (np.arange(1, n + 1) / n)[:, None]
        from ruckig import InputParameter, OutputParameter, Result, Ruckig

        # Exactly robot/control.py's set-up for a new target from rest.
        otg = Ruckig(3, 0.001)
        inp, out = InputParameter(3), OutputParameter(3)
        inp.current_position = start.tolist()
        inp.current_velocity = [0.0, 0.0, 0.0]
        inp.current_acceleration = [0.0, 0.0, 0.0]
        inp.target_position = np.asarray(target, dtype=np.float64).tolist()
        inp.target_velocity = [0.0, 0.0, 0.0]
        inp.max_velocity = [self.max_velocity] * 3
        inp.max_acceleration = [self.max_acceleration] * 3
        inp.max_jerk = [self.max_jerk] * 3
        points = []
        for _ in range(60_000):  # a minute of cycles: far beyond any move in the workspace
            result = otg.update(inp, out)
            if result not in (Result.Working, Result.Finished):
                raise RuntimeError(f"trajectory generation failed: {result}")
            points.append(out.new_position)
            out.pass_to_input(inp)
            if result == Result.Finished:
                break
        return np.asarray(points, dtype=np.float64)

    def move_to(self, target: np.ndarray, max_rest_cycles: int = 200) -> bool:
        """Move the commanded position to `target` [3] along `trajectory`, then keep commanding the target
        until the IK stops changing q (franky-sim's IK leaves q alone once the pose error is < 1e-4; near the
        edge of the reach 5 iterations per cycle are not enough to get there during the move), at most
        `max_rest_cycles` cycles (the live loop commands the target for >= 150 ms before collect.py records).
        False (and the arm as before) when the controller could not have followed."""
        target = np.asarray(target, dtype=np.float64)
        q_before = self.q.copy()
        lo, hi = (None, None) if self.joint_range is None else (self.joint_range[:, 0], self.joint_range[:, 1])

        def follows(xyz: np.ndarray) -> bool:
            return self.command(xyz) <= self.track_tol and (lo is None or bool(np.all((self.q >= lo) & (self.q <= hi))))

        ok = all(follows(xyz) for xyz in self.trajectory(target))
        for _ in range(max_rest_cycles if ok else 0):
            q = self.q
            ok = follows(target)
            if not ok or np.array_equal(q, self.q):
                break
        # At rest the IK must have converged (its own threshold): a target just beyond the reach leaves the arm
        # stretched and short of it by up to track_tol.
        ok = ok and float(np.linalg.norm(self._robot.kinematics(self.q).translation - target)) <= REST_TOL
        if not ok:
            self.q = q_before
            return False
        self.commanded = target.copy()
        return True


def pose_state(pose: np.ndarray, gripper: float) -> np.ndarray:
    """7-D state [7] float64 (xyz, extrinsic-xyz Euler, gripper) from O_T_EE [4, 4]: robot/mpc.py's
    `state_from_pose` without its cast to float32."""
    import torch

    from vjepa_fast.robotics.pose import matrix_to_euler_xyz

    euler = matrix_to_euler_xyz(torch.from_numpy(np.ascontiguousarray(pose[:3, :3], dtype=np.float64))).numpy()
    return np.r_[pose[:3, 3], euler, gripper]


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = GenerateConfig()
    p.add_argument("--out", required=True, help="folder of episodes (ep_000000, ...)")
    p.add_argument("--episodes", type=int, default=d.episodes)
    p.add_argument("--steps", type=int, default=d.steps, help="random moves per episode (frames = steps + 1)")
    p.add_argument("--max-delta", type=float, default=d.max_delta, help="largest move per axis per step, m")
    p.add_argument("--box-half", nargs=3, type=float, default=d.box_half,
                   help="half extent of the collection box around the home pose, m")
    p.add_argument("--box-z-min", type=float, default=d.box_z_min, help="lowest end-effector z, m")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--sim-camera", default=DEFAULT_CAMERA, metavar="NAME",
                   help=f"which of the scene's cameras renders ({', '.join(CAMERAS)}; default {DEFAULT_CAMERA})")
    p.add_argument("--size", type=int, default=d.size, help="frame size, px")
    p.add_argument("--path", default=d.path, choices=PATHS,
                   help="IK commands per move: step = straight steps of --ik-step (default), ruckig = the control "
                        "loop's own 1 ms trajectory (2x slower; the arm configurations agree within ~1e-3 rad)")
    p.add_argument("--ik-step", type=float, default=d.ik_step, help="m per IK command with --path step")
    p.add_argument("--mp4", action="store_true",
                   help="store frames as frames.mp4 (lossy MPEG-4, ~6x smaller than PNG)")
    p.add_argument("--workers", type=int, default=2, help="processes (1: no pool)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = GenerateConfig(episodes=a.episodes, steps=a.steps, max_delta=a.max_delta, box_half=tuple(a.box_half),
                             box_z_min=a.box_z_min, seed=a.seed, camera=a.sim_camera, size=a.size, path=a.path,
                             ik_step=a.ik_step, video=a.mp4)
        if a.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {a.workers}")
    except ValueError as exc:
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
