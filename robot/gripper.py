"""The gripper in its own process, off the planner's critical path.

A Franka Hand move takes ~1 s and pylibfranka holds the GIL while it blocks, so neither the planner's thread
nor a helper thread in its process may call it. The planner posts the latest wanted width into a shared block
(`command`, never waits) and reads the newest gripper state from another (`read_once`, never waits); the
process runs the moves one after the other, the newest command winning, and publishes the width between them.
"""

from __future__ import annotations

import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot import shm
from robot.proc import ChildProcess

# Command block (planner -> gripper), float64 slots.
G_SEQ, G_WIDTH, G_SPEED, G_STOP = 0, 1, 2, 3
GRIPPER_COMMAND_SLOTS = 4
# State block (gripper -> planner).
G_STATUS, G_STATE_WIDTH, G_MAX_WIDTH, G_GRASPED, G_BUSY, G_DONE_SEQ, G_TIME = 0, 1, 2, 3, 4, 5, 6
GRIPPER_STATE_SLOTS = 8


@dataclass(frozen=True)
class GripperReading:
    """What `GripperProcess.read_once` returns: the fields of pylibfranka's GripperState that we use."""

    width: float
    max_width: float
    is_grasped: bool
    busy: bool  # a move is running
    done_seq: int  # the last command sequence number whose move finished


def gripper_main(ip: str, command_name: str, state_name: str, poll: float, events: Any) -> None:
    """Entry point of the gripper process (spawned by `GripperProcess`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    import pylibfranka as pf

    commands = shm.SeqlockArray(command_name, (GRIPPER_COMMAND_SLOTS,), np.float64, create=False)
    state = shm.SeqlockArray(state_name, (GRIPPER_STATE_SLOTS,), np.float64, create=False)
    cmd = np.zeros(GRIPPER_COMMAND_SLOTS)
    out = np.zeros(GRIPPER_STATE_SLOTS)

    def publish(gripper_state: Any, status: float, busy: bool, done: float) -> None:
        if gripper_state is not None:
            out[G_STATE_WIDTH] = gripper_state.width
            out[G_MAX_WIDTH] = gripper_state.max_width
            out[G_GRASPED] = float(gripper_state.is_grasped)
        out[G_STATUS], out[G_BUSY], out[G_DONE_SEQ], out[G_TIME] = status, float(busy), done, time.monotonic()
        state.write(out)

    try:
        gripper = pf.Gripper(ip)
        done = 0.0
        publish(gripper.read_once(), shm.RUNNING, False, done)
        events.put(("ready", ip))
        while True:
            commands.read_into(cmd)
            if cmd[G_STOP] > 0:
                break
            if cmd[G_SEQ] != done:
                seq = float(cmd[G_SEQ])
                publish(None, shm.RUNNING, True, done)
                gripper.move(float(cmd[G_WIDTH]), float(cmd[G_SPEED]))  # blocks ~1 s: only this process waits
                done = seq
            publish(gripper.read_once(), shm.RUNNING, False, done)
            time.sleep(poll)
        publish(None, shm.FINISHED, False, done)
    except BaseException as exc:  # noqa: BLE001 - report; the planner stops on a failed gripper
        events.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        publish(None, shm.FAILED, False, float(out[G_DONE_SEQ]))
    finally:
        commands.close()
        state.close()


class GripperProcess(ChildProcess):
    """Owns the gripper process: `command(width)` and `read_once()` return at once."""

    def __init__(self, ip: str, speed: float = 0.05, poll: float = 0.02) -> None:
        if speed <= 0:
            raise ValueError(f"gripper speed must be > 0 m/s, got {speed}")
        self.speed = speed
        self.commands = shm.SeqlockArray(None, (GRIPPER_COMMAND_SLOTS,), np.float64, create=True)
        self.state = shm.SeqlockArray(None, (GRIPPER_STATE_SLOTS,), np.float64, create=True)
        self._cmd = np.zeros(GRIPPER_COMMAND_SLOTS)
        self._state = np.zeros(GRIPPER_STATE_SLOTS)
        self._spawn(gripper_main, "franka-gripper", lambda ev: (ip, self.commands.name, self.state.name, poll, ev))

    def start(self, timeout: float = 30.0) -> GripperProcess:
        self.wait_ready(lambda: self.state.sequence != 0, "the gripper process (no state yet)", timeout)
        self.read_once()  # raises if the process failed to connect
        return self

    def command(self, width: float, speed: float | None = None) -> int:
        """Asks for a move to `width` m (the newest command wins); returns its sequence number at once."""
        if not np.isfinite(width) or width < 0:
            raise ValueError(f"gripper width must be a finite width >= 0 m, got {width}")
        self._cmd[G_SEQ] += 1
        self._cmd[G_WIDTH] = width
        self._cmd[G_SPEED] = self.speed if speed is None else speed
        self.commands.write(self._cmd)
        return int(self._cmd[G_SEQ])

    def read_once(self) -> GripperReading:
        """The newest published state (never waits); RuntimeError if the gripper process failed."""
        err = self.error()
        self.state.read_into(self._state)
        s = self._state
        if err or s[G_STATUS] == shm.FAILED or not self.proc.is_alive():
            raise RuntimeError(f"the gripper failed: {err or 'process exited'}")
        return GripperReading(width=float(s[G_STATE_WIDTH]), max_width=float(s[G_MAX_WIDTH]),
                              is_grasped=bool(s[G_GRASPED]), busy=bool(s[G_BUSY]), done_seq=int(s[G_DONE_SEQ]))

    def wait_done(self, seq: int, timeout: float = 10.0) -> bool:
        """Waits (outside the planner's critical path: tests, scripts) until the move `seq` finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read_once().done_seq >= seq:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            self._cmd[G_STOP] = 1.0
            self.commands.write(self._cmd)
            self.proc.join(timeout)  # a move in progress finishes first (~1 s)
            self.terminate()
        self.commands.close(unlink=True)
        self.state.close(unlink=True)
