"""The planner process's loop: observe -> encode -> plan -> safety -> send the first action -> repeat.

Scheduled on robot time: after sending a target it waits until the 1 kHz loop reports the commanded pose at
rest on it (robot-time paced, so a slow simulator just makes a step take longer). Every step is logged in our
episode format (frames + 7-D states + commanded actions + robot timestamps: AC training reads it) with a
sidecar `mpc_log.jsonl` (energies, the plan, commanded and measured poses, timings). Whatever happens, the
arm is stopped through the control process and the log up to that point stays readable.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot import shm
from robot.safety import SafetyConfig, check_planner_bound, safe_target

_LOG = logging.getLogger(__name__)
# binary_gripper: a planned gripper change beyond +-this closes / opens the hand. Half a full close: the planned
# gripper is the model's weakest dimension (robot/simtools' gripper sensitivity ~60%), and a lower bar turned its
# noise into a hand that opened and closed on alternate steps.
GRIP_THRESHOLD = 0.5
# Fingers stopped on an object (the gripper state between these: 0 open, 1 closed on nothing; closed on the 5 cm cube
# it reads ~0.39, ~0.2 on a corner) open when the planned change takes them at least RELEASE_COMMIT of the way to open,
# whatever the threshold: the range clip keeps the change >= -state, so from 0.23 a -0.25 bar could never open them.
HOLDING = (0.05, 0.9)
RELEASE_COMMIT = 0.8


def binary_grip(change: float, state: float, command: float, threshold: float,
                release: float = RELEASE_COMMIT) -> float:
    """The hand command (0 open, 1 closed) of a planned gripper change from the gripper state `state` with the hand
    commanded `command` now: closed past +threshold, opened past -threshold, else kept. Holding an object (state in
    HOLDING, release > 0), it opens when change <= -release * state instead: the plan's commitment to letting go,
    measured against how far the hand can open. Where the energy barely tells open from closed the planned change
    hovers near the bar, and a hand on the cube opened on the lift (MANIP_RECIPE.md try 9: -0.27 from 0.39, the cube
    dropped; the releases at the target planned -0.385); held at 0.23, the -0.25 bar was out of the planner's reach
    and the hand never let go. release = 0 is the plain threshold rule."""
    if change > threshold:
        return 1.0
    if release > 0 and HOLDING[0] < state < HOLDING[1]:
        return 0.0 if change <= -release * state else command
    if change < -threshold:
        return 0.0
    return command


class MPCStopped(RuntimeError):
    """The loop stopped before its last step; the message says why (the arm was stopped safely)."""


@dataclass
class StepRecord:
    step: int
    robot_time: float
    wall_time: float
    plan_seconds: float
    energy_predicted: float
    latent_distance: float
    action: list[float]
    target: list[float]
    measured: list[float]
    commanded: list[float]
    frame_age: float
    latency_seconds: float  # frame read -> target sent (encode + plan + safety)
    ee_distance_to_goal: float | None = None


@dataclass
class MPCSummary:
    steps: int = 0
    reason: str = "finished"
    ok: bool = True
    records: list[StepRecord] = field(default_factory=list)
    log_dir: str = ""
    # Measured after the last action settled (records[-1] holds the distance BEFORE the last action).
    final_ee_distance_to_goal: float | None = None


def state_from_pose(pose_col_major: np.ndarray, gripper: float) -> torch.Tensor:
    """7-D state (xyz, extrinsic-xyz Euler, gripper) from libfranka's column-major O_T_EE [16]."""
    from vjepa_fast.robotics.pose import matrix_to_euler_xyz

    T = torch.as_tensor(np.asarray(pose_col_major, dtype=np.float64).reshape(4, 4, order="F"))
    euler = matrix_to_euler_xyz(T[:3, :3])
    return torch.cat([T[:3, 3], euler, torch.tensor([gripper], dtype=torch.float64)]).float()


