"""The simulator's physics in-process: franky-sim's MuJoCo FR3, hand and free objects, stepped as fast as the CPU
allows instead of at the 1 kHz protocol's pace.

    arm = PhysicsArm(camera="front_right", size=256)
    arm.reset(Layout.draw(rng))                      # objects placed, arm at franky-sim's start, hand open
    arm.act(np.array([0.0, 0.02, -0.05]), grip=1.0)  # one action: move by dxyz [m], close the hand
    frame, state = arm.render(), arm.state()         # uint8 [S, S, 3]; [7] (xyz, Euler xyz, gripper)
    arm.object_xyz("red_cube")                       # [3] m

Every physics step runs franky-sim's own robot controller, the code the protocol server runs once per cycle:
`cartesian_position_control` (5 damped least-squares IK iterations from the measured q) into joint PD torques
with gravity compensation, and the hand's PD finger servo (`set_hand_goal`: the gripper server's `move` uses
force 70 N). The commanded positions of a move come from the live control loop's trajectory generator
(ruckig, robot/control.py's limits for the action's safety preset, 1 ms cycles), and the arm then holds the
target until the joints and fingers are at rest, as the loop does while the MPC waits for `settled`. Frames
come from `robot.camera.SceneRenderer` (the camera process's code path) on the same scene XML as the server's,
so for the same joint and object state a frame here equals the live camera's (tests/test_physics.py).

What differs from the live rig: no network, no real-time pacing, the state read without the protocol's float32
rounding, and no contact reflexes (the simulator has none either).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot.sim import DEFAULT_CAMERA, OBJECTS, check_camera

_LOG = logging.getLogger(__name__)

try:  # np.linalg.inv's own LAPACK gufunc without its per-call errstate set-up (the same bits, ~3x less overhead);
    # the damped matrix it inverts is never singular
    from numpy.linalg._umath_linalg import inv as _gufunc_inv

    def _inv(a: np.ndarray) -> np.ndarray:
        return _gufunc_inv(a, signature="d->d")
except ImportError:  # pragma: no cover - a numpy without the private module
    _inv = np.linalg.inv
GRIPPER_WIDTH_OPEN = 0.08  # m: gripper state 0 = open (this width), 1 = closed (robot/safety.py's convention)
HAND_SPEED = 0.05  # m/s: the gripper process's move speed (robot/gripper.py) and franky-sim's hand limit
HAND_FORCE = 70.0  # N: what franky-sim's gripper server applies for `move`
TABLE_TOP = 0.02  # m: the table's top surface (robot/sim.py build_scene)
OBJECT_NAMES = tuple(name for name, *_ in OBJECTS)
OBJECT_HALF = {name: tuple(float(v) for v in size.split()) for name, _, size, _ in OBJECTS}


def manipulation_safety() -> Any:
    """SafetyConfig of the manipulation tasks: the TCP may go down to 1.5 cm above the table (a 5 cm cube's
    grasp height), moves of up to 5 cm per axis, the collection speeds (robot/collect.py)."""
    from robot.safety import SafetyConfig

    return SafetyConfig(workspace_min=(0.30, -0.35, TABLE_TOP + 0.015), workspace_max=(0.75, 0.35, 0.55),
                        max_step=float(np.sqrt(3) * 0.05) + 1e-6, bound="ball", max_velocity=0.4,
                        max_acceleration=2.5, max_jerk=50.0)


def ruckig_path(start: np.ndarray, target: np.ndarray, max_velocity: float, max_acceleration: float, max_jerk: float,
                max_cycles: int = 60_000) -> np.ndarray:
    """The positions [T, 3] of robot/control.py's 1 ms ruckig cycles from `start` to `target`, both at rest (its
    set-up for a new target), with the same limit on every axis."""
    from ruckig import InputParameter, OutputParameter, Result, Ruckig

    otg = Ruckig(3, 0.001)
    inp, out = InputParameter(3), OutputParameter(3)
    inp.current_position = np.asarray(start, dtype=np.float64).tolist()
    inp.current_velocity = [0.0, 0.0, 0.0]
    inp.current_acceleration = [0.0, 0.0, 0.0]
    inp.target_position = np.asarray(target, dtype=np.float64).tolist()
    inp.target_velocity = [0.0, 0.0, 0.0]
    inp.max_velocity = [max_velocity] * 3
    inp.max_acceleration = [max_acceleration] * 3
    inp.max_jerk = [max_jerk] * 3
    points = []
    for _ in range(max_cycles):
        result = otg.update(inp, out)
        if result not in (Result.Working, Result.Finished):
            raise RuntimeError(f"trajectory generation failed: {result}")
        points.append(out.new_position)
        out.pass_to_input(inp)
        if result == Result.Finished:
            break
    return np.asarray(points, dtype=np.float64)


@dataclass(frozen=True)
class Layout:
    """Where the objects stand: name -> (x, y, yaw) on the table (z follows from the object's size)."""

    objects: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @classmethod
    def default(cls) -> Layout:
        out = {}
        for name, pos, _, _ in OBJECTS:
            x, y, _ = (float(v) for v in pos.split())
            out[name] = (x, y, 0.0)
        return cls(out)

    @classmethod
    def draw(cls, rng: np.random.Generator, *, region: tuple[tuple[float, float], tuple[float, float]] =
             ((0.42, 0.66), (-0.20, 0.20)), min_gap: float = 0.09, fixed: dict[str, tuple[float, float]] | None
             = None) -> Layout:
        """Every object at a random (x, y) in `region` ((x_lo, x_hi), (y_lo, y_hi)), yaw in +-45 deg, centres
        at least `min_gap` apart; `fixed` pins some objects' (x, y)."""
        fixed = dict(fixed or {})
        placed: dict[str, tuple[float, float, float]] = {}
        for name in OBJECT_NAMES:
            for _ in range(1000):
                if name in fixed:
                    x, y = fixed[name]
                else:
                    x, y = rng.uniform(*region[0]), rng.uniform(*region[1])
                yaw = float(rng.uniform(-math.pi / 4, math.pi / 4))
                if name in fixed or all(math.hypot(x - px, y - py) >= min_gap for px, py, _ in placed.values()):
                    placed[name] = (float(x), float(y), yaw)
                    break
            else:
                raise RuntimeError(f"no room for {name} in {region} with gaps of {min_gap} m")
        return cls(placed)


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A slice for consecutive indices (views, no copies), else the index array."""
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index


def _quat_yaw(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])  # MuJoCo's (w, x, y, z)


class PhysicsArm:
    """franky-sim's scene with its dynamics, driven action by action (see the module docstring)."""

    def __init__(self, camera: str = DEFAULT_CAMERA, size: int = 256, *, render: bool = True,
                 safety: Any = None, settle_steps: int = 50, max_settle_steps: int = 1500) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco
        import pinocchio as pin

        from robot.camera import SceneRenderer
        from robot.collect import collection_safety
        from robot.sim import new_simulator, scene_xml

        check_camera(camera)
        self._mj = mujoco
        self.safety = safety if safety is not None else manipulation_safety()
        self.limits = collection_safety(0.05) if safety is None else safety
        self.settle_steps, self.max_settle_steps = int(settle_steps), int(max_settle_steps)
        self.sim = new_simulator()
        xml = scene_xml(self.sim)
        self.sim.init()
        self.sim.start()
        self.robot = self.sim.robots[0]
        self.model, self.data = self.sim.model, self.sim.data
        self.renderer = SceneRenderer.from_string(xml, size, camera) if render else None
        self.camera, self.size = camera, size
        self._xml, self._views = xml, {camera: self.renderer}  # render(camera=...) adds a renderer per camera
        self._arm_q = np.array(self.robot._qpos_addrs)
        self._arm_v = np.array(self.robot._dof_addrs)
        self._finger_q = np.array(self.robot._finger_qpos_addrs)
        self._finger_v = np.array(self.robot._finger_dof_addrs)
        # Basic slices where the addresses are consecutive (they are in franky-sim's FR3): no fancy-index copies.
        self._arm_qs, self._arm_vs, self._finger_qs, self._finger_vs = (
            _as_slice(a) for a in (self._arm_q, self._arm_v, self._finger_q, self._finger_v))
        self._target_key: bytes | None = None
        self._target: Any = None
        self._obj_q: dict[str, int] = {}
        for name in OBJECT_NAMES:
            jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, f"{name}_joint")
            self._obj_q[name] = int(self.model.jnt_qposadr[jid])
        self._obj_body = {n: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, n) for n in OBJECT_NAMES}
        from franky_sim.constants import FRANKA_HAND_FORCE_LIMIT, FRANKA_TORQUE_LIMITS_HIGH, FRANKA_TORQUE_LIMITS_LOW

        self._pin = pin
        self._pin_model = self.robot._BaseRobot__model  # franky-sim's pinocchio model of the FR3 (its IK's)
        self._pin_data = self._pin_model.createData()
        self._tcp = self._pin_model.getFrameId("tcp")
        self._tau_lo = np.array(FRANKA_TORQUE_LIMITS_LOW, dtype=np.float64)
        self._tau_hi = np.array(FRANKA_TORQUE_LIMITS_HIGH, dtype=np.float64)
        self._damp = 1e-4 * np.eye(6)
        self._hand_force_limit = FRANKA_HAND_FORCE_LIMIT
        start = self.robot.kinematics(np.array(self.robot.initial_q))
        quat = pin.Quaternion(start.rotation)
        self._quat = np.array([quat.x, quat.y, quat.z, quat.w])  # held orientation: the hand pointing down
        self.home = np.array(start.translation, dtype=np.float64)
        self.commanded = self.home.copy()
        self.grip_command = 0.0
        self.steps = 0

    # -------------------------------------------------------------------------------------------- state

    def reset(self, layout: Layout | None = None, *, grip: float = 0.0, settle: int = 100) -> None:
        """Arm at franky-sim's initial q at rest, the hand at `grip` (0 open), objects at `layout`."""
        mj = self._mj
        mj.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_q] = self.robot.initial_q
        width = (1.0 - grip) * GRIPPER_WIDTH_OPEN
        self.data.qpos[self._finger_q] = width / 2.0
        layout = layout if layout is not None else Layout.default()
        for name, (x, y, yaw) in layout.objects.items():
            a = self._obj_q[name]
            self.data.qpos[a : a + 3] = (x, y, TABLE_TOP + OBJECT_HALF[name][2] + 1e-4)
            self.data.qpos[a + 3 : a + 7] = _quat_yaw(yaw)
        mj.mj_forward(self.model, self.data)
        self.q_d = self.q()
        self.commanded = self.home.copy()
        self.grip_command = float(grip)
        self.robot.set_hand_goal(width, HAND_SPEED, HAND_FORCE)
        for _ in range(settle):
            self._step(self.commanded)

    def teleport(self, xyz: np.ndarray, iterations: int = 200) -> None:
        """Put the arm at rest with the TCP at xyz [3] (held orientation) without moving it there: franky-sim's
        IK iterated from the current q, the joints set, then `settle`. For unrecorded starts."""
        pin = self._pin
        model, pdata = self._pin_model, self._pin_data
        target = pin.XYZQUATToSE3(np.concatenate((np.asarray(xyz, dtype=np.float64), self._quat)))
        q = self.data.qpos[self._arm_q].copy()
        for _ in range(iterations):
            pin.forwardKinematics(model, pdata, q)
            pin.updateFramePlacement(model, pdata, self._tcp)
            err = pin.log6(pdata.oMf[self._tcp].inverse() * target).vector
            if np.linalg.norm(err) < 1e-6:
                break
            jac = pin.computeFrameJacobian(model, pdata, q, self._tcp, pin.ReferenceFrame.LOCAL)
            q = pin.integrate(model, q, jac.T @ np.linalg.inv(jac @ jac.T + self._damp) @ err)
        else:
            raise ValueError(f"teleport: no joint configuration puts the TCP at {np.round(xyz, 4).tolist()}")
        self.data.qpos[self._arm_q] = q
        self.data.qvel[self._arm_v] = 0.0
        self._mj.mj_forward(self.model, self.data)
        self.q_d = q.copy()
        self.commanded = np.asarray(xyz, dtype=np.float64).copy()
        self.settle()

    def q(self) -> np.ndarray:
        return self.data.qpos[self._arm_q].copy()

    def ee_pose(self) -> np.ndarray:
        """O_T_EE [4, 4] float64 as franky-sim's server reports it: the pose of q_d, the IK's joint target of
        the last control cycle (tests/test_generate.py: its `kinematics` reference is overwritten by FK(q_d)
        before the state is sent), not of the measured q, which lags by up to ~1e-3 rad at rest."""
        return np.array(self.robot.kinematics(self.q_d).homogeneous)

    def gripper(self) -> float:
        """Gripper state in [0, 1] (0 open) from the finger opening, as robot/collect.py reads it."""
        width = float(self.data.qpos[self._finger_q].sum())
        return float(min(1.0, max(0.0, 1.0 - width / GRIPPER_WIDTH_OPEN)))

    def state(self) -> np.ndarray:
        """7-D state [7] float64: xyz, extrinsic-xyz Euler, gripper (robot/mpc.py's `state_from_pose`)."""
        from robot.simtools.generate import pose_state

        return pose_state(self.ee_pose(), self.gripper())

    def object_xyz(self, name: str = "red_cube") -> np.ndarray:
        a = self._obj_q[name]
        return self.data.qpos[a : a + 3].copy()

    def holding(self, name: str = "red_cube") -> bool:
        """True when both fingers touch the object (a grasp, not a push with one finger)."""
        body = self._obj_body[name]
        fingers = set()
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            b1, b2 = self.model.geom_bodyid[c.geom1], self.model.geom_bodyid[c.geom2]
            other = b2 if b1 == body else b1 if b2 == body else None
            if other is not None:
                name_other = self.model.body(other).name
                if "finger" in name_other:
                    fingers.add(name_other)
        return len(fingers) >= 2

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to come back to this moment (`restore`)."""
        return {"qpos": self.data.qpos.copy(), "qvel": self.data.qvel.copy(), "act": self.data.act.copy(),
                "q_d": self.q_d.copy(),
                "commanded": self.commanded.copy(), "grip": self.grip_command,
                "hand": (self.robot._hand_goal_width, self.robot._hand_goal_velocity, self.robot._hand_goal_force)}

    def restore(self, snap: dict[str, Any]) -> None:
        self.data.qpos[:] = snap["qpos"]
        self.data.qvel[:] = snap["qvel"]
        self.data.act[:] = snap["act"]
        self._mj.mj_forward(self.model, self.data)
        self.commanded, self.grip_command, self.q_d = snap["commanded"].copy(), snap["grip"], snap["q_d"].copy()
        self.robot.set_hand_goal(*snap["hand"])

    def render(self, camera: str | None = None) -> np.ndarray:
        """The camera's frame of the scene now: uint8 [size, size, 3] RGB. camera: another of the scene's cameras
        (robot/sim.py CAMERAS) at the same size, for multi-view planning (a renderer is made on first use)."""
        if self.renderer is None:
            raise RuntimeError("PhysicsArm(render=False) has no renderer")
        if camera is None or camera == self.camera:
            return self.renderer.render(self.data.qpos)
        if camera not in self._views:
            from robot.camera import SceneRenderer

            check_camera(camera)
            self._views[camera] = SceneRenderer.from_string(self._xml, self.size, camera)
        return self._views[camera].render(self.data.qpos)

    # -------------------------------------------------------------------------------------------- motion

    def _step(self, xyz: np.ndarray) -> None:
        """One 1 ms physics step under franky-sim's controller commanding the TCP at xyz [3] (held orientation).

        The maths of the server's cycle, operation for operation (`BaseRobot.cartesian_position_control` ->
        `_joint_position_control` -> `torque_control` -> `FrankaMujocoRobot._torque_control`, the hand's
        `_pre_step`, `mj_step`), without the state tracking the protocol's reports need and the per-joint Python
        loops, which cost ~4x the physics; tests/test_physics.py checks that the trajectories are bit-identical
        to franky-sim's own calls.
        """
        pin, r = self._pin, self.robot
        model, pdata, data = self._pin_model, self._pin_data, self.data
        q = data.qpos[self._arm_qs].copy()
        dq = data.qvel[self._arm_vs].copy()
        key = xyz.tobytes()
        if key != self._target_key:  # the same command every cycle while holding: one SE3 for all of them
            self._target_key, self._target = key, pin.XYZQUATToSE3(np.concatenate((xyz, self._quat)))
        target = self._target
        target_q = q.copy()
        for _ in range(5):
            pin.forwardKinematics(model, pdata, target_q)
            pin.updateFramePlacement(model, pdata, self._tcp)
            err = pin.log6(pdata.oMf[self._tcp].inverse() * target).vector
            if math.sqrt(err.dot(err)) < 1e-4:  # np.linalg.norm's own sum for a vector: the same bits
                break
            jac = pin.computeFrameJacobian(model, pdata, target_q, self._tcp, pin.ReferenceFrame.LOCAL)
            target_q = pin.integrate(model, target_q, jac.T @ _inv(jac @ jac.T + self._damp) @ err)
        self.q_d = target_q
        pin.computeAllTerms(model, pdata, q, dq)
        tau = r.kp * (target_q - q) - r.kv * dq + (pdata.nle - pdata.g)
        tau = np.minimum(np.maximum(tau, self._tau_lo), self._tau_hi)
        pin.computeGeneralizedGravity(model, pdata, q)
        tau = np.minimum(np.maximum(tau + pdata.g, self._tau_lo), self._tau_hi)
        data.qfrc_applied[self._arm_vs] = tau
        # The hand: FrankaMujocoRobot._pre_step's PD servo with its velocity and force limits.
        fq, fdq = data.qpos[self._finger_qs], data.qvel[self._finger_vs]
        ftau = r._kp_hand * (r._hand_goal_width / 2 - fq) - r._kv_hand * fdq
        over = (np.abs(fdq) > r._hand_goal_velocity) & (np.sign(fdq) == np.sign(ftau))
        ftau = np.where(over, -r._kv_hand * fdq, ftau)
        limit = min(self._hand_force_limit, r._hand_goal_force)
        data.qfrc_applied[self._finger_vs] = np.minimum(np.maximum(ftau, -limit), limit)
        self._mj.mj_step(self.model, data)
        self.steps += 1

    def _trajectory(self, start: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Commanded positions [T, 3] from start to target (both at rest), 1 ms apart: the control loop's
        ruckig set-up. ruckig 0.19 rarely throws on a valid input (seen once in ~10^5 moves, not reproducible
        from the printed values): then the target is nudged by 1 um, and failing that a straight line at the
        velocity limit is used."""
        for nudge in (0.0, 1e-6):
            try:
                return self._ruckig(start, target + nudge)
            except Exception as exc:  # noqa: BLE001 - ruckig.RuckigError; logged, then the fallback
                _LOG.warning("ruckig failed from %s to %s (%s)", start.tolist(), target.tolist(), str(exc)[:60])
        n = max(1, int(np.ceil(np.abs(target - start).max() / (self.limits.max_velocity * 1e-3))))
        return start + (target - start) * (np.arange(1, n + 1) / n)[:, None]

    def _ruckig(self, start: np.ndarray, target: np.ndarray) -> np.ndarray:
        lim = self.limits
        return ruckig_path(start, target, lim.max_velocity, lim.max_acceleration, lim.max_jerk, max_cycles=20_000)

    def target_for(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        """Where an action [>= 3] (dxyz, ..., gripper delta at index 6 when given) takes the commanded position
        and gripper: through robot/safety.py's `safe_target` (workspace clamp, step bound), as run_mpc does."""
        from robot.safety import safe_target

        a = np.zeros(7)
        a[: min(7, len(action))] = np.asarray(action, dtype=np.float64)[:7]
        return safe_target(self.commanded, np.r_[a[:6], self.gripper() + a[6]], self.safety)

    def act(self, dxyz: np.ndarray, grip: float | None = None) -> None:
        """One action: the commanded position moves by dxyz [3] (clamped to the workspace, bounded per step) and
        the hand goes to `grip` (0 open .. 1 closed; None: as it is), then the arm holds until at rest."""
        target, _ = self.target_for(np.r_[np.asarray(dxyz, dtype=np.float64)[:3], 0.0, 0.0, 0.0, 0.0])
        self.move_to(target, grip)

    def move_to(self, target: np.ndarray, grip: float | None = None) -> None:
        """Commanded position to `target` [3] (no clamping here) along the loop's trajectory, hand to `grip`."""
        target = np.asarray(target, dtype=np.float64)
        if grip is not None:
            grip = float(min(1.0, max(0.0, grip)))
            self.grip_command = grip
            self.robot.set_hand_goal((1.0 - grip) * GRIPPER_WIDTH_OPEN, HAND_SPEED, HAND_FORCE)
        for xyz in self._trajectory(self.commanded, target):
            self._step(xyz)
        self.commanded = target.copy()
        self.settle()

    def settle(self) -> None:
        """Hold the commanded position for at least settle_steps physics steps, then until the arm and the
        fingers are at rest, at most max_settle_steps: what the control loop's `wait_settled` waits for before
        the MPC's next frame. At rest = over the last 10 ms every joint moved < 0.2 mrad (0.02 rad/s, about
        1 cm/s at the hand) and each finger < 20 um: displacements, not velocities, because franky-sim's wrist
        PD (kv 200 on a 0.074 kg m^2 joint at 1 ms) chatters at +-0.08 rad/s around a fixed angle forever."""
        arm_q, fin_q = self._arm_q, self._finger_q
        last = None
        for i in range(self.max_settle_steps):
            self._step(self.commanded)
            if i >= self.settle_steps and i % 10 == 0:
                now = np.concatenate((self.data.qpos[arm_q], self.data.qpos[fin_q] * 10.0))
                if last is not None and np.abs(now - last).max() < 2e-4:
                    break
                last = now

    def close(self) -> None:
        for r in {id(r): r for r in self._views.values() if r is not None}.values():
            r.close()
        self.renderer, self._views = None, {}
        try:
            self.sim.cleanup()
        except Exception:  # noqa: BLE001 - best effort: the simulator may already be gone
            pass

    def __enter__(self) -> PhysicsArm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
