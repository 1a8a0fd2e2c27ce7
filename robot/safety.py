"""The safety layer between the planner and the arm: every target passes through here before the 1 kHz loop.

- non-finite plans are rejected (SafetyViolation), never clipped into something that looks valid;
- one action moves the end effector at most `max_step` metres (scaled down, direction kept);
- targets are clamped into the workspace box;
- the gripper command is clamped to [0, 1] (0 open, 1 closed);
- the 1 kHz loop itself limits Cartesian velocity, acceleration and jerk (values checked here against the
  FR3's own limits, with margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Franka Research 3 Cartesian limits (datasheet): translation v 3.0 m/s, a 9.0 m/s^2, j 4500 m/s^3.
FR3_MAX_VELOCITY = 3.0
FR3_MAX_ACCELERATION = 9.0
FR3_MAX_JERK = 4500.0


class SafetyViolation(ValueError):
    """A plan or target the arm must not execute; the message says which value and why."""


@dataclass(frozen=True)
class SafetyConfig:
    workspace_min: tuple[float, float, float] = (0.25, -0.45, 0.08)  # robot base frame, metres
    workspace_max: tuple[float, float, float] = (0.80, 0.45, 0.75)
    max_step: float = 0.075  # metres per planned action (the paper's CEM bound)
    max_velocity: float = 0.25  # m/s, Cartesian translation in the 1 kHz loop
    max_acceleration: float = 1.5  # m/s^2
    max_jerk: float = 30.0  # m/s^3
    planner_timeout: float = 60.0  # s without a new plan -> the loop brakes and holds
    gripper_width_open: float = 0.08  # metres; gripper state 0 = open, 1 = closed

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError(f"workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max}"
                             " on every axis")
        for name, value, fr3 in (("max_velocity", self.max_velocity, FR3_MAX_VELOCITY),
                                 ("max_acceleration", self.max_acceleration, FR3_MAX_ACCELERATION),
                                 ("max_jerk", self.max_jerk, FR3_MAX_JERK)):
            if not 0 < value <= 0.5 * fr3:
                raise ValueError(f"{name} must be in (0, {0.5 * fr3}] (half the FR3 limit {fr3}), got {value}")
        if not 0 < self.max_step <= 0.2:
            raise ValueError(f"max_step must be in (0, 0.2] m, got {self.max_step}")
        if self.planner_timeout <= 0:
            raise ValueError(f"planner_timeout must be > 0 s, got {self.planner_timeout}")


def safe_target(current_xyz: np.ndarray, action: np.ndarray, cfg: SafetyConfig) -> tuple[np.ndarray, float]:
    """The target (xyz [3], gripper in [0, 1]) for one planned action, or SafetyViolation.

    current_xyz: [3] the commanded end-effector position; action: [7] (dxyz, drot (ignored: rotation is held,
    as in the reference planner), gripper state after the action in absolute terms).
    """
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (7,):
        raise SafetyViolation(f"an action must have 7 values (dxyz, drot, gripper), got shape {action.shape}")
    if not np.all(np.isfinite(action)):
        raise SafetyViolation(f"the plan holds a non-finite value: {action.tolist()}")
    current_xyz = np.asarray(current_xyz, dtype=np.float64)
    if not np.all(np.isfinite(current_xyz)):
        raise SafetyViolation(f"the current position is not finite: {current_xyz.tolist()}")
    step = action[:3]
    norm = float(np.linalg.norm(step))
    if norm > cfg.max_step:
        step = step * (cfg.max_step / norm)
    target = np.clip(current_xyz + step, cfg.workspace_min, cfg.workspace_max)
    grip = float(min(1.0, max(0.0, action[6])))
    return target, grip


def check_limits(times: np.ndarray, xyz: np.ndarray, cfg: SafetyConfig, tolerance: float = 1.05) -> dict[str, float]:
    """Peak velocity / acceleration / jerk of a logged commanded trajectory (times [T], xyz [T, 3]).

    Raises SafetyViolation if any exceeds its limit by more than `tolerance`; returns the peaks.
    Samples with non-increasing time are dropped (finite differences need dt > 0).
    """
    keep = np.concatenate([[True], np.diff(times) > 0])
    t, p = times[keep], xyz[keep]
    if len(t) < 4:
        return {"velocity": 0.0, "acceleration": 0.0, "jerk": 0.0}
    dt = np.diff(t)
    v = np.diff(p, axis=0) / dt[:, None]
    a = np.diff(v, axis=0) / dt[1:, None]
    j = np.diff(a, axis=0) / dt[2:, None]
    peaks = {"velocity": float(np.linalg.norm(v, axis=1).max()),
             "acceleration": float(np.linalg.norm(a, axis=1).max()),
             "jerk": float(np.linalg.norm(j, axis=1).max())}
    # Ruckig limits each axis; the Euclidean norm can reach sqrt(3) x the per-axis limit.
    limits = {"velocity": cfg.max_velocity, "acceleration": cfg.max_acceleration, "jerk": cfg.max_jerk}
    for name, peak in peaks.items():
        bound = limits[name] * math.sqrt(3) * tolerance
        if peak > bound:
            raise SafetyViolation(f"commanded {name} peaked at {peak:.4g}, above the limit {bound:.4g}")
    return peaks