class MPCRunner:
    """Runs closed-loop latent MPC with a planner (`plan(z_obs, state, z_goal, init_mean=...)`), a world model
    (`encode_image_files`), a `ControlProcess`, a `CameraProcess` and optionally a `GripperProcess` (its
    commands never wait for the move).

    A planner with a `config` (max_norm, bound) must search inside the safety layer's step bound
    (`check_planner_bound`): what it scores is then what the arm executes, up to the workspace clamp."""

    def __init__(self, world_model: Any, planner: Any, control: Any, camera: Any, safety: SafetyConfig,
                 goal_frames: list[np.ndarray], log_dir: str | Path, *, gripper: Any = None,
                 settle_timeout: float = 30.0, goal_xyz: np.ndarray | None = None,
                 subgoal_threshold: float | None = None, fps: float = 4.0,
                 subgoal_budgets: tuple[int, ...] | None = None, binary_gripper: bool = False,
                 grip_threshold: float = GRIP_THRESHOLD, release: float = RELEASE_COMMIT,
                 stop_when: Any = None) -> None:
        if not goal_frames:
            raise ValueError("at least one goal image is needed")
        cfg = getattr(planner, "config", None)
        if cfg is not None and hasattr(cfg, "max_norm") and hasattr(cfg, "bound"):
            check_planner_bound(cfg.max_norm, cfg.bound, safety)
        self.wm, self.planner, self.control, self.camera = world_model, planner, control, camera
        self.safety, self.gripper = safety, gripper
        self.goal_frames = goal_frames
        self.log_dir = Path(log_dir)
        self.settle_timeout = settle_timeout
        self.goal_xyz = None if goal_xyz is None else np.asarray(goal_xyz, float)
        self.subgoal_threshold = subgoal_threshold
        self.fps = fps
        # Manipulation (run_mpc.py --task): sub-goals switched by `SubgoalSchedule` (step budgets and a plateau of
        # the latent distance), the hand commanded open / closed when the planned change passes -+grip_threshold
        # (and the next frame taken once the fingers stopped), `stop_when()` -> True ends the episode early (success).
        self.subgoal_budgets = subgoal_budgets
        self.binary_gripper = binary_gripper
        self.grip_threshold = grip_threshold
        self.release = release
        self.stop_when = stop_when
        self._grip_cmd = 0.0

    # ------------------------------------------------------------------------------------------ pieces
    def _gripper_state(self) -> float:
        if self.gripper is None:
            return 0.0
        width = float(self.gripper.read_once().width)
        return float(min(1.0, max(0.0, 1.0 - width / self.safety.gripper_width_open)))

    def _check_control(self) -> np.ndarray:
        status = self.control.read_status()
        if not self.control.running:
            raise MPCStopped(f"the control loop stopped: {self.control.error() or 'status ' + str(status[0])}")
        return status

    # --------------------------------------------------------------------------------------------- run
    def run(self, max_steps: int, *, stop_control: bool = True) -> MPCSummary:
        """Up to max_steps observe -> plan -> act steps. stop_control=False leaves the 1 kHz loop running at
        the end (holding the last target) when the episode finished without error, so one rig can serve many
        episodes (`robot/simtools/sim_eval.py`); on any error the arm is always stopped."""
        from vjepa_fast.data.episodes import EpisodeWriter
        from vjepa_fast.planning import GoalSequence, shift_plan

        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        summary = MPCSummary(log_dir=str(self.log_dir))
        writer = EpisodeWriter(self.log_dir / "episode", fps=self.fps, camera=getattr(self.camera, "kind", ""),
                               extra={"source": "robot/run_mpc.py"}, overwrite=True)
        sidecar = open(self.log_dir / "mpc_log.jsonl", "a", encoding="utf-8")
        warm = None
        try:
            with torch.inference_mode():
                goals = GoalSequence(self.wm.encode_image_files(list(self.goal_frames)).unsqueeze(0))
            schedule = None
            if self.subgoal_budgets is not None:
                from vjepa_fast.planning import SubgoalSchedule

                schedule = SubgoalSchedule(self.subgoal_budgets)
            self._grip_cmd = self._gripper_state()
            for step in range(max_steps):
                t_frame = time.perf_counter()
                frame, age = self.camera.latest()
                status = self._check_control()
                grip = self._gripper_state()
                measured = status[shm.MEASURED_T].copy()
                commanded_xyz = status[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
                state = state_from_pose(measured, grip)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    z_obs = self.wm.encode_image_files([frame])
                    if schedule is not None:
                        goals.index[:] = schedule.update(float((z_obs - goals.current()).abs().mean()))
                    z_goal = goals.current()
                    latent_distance = float((z_obs - z_goal).abs().mean())
                    result = self.planner.plan(z_obs, state[None], z_goal, init_mean=warm)
                plan_s = time.perf_counter() - t0
                actions = result.actions[0].float().cpu().numpy()  # [H, 7]
                warm = shift_plan(result.mean)
                first = actions[0]
                wanted = grip + first[6]
                if self.binary_gripper:
                    wanted = binary_grip(float(first[6]), float(grip), self._grip_cmd, self.grip_threshold,
                                         self.release)
                target, grip_cmd = safe_target(commanded_xyz, np.r_[first[:6], wanted], self.safety)
                self._check_control()  # the arm may have failed while we planned
                self.control.send_target(target, grip_cmd)
                latency = time.perf_counter() - t_frame
                seq = None
                moved_hand = abs(grip_cmd - self._grip_cmd) > 0.5 if self.binary_gripper else abs(grip_cmd - grip) > 0.1
                if self.gripper is not None and moved_hand:
                    seq = self.gripper.command((1.0 - grip_cmd) * self.safety.gripper_width_open)  # returns at once
                    self._grip_cmd = grip_cmd
                robot_time = float(status[shm.ROBOT_TIME])
                executed = np.r_[target - commanded_xyz, 0.0, 0.0, 0.0, grip_cmd - grip]
                if not np.allclose(executed[:3], first[:3], rtol=0.0, atol=1e-9):
                    _LOG.warning("step %d: executed %s instead of the planned %s (workspace clamp or step bound)",
                                 step, np.round(executed[:3], 5).tolist(), np.round(first[:3], 5).tolist())
                writer.append(frame, state.numpy(), executed, timestamp=robot_time)
                rec = StepRecord(
                    step=step, robot_time=robot_time, wall_time=time.time(), plan_seconds=plan_s,
                    energy_predicted=float(result.energy[0]), latent_distance=latent_distance,
                    action=first.tolist(), target=target.tolist(), measured=measured[12:15].tolist(),
                    commanded=commanded_xyz.tolist(), frame_age=age, latency_seconds=latency,
                    ee_distance_to_goal=None if self.goal_xyz is None else
                    float(np.linalg.norm(measured[12:15] - self.goal_xyz)))
                summary.records.append(rec)
                sidecar.write(json.dumps({**rec.__dict__, "plan": actions.tolist()}) + "\n")
                sidecar.flush()
                _LOG.info("step %d: plan %.2fs, predicted energy %.4f, latent distance %.4f, target %s", step,
                          plan_s, rec.energy_predicted, latent_distance, np.round(target, 4).tolist())
                if self.subgoal_threshold is not None:
                    goals.advance_if_reached(torch.tensor([latent_distance]), self.subgoal_threshold)
                if not self.control.wait_settled(self.settle_timeout):
                    self._check_control()
                    raise MPCStopped(f"the arm did not reach its target within {self.settle_timeout} s")
                if seq is not None and self.binary_gripper:
                    self.gripper.wait_done(seq, self.settle_timeout)
                    time.sleep(0.15)  # a frame rendered after the fingers stopped
                summary.steps = step + 1
                if self.stop_when is not None and self.stop_when():
                    _LOG.info("step %d: the task is done", step)
                    break
            # The final observation closes the episode (no action after it).
            frame, _ = self.camera.latest()
            status = self._check_control()
            writer.append(frame, state_from_pose(status[shm.MEASURED_T], self._gripper_state()).numpy(), None,
                          timestamp=float(status[shm.ROBOT_TIME]))
            if self.goal_xyz is not None:
                summary.final_ee_distance_to_goal = float(np.linalg.norm(status[shm.MEASURED_T][12:15] - self.goal_xyz))
        except (Exception, KeyboardInterrupt) as exc:
            summary.ok = False
            summary.reason = f"{type(exc).__name__}: {exc}"
            _LOG.error("MPC stopped at step %d: %s", summary.steps, summary.reason)
        finally:
            if stop_control or not summary.ok:
                self.control.stop()
            writer.close()
            sidecar.write(json.dumps({"event": "stopped", "ok": summary.ok, "reason": summary.reason,
                                      "steps": summary.steps}) + "\n")
            sidecar.close()
            result = {"ok": summary.ok, "reason": summary.reason, "steps": summary.steps}
            if self.goal_xyz is not None and summary.records:
                result.update(goal_xyz=self.goal_xyz.tolist(),
                              start_ee_distance_to_goal=summary.records[0].ee_distance_to_goal,
                              final_ee_distance_to_goal=summary.final_ee_distance_to_goal)
            _write_json(self.log_dir / "summary.json", result)
            if summary.records:
                plot_episode(summary.records, self.log_dir / "mpc.png")
        return summary


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from vjepa_fast.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1))


def plot_episode(records: list[StepRecord], path: Path) -> None:
    """Energy (predicted by the plan) and distance to the goal (latent, and end effector when known) per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [r.step for r in records]
    panels = [("plan energy (predicted L1)", [r.energy_predicted for r in records]),
              ("latent distance to goal (L1)", [r.latent_distance for r in records]),
              ("planning time (s)", [r.plan_seconds for r in records])]
    if records[0].ee_distance_to_goal is not None:
        panels.insert(2, ("end-effector distance to goal (m)", [r.ee_distance_to_goal for r in records]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.5, 2.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, values) in zip(axes[:, 0], panels):
        ax.plot(steps, values, marker="o", lw=1.2)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("MPC step")
    axes[-1, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle("latent MPC episode")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    if not all(math.isfinite(v) for _, vals in panels for v in vals):
        _LOG.warning("non-finite values in the episode plot")
