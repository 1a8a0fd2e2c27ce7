"""The safety layer between the planner and the arm: every target passes through here before the 1 kHz loop.

- non-finite plans are rejected (SafetyViolation), never clipped into something that looks valid;
- one action moves the end effector at most `max_step` metres: in L2 norm (`bound="ball"`, the default: scaled
  down, direction kept) or per axis (`bound="box"`: clipped). The planner must search the same set (run_mpc.py
  gives it this bound; `check_planner_bound`), so that what it scored is what the arm executes;
- targets are clamped into the workspace box;
- the gripper command is clamped to [0, 1] (0 open, 1 closed);
- the 1 kHz loop itself limits Cartesian velocity, acceleration and jerk (values checked here against the
  FR3's own limits, with margin);
- the arm's collision thresholds (libfranka's reflex: it stops on contact above them), set before the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Franka Research 3 Cartesian limits (datasheet): translation v 3.0 m/s, a 9.0 m/s^2, j 4500 m/s^3.
FR3_MAX_VELOCITY = 3.0
FR3_MAX_ACCELERATION = 9.0
FR3_MAX_JERK = 4500.0

# Collision thresholds of libfranka's Cartesian pose example (examples/generate_cartesian_pose_motion.cpp in
# frankaemika/libfranka, the example whose start from O_T_EE_c the 1 kHz loop follows): torques per joint in
# Nm, lower (contact) = upper (collision), lower on the wrist than on the shoulder; forces in N (x, y, z) and
# Nm (about x, y, z). pylibfranka's set_collision_behavior applies them in both the acceleration and the
# nominal phase, as the example's 8-argument call does with equal values.
LIBFRANKA_EXAMPLE_TORQUE_THRESHOLDS = (20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0)
LIBFRANKA_EXAMPLE_FORCE_THRESHOLDS = (20.0, 20.0, 20.0, 25.0, 25.0, 25.0)
BOUNDS = ("ball", "box")
# A float32 plan on the boundary of the ball can sit one rounding step outside it (the mean of elites on the
# sphere is on it only in exact arithmetic): such a step is executed as planned (1e-6 relative: 50 nm at 5 cm).
PLAN_ROUNDING = 1e-6


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
    bound: str = "ball"  # max_step in L2 norm ("ball") or per axis ("box", up to sqrt(3) x max_step)
    lower_torque_thresholds: tuple[float, ...] = LIBFRANKA_EXAMPLE_TORQUE_THRESHOLDS  # Nm, joints 1-7
    upper_torque_thresholds: tuple[float, ...] = LIBFRANKA_EXAMPLE_TORQUE_THRESHOLDS
    lower_force_thresholds: tuple[float, ...] = LIBFRANKA_EXAMPLE_FORCE_THRESHOLDS  # N, N, N, Nm, Nm, Nm
    upper_force_thresholds: tuple[float, ...] = LIBFRANKA_EXAMPLE_FORCE_THRESHOLDS

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
        if self.bound not in BOUNDS:
            raise ValueError(f"bound must be one of {BOUNDS}, got {self.bound!r}")
        for kind, n in (("torque", 7), ("force", 6)):
            lower = np.asarray(getattr(self, f"lower_{kind}_thresholds"), float)
            upper = np.asarray(getattr(self, f"upper_{kind}_thresholds"), float)
            if lower.shape != (n,) or upper.shape != (n,):
                raise ValueError(f"lower_{kind}_thresholds and upper_{kind}_thresholds need {n} values each, got "
                                 f"{len(lower)} and {len(upper)}")
            if not (np.all(np.isfinite(lower)) and np.all(lower > 0) and np.all(upper >= lower)):
                raise ValueError(f"{kind} thresholds must be > 0 with lower <= upper, got lower {lower.tolist()} "
                                 f"upper {upper.tolist()}")


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
    if cfg.bound == "ball":
        norm = float(np.linalg.norm(step))
        if norm > cfg.max_step * (1.0 + PLAN_ROUNDING):
            step = step * (cfg.max_step / norm)
    elif float(np.abs(step).max()) > cfg.max_step * (1.0 + PLAN_ROUNDING):
        step = np.clip(step, -cfg.max_step, cfg.max_step)
    target = np.clip(current_xyz + step, cfg.workspace_min, cfg.workspace_max)
    grip = float(min(1.0, max(0.0, action[6])))
    return target, grip


def check_planner_bound(max_norm: float, bound: str, cfg: SafetyConfig) -> None:
    """ValueError unless every step the planner can score (its `max_norm` in its `bound`: "ball" or "box") is one
    the safety layer executes unchanged: otherwise the arm would execute a different action from the one that
    was scored (a box of +-max_norm reaches sqrt(3) x max_norm, which a ball of the same radius rescales)."""
    if bound not in BOUNDS:
        raise ValueError(f"planner bound must be one of {BOUNDS}, got {bound!r}")
    reach = max_norm * (math.sqrt(3) if bound == "box" and cfg.bound == "ball" else 1.0)
    if reach > cfg.max_step * (1.0 + PLAN_ROUNDING):
        raise ValueError(f"the planner searches a {bound} of {max_norm} m per step but the safety layer executes at "
                         f"most a {cfg.bound} of {cfg.max_step} m: plans would be rescaled after scoring; give the "
                         f"planner the safety layer's bound (PlannerConfig(max_norm={cfg.max_step}, "
                         f"bound={cfg.bound!r}))")


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
