#!/usr/bin/env python3
"""Random-exploration data collection on the embedded simulator, in our episode format (AC training data).

    python robot/collect.py --out data/sim_random --episodes 40 --steps 12

Each episode gets a fresh franky-sim server, camera and 1 kHz control loop (the arm starts from the initial joint
state; `--keep-sim` keeps one for all, faster but the posture drifts). Each episode first moves the
arm (unrecorded) to a random start inside the collection box around the home pose, then takes `steps` random
end-effector moves: xyz deltas uniform in +-`max_delta` per axis, kept inside the box (and, through the
safety layer, inside the workspace and under `max_step`), rotation held, gripper held. After every move the
loop waits until the arm settled and a frame rendered after that moment exists, then logs
(frame, 7-D state from the measured pose, executed action = commanded target - commanded pose before).
An episode has steps + 1 frames (the last has no action).

Resumable and atomic per episode: an episode is recorded into `.OUT.partial/ep_NNNNNN` (beside OUT, so a
torn episode is never listed as training data) and renamed to `OUT/ep_NNNNNN` once complete; a re-run skips
the complete episodes and redoes a torn one. Episode i draws its start and moves from the seed (seed, i), so
a resumed run records what an uninterrupted one would have planned.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from robot.sim import CAMERAS, DEFAULT_CAMERA, check_camera

_LOG = logging.getLogger("collect")


@dataclass(frozen=True)
class CollectConfig:
    episodes: int = 40
    steps: int = 12
    max_delta: float = 0.05  # m per axis per step
    box_half: tuple[float, float, float] = (0.12, 0.15, 0.12)  # collection box around the home pose, m
    box_z_min: float = 0.15  # stay above the cubes (top at 0.07 m)
    seed: int = 0
    settle_timeout: float = 20.0
    fps: float = 4.0  # nominal rate written to the episode meta (as the MPC logs)
    camera_fps: float = 15.0
    use_gripper: bool = True
    camera: str = DEFAULT_CAMERA  # which of robot/sim.py CAMERAS records
    fresh_sim: bool = True  # restart the simulator before every episode (each starts from the initial joint state)

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.steps < 1:
            raise ValueError(f"episodes and steps must be >= 1, got {self.episodes}, {self.steps}")
        if not 0 < self.max_delta <= 0.1:
            raise ValueError(f"max_delta must be in (0, 0.1] m, got {self.max_delta}")
        check_camera(self.camera)


def episode_dir(out: Path, index: int) -> Path:
    return out / f"ep_{index:06d}"


def collection_safety(max_delta: float):
    """The safety limits of collection: faster than the MPC defaults (still half the FR3 limits at most), the
    moves are short; `max_step` lets every move of +-max_delta per axis through unscaled."""
    from robot.safety import SafetyConfig

    return SafetyConfig(max_step=float(np.sqrt(3) * max_delta) + 1e-6, max_velocity=0.4, max_acceleration=2.5,
                        max_jerk=50.0, planner_timeout=120.0)


def collection_box(home: np.ndarray, box_half: tuple[float, float, float], box_z_min: float,
                   safety) -> tuple[np.ndarray, np.ndarray]:
    """(lo [3], hi [3]): the box around the home position [3] that starts and moves stay in, inside the
    workspace and above z = box_z_min."""
    half = np.asarray(box_half, dtype=np.float64)
    lo = np.maximum(home - half, np.asarray(safety.workspace_min))
    lo[2] = max(lo[2], box_z_min)
    hi = np.minimum(home + half, np.asarray(safety.workspace_max))
    return lo, hi


def _fresh_frame(camera, since: float, timeout: float = 3.0) -> np.ndarray:
    """The newest frame rendered after monotonic time `since` (the camera renders at its own rate)."""
    deadline = time.monotonic() + timeout
    while True:
        frame, age = camera.latest()
        if time.monotonic() - age > since:
            return frame
        if time.monotonic() > deadline:
            raise TimeoutError(f"no camera frame newer than the settled arm within {timeout} s")
        time.sleep(0.01)


def _observe(control, camera, gripper, safety, settle_pause: float = 0.15):
    """(frame, state [7] float64, commanded xyz [3]) after the arm came to rest."""
    from robot import shm
    from robot.mpc import state_from_pose

    time.sleep(settle_pause)  # the impedance-controlled measured pose trails the commanded one briefly
    t = time.monotonic()
    frame = _fresh_frame(camera, t)
    status = control.read_status()
    if not control.running:
        raise RuntimeError(f"the control loop stopped: {control.error() or 'status ' + str(status[shm.STATUS])}")
    grip = 0.0
    if gripper is not None:
        grip = float(min(1.0, max(0.0, 1.0 - float(gripper.read_once().width) / safety.gripper_width_open)))
    state = state_from_pose(status[shm.MEASURED_T], grip).double().numpy()
    commanded = status[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
    return frame, state, commanded


def _move(control, target: np.ndarray, grip: float, timeout: float) -> None:
    control.send_target(target, grip)
    if not control.wait_settled(timeout):
        why = control.error() or ("the control loop stopped" if not control.running else f"timeout {timeout} s")
        raise RuntimeError(f"the arm did not reach {np.round(target, 4).tolist()}: {why}")


def record_episode(path: Path, control, camera, gripper, safety, cfg: CollectConfig, home: np.ndarray,
                   index: int, tmp: Path) -> Path:
    """Records episode `index` into `tmp`, then renames it to `path` once complete (atomic per episode).
    `tmp` must be on the same file system and outside the episode tree (a torn episode is never listed)."""
    from robot import shm
    from robot.safety import safe_target
    from vjepa_fast.data.episodes import EpisodeWriter

    rng = np.random.default_rng([cfg.seed, index])
    lo, hi = collection_box(home, cfg.box_half, cfg.box_z_min, safety)
    start = rng.uniform(lo, hi)
    # The start move is not recorded: cut it into safe steps (safety.max_step each).
    here = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
    for _ in range(100):
        if np.linalg.norm(start - here) < 1e-4:
            break
        here, _ = safe_target(here, np.r_[start - here, 0.0, 0.0, 0.0, 0.0], safety)
        _move(control, here, 0.0, cfg.settle_timeout)
    if tmp.exists():
        shutil.rmtree(tmp)
    writer = EpisodeWriter(tmp, fps=cfg.fps, camera=f"sim:{cfg.camera}",
                           extra={"source": "robot/collect.py", "seed": cfg.seed, "index": index,
                                  "max_delta": cfg.max_delta, "box_lo": lo.tolist(), "box_hi": hi.tolist()})
    try:
        t0 = time.monotonic()
        for step in range(cfg.steps + 1):
            frame, state, commanded = _observe(control, camera, gripper, safety)
            if step == cfg.steps:
                writer.append(frame, state, None, timestamp=time.monotonic() - t0)
                break
            delta = rng.uniform(-cfg.max_delta, cfg.max_delta, size=3)
            wanted = np.clip(commanded + delta, lo, hi)
            target, grip = safe_target(commanded, np.r_[wanted - commanded, 0.0, 0.0, 0.0, state[6]], safety)
            action = np.r_[target - commanded, 0.0, 0.0, 0.0, 0.0]
            writer.append(frame, state, action, timestamp=time.monotonic() - t0)
            _move(control, target, grip, cfg.settle_timeout)
        writer.close()
    except BaseException:
        writer.close()
        raise
    return publish_episode(tmp, path)


def publish_episode(tmp: Path, path: Path) -> Path:
    """Renames a complete episode from its partial folder into place (replacing a torn or older one)."""
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def collect(out_dir: str | Path, cfg: CollectConfig, *, progress: bool = True,
            work_dir: str | Path | None = None) -> list[Path]:
    """Records cfg.episodes episodes into out_dir/ep_NNNNNN (skipping complete ones); returns their paths."""
    from robot.rig import Rig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(cfg.episodes) if not (episode_dir(out, i) / "meta.json").is_file()]
    paths = [episode_dir(out, i) for i in range(cfg.episodes)]
    if not todo:
        _LOG.info("all %d episodes already in %s", cfg.episodes, out)
        return paths
    safety = collection_safety(cfg.max_delta)
    # Beside the output folder, not in it: `find_episodes` lists every meta.json under the output folder.
    work = Path(work_dir) if work_dir is not None else out.with_name(f".{out.name}.work")
    partial = out.with_name(f".{out.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    bar = None

    def fresh_rig() -> Rig:  # Rig.start closes what it started if it fails
        return Rig(work, safety, sim=True, camera_fps=cfg.camera_fps, gripper=cfg.use_gripper, max_log_seconds=60.0,
                   sim_camera=cfg.camera).start()

    # Every episode starts from the simulator's initial joint state (a fresh server, as a real rig homes the arm in
    # joint space between episodes): franky-sim's IK is path dependent, and after a few episodes near the edge of
    # the box the elbow had flipped and the hand turned ~90 degrees about its axis while the commanded pose (the
    # logged state) still said "pointing down". Frames of such an arm taught the predictor wrong dynamics: a
    # predictor trained on 40 such episodes reached 11 of 20 unseen goals, one on generated episodes (the
    # initial posture each) 18 of 20 (benchmarks/RESULTS.md).
    rig = fresh_rig()
    on_rig = 0
    try:
        home = rig.commanded_xyz()
        _LOG.info("home end-effector position %s", np.round(home, 4).tolist())
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.episodes, initial=cfg.episodes - len(todo), desc="collect", unit="ep")
        for i in todo:
            if cfg.fresh_sim and on_rig > 0:
                rig.close()
                rig = fresh_rig()
                on_rig = 0
            on_rig += 1
            record_episode(episode_dir(out, i), rig.control, rig.camera, rig.gripper, safety, cfg, home, i,
                           partial / episode_dir(out, i).name)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        rig.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of episodes (ep_000000, ...)")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--steps", type=int, default=12, help="random moves per episode (frames = steps + 1)")
    p.add_argument("--max-delta", type=float, default=0.05, help="largest move per axis per step, m")
    p.add_argument("--box-half", nargs=3, type=float, default=(0.12, 0.15, 0.12),
                   help="half extent of the collection box around the home pose, m")
    p.add_argument("--box-z-min", type=float, default=0.15, help="lowest end-effector z, m (cubes below)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-gripper", action="store_true", help="do not connect to the gripper (state 0)")
    p.add_argument("--sim-camera", default=DEFAULT_CAMERA, metavar="NAME",
                   help=f"which of the scene's cameras records ({', '.join(CAMERAS)}; default {DEFAULT_CAMERA})")
    p.add_argument("--keep-sim", action="store_true",
                   help="one simulator for all episodes (faster; the arm's posture then carries over and can drift "
                        "into a flipped elbow: the default restarts it per episode)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        cfg = CollectConfig(episodes=a.episodes, steps=a.steps, max_delta=a.max_delta, box_half=tuple(a.box_half),
                            box_z_min=a.box_z_min, seed=a.seed, use_gripper=not a.no_gripper, camera=a.sim_camera,
                            fresh_sim=not a.keep_sim)
    except ValueError as exc:
        print(f"collect: error: {exc}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        paths = collect(a.out, cfg)
    except KeyboardInterrupt:
        print("collect: interrupted: complete episodes are kept; run again to resume", file=sys.stderr)
        return 130
    print(f"collect: {len(paths)} episodes x {cfg.steps} steps in {a.out} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
