"""The FR3 moved kinematically with franky-sim's own Cartesian pose IK (robot/simtools/generate.py's arm):
`KinematicArm` (each commanded pose through the IK from the current q; the joint target becomes the new q) and
`pose_state` (O_T_EE -> the 7-D state)."""

from __future__ import annotations

from typing import Any

import numpy as np

from robot.collect import collection_safety

__all__ = ["KinematicArm", "pose_state", "PATHS", "REST_TOL"]

PATHS = ("ruckig", "step")  # how a move is cut into IK commands (GenerateConfig.path)
REST_TOL = 1e-4  # m: franky-sim's IK stops iterating below a pose error of 1e-4


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
        from robot.simtools.physics import ruckig_path  # exactly robot/control.py's set-up for a new target

        return ruckig_path(start, target, self.max_velocity, self.max_acceleration, self.max_jerk)

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
