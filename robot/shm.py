"""Lock-free shared memory between the robot processes: a seqlock over a fixed float64 / uint8 block.

The writer bumps a sequence number to odd, writes, bumps it to even; a reader copies the block and retries
while the sequence was odd or changed. No allocation, no waiting on the writer: the 1 kHz loop never blocks.
"""

from __future__ import annotations

import time
from multiprocessing import shared_memory

import numpy as np

# Command block (planner -> control), float64 slots.
CMD_SEQ, CMD_XYZ, CMD_GRIP, CMD_HEARTBEAT, CMD_STOP = 0, slice(1, 4), 4, 5, 6
COMMAND_SLOTS = 8

# Status block (control -> planner), float64 slots.
STATUS, ERROR_CODE, ROBOT_TIME, CYCLES, MISSED, HOLDING, TARGET_SEQ_SEEN = 0, 1, 2, 3, 4, 5, 6
MEASURED_T = slice(8, 24)  # O_T_EE, column-major 4x4 (as libfranka)
COMMANDED_T = slice(24, 40)
Q = slice(40, 47)
CMD_VEL = slice(47, 50)
STATUS_SLOTS = 56

# STATUS values
STARTING, RUNNING, FINISHED, FAILED = 0.0, 1.0, 2.0, 3.0


class SeqlockArray:
    """A named shared float64 or uint8 array with a seqlock in slot 0 of a small header."""

    def __init__(self, name: str | None, shape: tuple[int, ...], dtype: np.dtype, create: bool,
                 untrack: bool = False) -> None:
        self.shape, self.dtype = shape, np.dtype(dtype)
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        header = 16  # uint64 sequence + float64 write time
        self._shm = shared_memory.SharedMemory(name=name, create=create, size=header + nbytes)
        self.name = self._shm.name
        if untrack:
            # For a process started outside multiprocessing (its own resource tracker): only the creator owns
            # (and unlinks) the block; Python < 3.13 would track it here too and unlink it when this exits.
            from multiprocessing import resource_tracker

            try:
                resource_tracker.unregister(self._shm._name, "shared_memory")
            except Exception:  # noqa: BLE001 - best effort; not tracked is fine
                pass
        self._seq = np.ndarray((1,), dtype=np.uint64, buffer=self._shm.buf, offset=0)
        self._stamp = np.ndarray((1,), dtype=np.float64, buffer=self._shm.buf, offset=8)
        self.data = np.ndarray(shape, dtype=self.dtype, buffer=self._shm.buf, offset=header)
        if create:
            self._seq[0] = 0
            self.data[...] = 0

    # ------------------------------------------------------------------------------------------ writer
    def begin_write(self) -> None:
        self._seq[0] += 1

    def end_write(self) -> None:
        self._stamp[0] = time.monotonic()
        self._seq[0] += 1

    def write(self, values: np.ndarray) -> None:
        self.begin_write()
        self.data[...] = values
        self.end_write()

    # ------------------------------------------------------------------------------------------ reader
    @property
    def sequence(self) -> int:
        return int(self._seq[0])

    def read_into(self, out: np.ndarray, retries: int = 1000) -> int:
        """Consistent copy of the block into `out`; returns the sequence number it belongs to.

        Spins briefly, then yields 0.2 ms per retry: on a loaded 2-core machine the writer can be preempted
        in the middle of a write for milliseconds, and 1000 bare spins (microseconds) then fail spuriously
        (seen while collecting data next to other jobs). So the bound is ~0.2 s, not ~1000 spins."""
        for i in range(retries):
            s0 = int(self._seq[0])
            if s0 % 2 == 0:
                out[...] = self.data
                if int(self._seq[0]) == s0:
                    return s0
            if i >= 16:
                time.sleep(2e-4)
        raise TimeoutError(f"shared block {self.name} is being written continuously")

    def read(self) -> tuple[np.ndarray, int]:
        out = np.empty(self.shape, self.dtype)
        seq = self.read_into(out)
        return out, seq

    @property
    def age(self) -> float:
        """Seconds since the last completed write (monotonic clock)."""
        return time.monotonic() - float(self._stamp[0])

    def close(self, unlink: bool = False) -> None:
        # numpy views must go before the buffer can be released.
        del self._seq, self._stamp, self.data
        self._shm.close()
        if unlink:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass


def command_block(name: str | None = None, create: bool = False) -> SeqlockArray:
    """Planner -> control: target xyz, gripper, heartbeat, stop request (written by one process only)."""
    return SeqlockArray(name, (COMMAND_SLOTS,), np.float64, create)


def status_block(name: str | None = None, create: bool = False) -> SeqlockArray:
    """Control -> planner: status, robot time, measured and commanded pose (written by one process only)."""
    return SeqlockArray(name, (STATUS_SLOTS,), np.float64, create)


def frame_block(shape: tuple[int, int, int], name: str | None = None, create: bool = False) -> SeqlockArray:
    """Latest camera frame (uint8 H x W x 3); the header stamp is the capture time."""
    return SeqlockArray(name, shape, np.uint8, create)
