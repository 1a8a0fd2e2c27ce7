"""Lock-free shared memory between the robot processes: a seqlock over a fixed float64 / uint8 block.

The writer bumps a sequence number to odd, writes, bumps it to even; a reader copies the block and accepts the
copy when the sequence was even and unchanged. The seqlock itself is C++ (`vjepa_fast._C.Seqlock`,
csrc/seqlock/): acquire/release atomics make it correct on any CPU (aarch64 control PCs included), not only
under x86's store order.

Readers: `try_read_into(out)` is one attempt that never waits (the 1 kHz loop's call: on False it keeps its last
good copy); `read_into(out)` / `read()` retry for up to ~0.2 s and are for processes that may wait (planner,
camera). Writers: `write(values)`, or `begin_write()`, fill `data` / `put(offset, values)`, `end_write()`. One
writer per block.
"""

from __future__ import annotations

import time
from multiprocessing import shared_memory

import numpy as np

import vjepa_fast

if vjepa_fast._C is None:
    raise ImportError("robot.shm needs the compiled extension vjepa_fast._C (its seqlock): build it with "
                      "`pip install --no-build-isolation -e .`")
_Seqlock = vjepa_fast._C.Seqlock

# Command block (planner -> control), float64 slots.
CMD_SEQ, CMD_XYZ, CMD_GRIP, CMD_HEARTBEAT, CMD_STOP = 0, slice(1, 4), 4, 5, 6
COMMAND_SLOTS = 8

# Status block (control -> planner), float64 slots. MISSED: cycles lost on robot time (a period > 1 ms);
# TORN_READS: cycles whose command read overlapped a write (the loop kept its last good command).
STATUS, ERROR_CODE, ROBOT_TIME, CYCLES, MISSED, HOLDING, TARGET_SEQ_SEEN, TORN_READS = 0, 1, 2, 3, 4, 5, 6, 7
STATUS_SCALARS = 8  # slots 0-7: the scalars above
MEASURED_T = slice(8, 24)  # O_T_EE, column-major 4x4 (as libfranka)
COMMANDED_T = slice(24, 40)
Q = slice(40, 47)
CMD_VEL = slice(47, 50)
STATUS_SLOTS = 56

# STATUS values
STARTING, RUNNING, FINISHED, FAILED = 0.0, 1.0, 2.0, 3.0

HEADER_BYTES = 16  # uint64 sequence + float64 stamp of the last write (csrc/seqlock/seqlock.h)


class SeqlockArray:
    """A named shared float64 or uint8 array behind a seqlock (the header: sequence and write time)."""

    def __init__(self, name: str | None, shape: tuple[int, ...], dtype: np.dtype, create: bool,
                 untrack: bool = False) -> None:
        self.shape, self.dtype = shape, np.dtype(dtype)
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self._shm = shared_memory.SharedMemory(name=name, create=create, size=HEADER_BYTES + nbytes)
        self.name = self._shm.name
        if untrack:
            # For a process started outside multiprocessing (its own resource tracker): only the creator owns
            # (and unlinks) the block; Python < 3.13 would track it here too and unlink it when this exits.
            from multiprocessing import resource_tracker

            try:
                resource_tracker.unregister(self._shm._name, "shared_memory")
            except Exception:  # noqa: BLE001 - best effort; not tracked is fine
                pass
        # In-place writers fill this view between begin_write() and end_write().
        self.data = np.ndarray(shape, dtype=self.dtype, buffer=self._shm.buf, offset=HEADER_BYTES)
        if create:
            self.data[...] = 0  # before any other process attaches; the header is zero already
        self._lock = _Seqlock(self._shm.buf, nbytes, self.dtype == np.float64)

    # ------------------------------------------------------------------------------------------ writer
    def begin_write(self) -> None:
        self._lock.begin_write()

    def end_write(self) -> None:
        self._lock.end_write()

    def write(self, values: np.ndarray) -> None:
        """One whole write; values: a C-contiguous array of the block's shape and dtype."""
        self._lock.write(values)

    def put(self, offset: int, values: list[float] | tuple[float, ...]) -> None:
        """Between begin_write() and end_write() of a float64 block: data[offset:offset + len(values)] = values.
        Takes the lists pylibfranka returns as they are (no array is made)."""
        self._lock.put(offset, values)

    # ------------------------------------------------------------------------------------------ reader
    @property
    def sequence(self) -> int:
        return self._lock.sequence

    def try_read_into(self, out: np.ndarray) -> bool:
        """One attempt, never waits (microseconds): True with a consistent copy in `out` (C-contiguous, the
        block's size); False while a write is in progress or overlapped the copy, `out` then holds a mix."""
        return self._lock.try_read_into(out)

    def read_into(self, out: np.ndarray, timeout: float = 0.2) -> int:
        """Consistent copy of the block into `out`, waiting for a writer mid-write; returns its sequence number.

        Not for the 1 kHz loop (try_read_into). Spins briefly, then yields 0.2 ms per retry: on a loaded 2-core
        machine the writer can be preempted in the middle of a write for milliseconds. TimeoutError after
        `timeout` s (the writer stopped mid-write)."""
        try_read = self._lock.try_read_into
        for _ in range(16):
            if try_read(out):
                return self._lock.last_read_sequence
        deadline = time.monotonic() + timeout
        while True:
            if try_read(out):
                return self._lock.last_read_sequence
            if time.monotonic() > deadline:
                raise TimeoutError(f"shared block {self.name} is being written continuously (or its writer "
                                   f"stopped mid-write)")
            time.sleep(2e-4)

    def read(self) -> tuple[np.ndarray, int]:
        out = np.empty(self.shape, self.dtype)
        seq = self.read_into(out)
        return out, seq

    @property
    def age(self) -> float:
        """Seconds since the last completed write (monotonic clock)."""
        return time.monotonic() - self._lock.stamp

    def close(self, unlink: bool = False) -> None:
        # The seqlock's buffer and the numpy view must go before the shared memory can be released.
        self._lock.release()
        self.__dict__.pop("data", None)
        self._shm.close()
        if unlink:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def __del__(self) -> None:
        # Not closed explicitly: let go of the buffer so that SharedMemory's own finaliser can unmap it.
        lock = self.__dict__.get("_lock")
        if lock is not None:
            lock.release()
        self.__dict__.pop("data", None)


def command_block(name: str | None = None, create: bool = False) -> SeqlockArray:
    """Planner -> control: target xyz, gripper, heartbeat, stop request (written by one process only)."""
    return SeqlockArray(name, (COMMAND_SLOTS,), np.float64, create)


def status_block(name: str | None = None, create: bool = False) -> SeqlockArray:
    """Control -> planner: status, robot time, measured and commanded pose (written by one process only)."""
    return SeqlockArray(name, (STATUS_SLOTS,), np.float64, create)


def frame_block(shape: tuple[int, int, int], name: str | None = None, create: bool = False) -> SeqlockArray:
    """Latest camera frame (uint8 H x W x 3); the header stamp is the capture time."""
    return SeqlockArray(name, shape, np.uint8, create)
