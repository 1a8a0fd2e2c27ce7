"""The 1 kHz control process: pylibfranka Cartesian pose control with jerk-limited interpolation (ruckig)
from the current commanded pose toward the latest target in shared memory.

Rules it keeps (libfranka's and ours): parameters are set before the loop, never inside it; the loop never
waits on the planner: one non-blocking seqlock read per cycle, and on a torn read (the planner is mid-write) it
keeps its last good command and counts the cycle in the status block; a late planner leaves the last safe
target in place, and after `planner_timeout` without a plan the loop brakes to a stop and holds; a stop request
or a dead parent process brakes to zero velocity before `motion_finished`; every exception path reports and
leaves the arm stopped. The commanded stream starts at O_T_EE_c of the first control-loop state (as libfranka's
own Cartesian pose example does), so the first command is continuous with what the arm was last commanded.
The orientation is held; translation is limited per axis in velocity, acceleration and jerk.

Inside the loop nothing is allocated by our code: the buffers, the command list and the CartesianPose are made
before it, values move as floats into preallocated lists, memoryviews and the shared block (`put`); what is
left per cycle are the objects pylibfranka and ruckig return (the state, its lists), freed by reference
counting. The garbage collector is frozen and disabled while the loop runs (a collection would be a pause of
milliseconds at an arbitrary cycle).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm
from robot.proc import ChildProcess
from robot.safety import SafetyConfig

_LOG = logging.getLogger(__name__)
LOG_COLUMNS = ("robot_time", "wall_time", "period", "cmd_x", "cmd_y", "cmd_z", "meas_x", "meas_y", "meas_z",
               "holding", "torn_reads", "work")  # work: s from the state's arrival to the command sent


def set_realtime(rt_priority: int | None, control_cpu: int | None) -> None:
    """Pins this process to `control_cpu` and/or gives it SCHED_FIFO `rt_priority` (1-99); RuntimeError saying
    what to change when the system refuses (SCHED_FIFO needs an rtprio limit, e.g. /etc/security/limits.conf)."""
    if control_cpu is not None:
        try:
            os.sched_setaffinity(0, {control_cpu})
        except OSError as exc:
            raise RuntimeError(f"cannot pin the control process to CPU {control_cpu}: {exc}") from exc
    if rt_priority is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
        except OSError as exc:
            raise RuntimeError(f"cannot give the control process SCHED_FIFO priority {rt_priority}: {exc} (allow "
                               "real-time scheduling for this user: `ulimit -r`, /etc/security/limits.conf)") from exc


def control_main(ip: str, command_name: str, status_name: str, safety: dict[str, Any], enforce_realtime: bool,
                 log_path: str, error_recovery: bool, max_log_seconds: float, events: Any,
                 rt_priority: int | None = None, control_cpu: int | None = None) -> None:
    """Entry point of the control process (spawned by `ControlProcess`)."""
    # Ctrl-C reaches the whole process group: the planner's side brakes the arm through the stop flag (a
    # KeyboardInterrupt here would end the motion without braking).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import pylibfranka as pf
    from ruckig import ControlInterface, InputParameter, OutputParameter, Result, Ruckig

    cfg = SafetyConfig(**safety)
    command = shm.command_block(command_name)
    status = shm.status_block(status_name)
    parent = os.getppid()
    rows = int(max_log_seconds * 1000)
    ncol = len(LOG_COLUMNS)
    log = np.zeros((rows, ncol))  # ring buffer, allocated once
    logv = memoryview(log.reshape(-1))  # item writes into it allocate nothing (numpy row views would)
    n = torn = missed = 0
    gc_before = gc_during = 0
    start_pose = np.full(16, np.nan)  # O_T_EE_c of the first control-loop state: where the command stream starts
    start_measured = np.full(16, np.nan)  # O_T_EE of that state (measured: off by the tracking error)
    # Two command buffers: a read goes into the spare one and becomes the current one only if it is consistent.
    cmd_v = memoryview(np.zeros(shm.COMMAND_SLOTS))
    spare_v = memoryview(np.zeros(shm.COMMAND_SLOTS))
    status_buf = np.zeros(shm.STATUS_SLOTS)
    scalars = [0.0] * shm.STATUS_SCALARS
    lo0, lo1, lo2 = (float(v) for v in cfg.workspace_min)
    hi0, hi1, hi2 = (float(v) for v in cfg.workspace_max)
    timeout = float(cfg.planner_timeout)
    x0, x1, x2 = shm.CMD_XYZ.start, shm.CMD_XYZ.start + 1, shm.CMD_XYZ.start + 2
    i_stop, i_seq, i_beat = shm.CMD_STOP, shm.CMD_SEQ, shm.CMD_HEARTBEAT
    o_meas, o_cmd, o_q, o_vel = shm.MEASURED_T.start, shm.COMMANDED_T.start, shm.Q.start, shm.CMD_VEL.start

    def publish(code: float, error: float = 0.0) -> None:
        status_buf[shm.STATUS] = code
        status_buf[shm.ERROR_CODE] = error
        status_buf[shm.CYCLES], status_buf[shm.MISSED], status_buf[shm.TORN_READS] = n, missed, torn
        status.write(status_buf)

    robot = None
    try:
        set_realtime(rt_priority, control_cpu)
        robot = pf.Robot(ip, pf.RealtimeConfig.kEnforce if enforce_realtime else pf.RealtimeConfig.kIgnore)
        # Everything is configured here, before the loop starts.
        robot.set_collision_behavior(list(cfg.lower_torque_thresholds), list(cfg.upper_torque_thresholds),
                                     list(cfg.lower_force_thresholds), list(cfg.upper_force_thresholds))
        otg = Ruckig(3, 0.001)
        inp, out = InputParameter(3), OutputParameter(3)
        zero3 = [0.0, 0.0, 0.0]
        inp.max_velocity = [cfg.max_velocity] * 3
        inp.max_acceleration = [cfg.max_acceleration] * 3
        inp.max_jerk = [cfg.max_jerk] * 3
        working, finished = Result.Working, Result.Finished
        position_mode, velocity_mode = ControlInterface.Position, ControlInterface.Velocity
        command.read_into(cmd_v)  # before the loop: may wait
        last_seq = cmd_v[i_seq]
        holding = braking = stopping = False
        try_read = command.try_read_into
        begin, put, end = status.begin_write, status.put, status.end_write
        monotonic = time.monotonic

        # Before the motion starts: a full collection here takes tens of ms, once the arm waits for commands
        # at 1 kHz it would be a communication error.
        gc.collect()
        gc.freeze()  # what exists now is never scanned again
        gc.disable()
        gc_before = sum(g["collections"] for g in gc.get_stats())

        ctrl = robot.start_cartesian_pose_control(pf.ControllerMode.CartesianImpedance)
        state, period = ctrl.readOnce()
        # libfranka's generate_cartesian_pose_motion.cpp: initial_pose = robot_state.O_T_EE_c on the first cycle.
        # Starting from O_T_EE (measured) instead would be a jump by the tracking error (~10 um in franky-sim).
        pose_values = list(state.O_T_EE_c)
        start_pose[:] = pose_values
        start_measured[:] = state.O_T_EE
        target = pose_values[12:15]
        inp.current_position = target
        inp.current_velocity = zero3
        inp.current_acceleration = zero3
        inp.target_position = target
        inp.target_velocity = zero3
        pose_cmd = pf.CartesianPose(pose_values)
        status_buf[shm.MEASURED_T] = state.O_T_EE
        status_buf[shm.COMMANDED_T] = pose_values
        status_buf[shm.Q] = state.q
        publish(shm.RUNNING)  # with the poses: the planner reads the start pose as soon as it sees RUNNING
        wall0 = monotonic()
        while True:
            now = monotonic()
            if try_read(spare_v):  # one attempt; never waits
                cmd_v, spare_v = spare_v, cmd_v
            else:
                torn += 1  # the planner is mid-write: keep the last good command
            if cmd_v[i_stop] > 0.0 and not stopping:
                stopping = braking = True
            if n % 100 == 0 and os.getppid() != parent:
                stopping = braking = True  # the planner process died: stop, do not hold forever
            seq = cmd_v[i_seq]
            if seq != last_seq and not stopping:
                last_seq = seq
                x, y, z = cmd_v[x0], cmd_v[x1], cmd_v[x2]
                if x == x and y == y and z == z:  # finite (NaN never passes the safety layer; never here either)
                    # Defence in depth: the safety layer clamped already; never leave the box here either.
                    target[0] = lo0 if x < lo0 else (hi0 if x > hi0 else x)
                    target[1] = lo1 if y < lo1 else (hi1 if y > hi1 else y)
                    target[2] = lo2 if z < lo2 else (hi2 if z > hi2 else z)
                    inp.target_position = target
                    inp.target_velocity = zero3
                    inp.control_interface = position_mode
                    holding = braking = False
                else:
                    holding = braking = True
            elif not holding and not stopping and now - cmd_v[i_beat] > timeout:
                holding = braking = True  # no plan in time: brake and hold where we are
            if braking:
                inp.control_interface = velocity_mode
                inp.target_velocity = zero3
                braking = False
            result = otg.update(inp, out)
            if result != working and result != finished:
                raise RuntimeError(f"trajectory generation failed: {result}")
            out.pass_to_input(inp)
            px, py, pz = out.new_position
            pose_values[12] = px
            pose_values[13] = py
            pose_values[14] = pz
            done = stopping and result == finished
            pose_cmd.O_T_EE = pose_values
            if done:
                pose_cmd.motion_finished = True
            ctrl.writeOnce(pose_cmd)
            sent = monotonic()

            measured = state.O_T_EE
            robot_time = state.time.to_sec()
            dt = period.to_sec()
            if dt > 0.0015:
                missed += int(dt * 1000.0 + 0.5) - 1
            base = (n % rows) * ncol
            logv[base] = robot_time
            logv[base + 1] = now - wall0
            logv[base + 2] = dt
            logv[base + 3] = px
            logv[base + 4] = py
            logv[base + 5] = pz
            logv[base + 6] = measured[12]
            logv[base + 7] = measured[13]
            logv[base + 8] = measured[14]
            logv[base + 9] = holding
            logv[base + 10] = torn
            logv[base + 11] = sent - now
            n += 1
            scalars[shm.STATUS] = shm.RUNNING
            scalars[shm.ROBOT_TIME] = robot_time
            scalars[shm.CYCLES] = n
            scalars[shm.MISSED] = missed
            scalars[shm.HOLDING] = holding
            scalars[shm.TARGET_SEQ_SEEN] = last_seq
            scalars[shm.TORN_READS] = torn
            begin()
            put(0, scalars)
            put(o_meas, measured)
            put(o_cmd, pose_values)
            put(o_q, state.q)
            put(o_vel, out.new_velocity)
            end()
            if done:
                break
            state, period = ctrl.readOnce()
        gc_during = sum(g["collections"] for g in gc.get_stats()) - gc_before
        gc.enable()
        publish(shm.FINISHED)
        events.put(("finished", f"stopped after {n} cycles ({missed} missed, {torn} torn command reads, "
                                f"{gc_during} garbage collections in the loop)"))
    except BaseException as exc:  # noqa: BLE001 - every path must report and leave the arm stopped
        gc.enable()
        message = f"{type(exc).__name__}: {exc}"
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
        np.savez(tmp, log=log[order], columns=np.array(LOG_COLUMNS), safety=np.array(str(asdict(cfg))),
                 start_pose=start_pose, start_measured=start_measured, torn_reads=torn, missed=missed, gc_collections=gc_during)
        os.replace(tmp, path)
        del logv, cmd_v, spare_v
        command.close()
        status.close()


class ControlProcess(ChildProcess):
    """Owns the control process and the shared blocks, from the planner's side."""

    def __init__(self, ip: str, safety: SafetyConfig, log_path: str | Path, *, enforce_realtime: bool = False,
                 error_recovery: bool = False, max_log_seconds: float = 600.0, rt_priority: int | None = None,
                 control_cpu: int | None = None) -> None:
        """rt_priority: SCHED_FIFO priority (1-99) of the control process; control_cpu: the CPU it is pinned to
        (both None: the scheduler's defaults)."""
        if rt_priority is not None and not 1 <= rt_priority <= 99:
            raise ValueError(f"rt_priority must be a SCHED_FIFO priority in [1, 99], got {rt_priority}")
        if control_cpu is not None and control_cpu not in os.sched_getaffinity(0):
            raise ValueError(f"control_cpu {control_cpu} is not one of this process's CPUs "
                             f"{sorted(os.sched_getaffinity(0))}")
        self.safety = safety
        self.command = shm.command_block(create=True)
        self.status = shm.status_block(create=True)
        self.log_path = Path(log_path)
        self._seq = 0
        self._buf = np.zeros(shm.COMMAND_SLOTS)
        self._buf[shm.CMD_HEARTBEAT] = time.monotonic()
        self.command.write(self._buf)
        self._spawn(control_main, "franka-control", daemon=False, args=lambda ev: (
            ip, self.command.name, self.status.name, asdict(safety), enforce_realtime, str(self.log_path),
            error_recovery, max_log_seconds, ev, rt_priority, control_cpu))

    def start(self, timeout: float = 30.0) -> None:
        self.wait_ready(lambda: self.read_status()[shm.STATUS] == shm.RUNNING, "the control loop", timeout,
                        failed=lambda: self.read_status()[shm.STATUS] == shm.FAILED)

    def read_status(self) -> np.ndarray:
        return self.status.read()[0]

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
