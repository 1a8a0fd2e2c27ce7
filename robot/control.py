"""The 1 kHz control process: pylibfranka Cartesian pose control with jerk-limited interpolation (ruckig)
from the current commanded pose toward the latest target in shared memory.

Rules it keeps (libfranka's and ours): parameters are set before the loop, never inside it; the loop never
waits on the planner (a seqlock read, no lock); a late planner leaves the last safe target in place, and
after `planner_timeout` without a plan the loop brakes to a stop and holds; a stop request or a dead parent
process brakes to zero velocity before `motion_finished`; every exception path reports and leaves the arm
stopped. The orientation is held (the reference planner plans no rotation); translation is limited per
axis in velocity, acceleration and jerk.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm
from robot.safety import SafetyConfig

_LOG = logging.getLogger(__name__)
LOG_COLUMNS = ("robot_time", "wall_time", "period", "cmd_x", "cmd_y", "cmd_z", "meas_x", "meas_y", "meas_z",
               "holding")


def _seconds(d: Any) -> float:
    return d.to_sec() if hasattr(d, "to_sec") else float(d)


def control_main(ip: str, command_name: str, status_name: str, safety: dict[str, Any], enforce_realtime: bool,
                 log_path: str, error_recovery: bool, max_log_seconds: float, events: Any) -> None:
    """Entry point of the control process (spawned by `ControlProcess`)."""
    import pylibfranka as pf
    from ruckig import ControlInterface, InputParameter, OutputParameter, Result, Ruckig

    cfg = SafetyConfig(**safety)
    command = shm.command_block(command_name)
    status = shm.status_block(status_name)
    parent = os.getppid()
    rows = int(max_log_seconds * 1000)
    log = np.zeros((rows, len(LOG_COLUMNS)))  # ring buffer, allocated once
    n = 0
    cmd_buf = np.zeros(shm.COMMAND_SLOTS)
    status_buf = np.zeros(shm.STATUS_SLOTS)
    lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)

    def publish(code: float, error: float = 0.0) -> None:
        status_buf[shm.STATUS] = code
        status_buf[shm.ERROR_CODE] = error
        status.write(status_buf)

    robot = None
    try:
        robot = pf.Robot(ip, pf.RealtimeConfig.kEnforce if enforce_realtime else pf.RealtimeConfig.kIgnore)
        # Everything is configured here, before the loop starts.
        robot.set_collision_behavior([20.0] * 7, [40.0] * 7, [20.0] * 6, [40.0] * 6)
        state = robot.read_once()
        pose = np.array(state.O_T_EE, dtype=np.float64).reshape(4, 4, order="F")
        commanded = pose.copy()
        otg = Ruckig(3, 0.001)
        inp, out = InputParameter(3), OutputParameter(3)
        inp.current_position = pose[:3, 3].tolist()
        inp.current_velocity = [0.0, 0.0, 0.0]
        inp.current_acceleration = [0.0, 0.0, 0.0]
        inp.target_position = pose[:3, 3].tolist()
        inp.target_velocity = [0.0, 0.0, 0.0]
        inp.max_velocity = [cfg.max_velocity] * 3
        inp.max_acceleration = [cfg.max_acceleration] * 3
        inp.max_jerk = [cfg.max_jerk] * 3
        command.read_into(cmd_buf)
        last_seq = cmd_buf[shm.CMD_SEQ]
        holding = braking = stopping = False
        pose_values = commanded.flatten(order="F").tolist()

        ctrl = robot.start_cartesian_pose_control(pf.ControllerMode.CartesianImpedance)
        publish(shm.RUNNING)
        wall0 = time.monotonic()
        while True:
            state, period = ctrl.readOnce()
            now = time.monotonic()
            command.read_into(cmd_buf)
            if cmd_buf[shm.CMD_STOP] > 0 and not stopping:
                stopping = braking = True
            if n % 100 == 0 and os.getppid() != parent:
                stopping = braking = True  # the planner process died: stop, do not hold forever
            if cmd_buf[shm.CMD_SEQ] != last_seq and not stopping:
                last_seq = cmd_buf[shm.CMD_SEQ]
                # Defence in depth: the safety layer clamped already; never leave the box here either.
                inp.target_position = np.clip(cmd_buf[shm.CMD_XYZ], lo, hi).tolist()
                inp.target_velocity = [0.0, 0.0, 0.0]
                inp.control_interface = ControlInterface.Position
                holding = braking = False
            elif not holding and not stopping and now - cmd_buf[shm.CMD_HEARTBEAT] > cfg.planner_timeout:
                holding = braking = True  # no plan in time: brake and hold where we are
            if braking:
                inp.control_interface = ControlInterface.Velocity
                inp.target_velocity = [0.0, 0.0, 0.0]
                braking = False
            result = otg.update(inp, out)
            if result not in (Result.Working, Result.Finished):
                raise RuntimeError(f"trajectory generation failed: {result}")
            out.pass_to_input(inp)
            commanded[:3, 3] = out.new_position
            pose_values[12:15] = out.new_position
            done = stopping and result == Result.Finished
            cmd = pf.CartesianPose(pose_values)
            if done:
                cmd.motion_finished = True
            ctrl.writeOnce(cmd)

            measured = state.O_T_EE
            row = log[n % rows]
            row[0] = _seconds(state.time)
            row[1] = now - wall0
            row[2] = _seconds(period)
            row[3:6] = out.new_position
            row[6], row[7], row[8] = measured[12], measured[13], measured[14]
            row[9] = holding
            n += 1
            status.begin_write()
            d = status.data
            d[shm.STATUS] = shm.RUNNING
            d[shm.ROBOT_TIME] = row[0]
            d[shm.CYCLES] = n
            d[shm.HOLDING] = holding
            d[shm.TARGET_SEQ_SEEN] = last_seq
            d[shm.MEASURED_T] = measured
            d[shm.COMMANDED_T] = pose_values
            d[shm.Q] = state.q
            d[shm.CMD_VEL] = out.new_velocity
            status.end_write()
            if done:
                break
        publish(shm.FINISHED)
        events.put(("finished", f"stopped after {n} cycles"))
    except BaseException as exc:  # noqa: BLE001 - every path must report and leave the arm stopped
        message = f"{type(exc).__name__}: {exc}"
        status_buf[shm.CYCLES] = n
        publish(shm.FAILED, 1.0)
        events.put(("error", message + "\n" + traceback.format_exc(limit=3)))
        if robot is not None:
            try:
                robot.stop()
            except Exception:  # noqa: BLE001 - the connection may be gone; nothing more to do
                pass
            if error_recovery and "ControlException" in type(exc).__name__:
                try:
                    robot.automatic_error_recovery()
                    events.put(("recovered", "automatic_error_recovery() succeeded"))
                except Exception as rec:  # noqa: BLE001
                    events.put(("error", f"automatic_error_recovery failed: {rec}"))
    finally:
        order = np.r_[n % rows : rows, 0 : n % rows] if n > rows else np.arange(n)
        path = Path(log_path)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, log=log[order], columns=np.array(LOG_COLUMNS), safety=np.array(str(asdict(cfg))))
        os.replace(tmp, path)
        command.close()
        status.close()


class ControlProcess:
    """Owns the control process and the shared blocks, from the planner's side."""

    def __init__(self, ip: str, safety: SafetyConfig, log_path: str | Path, *, enforce_realtime: bool = False,
                 error_recovery: bool = False, max_log_seconds: float = 600.0) -> None:
        self.safety = safety
        self.command = shm.command_block(create=True)
        self.status = shm.status_block(create=True)
        self.log_path = Path(log_path)
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self._seq = 0
        self._buf = np.zeros(shm.COMMAND_SLOTS)
        self._buf[shm.CMD_HEARTBEAT] = time.monotonic()
        self.command.write(self._buf)
        self.proc = ctx.Process(
            target=control_main, name="franka-control", daemon=False,
            args=(ip, self.command.name, self.status.name, asdict(safety), enforce_realtime, str(self.log_path),
                  error_recovery, max_log_seconds, self.events))

    def start(self, timeout: float = 30.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.read_status()
            if s[shm.STATUS] == shm.RUNNING:
                return
            if s[shm.STATUS] == shm.FAILED or not self.proc.is_alive():
                raise RuntimeError(f"the control loop did not start: {self.error() or 'process exited'}")
            time.sleep(0.01)
        raise TimeoutError(f"the control loop did not start within {timeout} s")

    def read_status(self) -> np.ndarray:
        return self.status.read()[0]

    def error(self) -> str | None:
        """The first error the control process reported, if any (non-blocking)."""
        while not self.events.empty():
            kind, message = self.events.get_nowait()
            if kind == "error":
                return message
        return None

    @property
    def running(self) -> bool:
        return self.proc.is_alive() and self.read_status()[shm.STATUS] == shm.RUNNING

    def send_target(self, xyz: np.ndarray, gripper: float) -> None:
        """A new (already safety-checked) target; also the planner's heartbeat."""
        self._seq += 1
        self._buf[shm.CMD_SEQ] = self._seq
        self._buf[shm.CMD_XYZ] = xyz
        self._buf[shm.CMD_GRIP] = gripper
        self._buf[shm.CMD_HEARTBEAT] = time.monotonic()
        self.command.write(self._buf)

    def heartbeat(self) -> None:
        self._buf[shm.CMD_HEARTBEAT] = time.monotonic()
        self.command.write(self._buf)

    def wait_settled(self, timeout: float, tolerance: float = 1e-3) -> bool:
        """Waits until the commanded pose reached the last target at rest (robot-time paced)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            s = self.read_status()
            if s[shm.TARGET_SEQ_SEEN] == self._seq:
                cmd = s[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3]
                if np.linalg.norm(cmd - self._buf[shm.CMD_XYZ]) < tolerance and np.abs(s[shm.CMD_VEL]).max() < 1e-4:
                    return True
            time.sleep(0.005)
        return False

    def stop(self, timeout: float = 20.0) -> None:
        """Brakes to a stop, finishes the motion and joins the process (kills it only as a last resort)."""
        if self.proc.pid is not None and self.proc.is_alive():
            self._buf[shm.CMD_STOP] = 1.0
            self.command.write(self._buf)
            self.proc.join(timeout)
            if self.proc.is_alive():
                _LOG.error("control process did not finish in %.0f s: terminating it", timeout)
                self.proc.terminate()
                self.proc.join(5)

    def close(self) -> None:
        self.stop()
        self.command.close(unlink=True)
        self.status.close(unlink=True)
