"""What the rig's child processes (control, gripper, camera) share: a spawned process that reports errors on a
queue, started without waiting (`launch`) or until it is ready (`wait_ready`), and stopped (`terminate`)."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from typing import Any


class ChildProcess:
    """Base of the rig's process owners. The child gets `self.events` (a spawn-context Queue) and puts
    ("error", message) there when it fails; the owner reads it with `error()` and never blocks."""

    def _spawn(self, target: Callable[..., Any], name: str, args: Callable[[Any], tuple], *,
               daemon: bool = True) -> None:
        """Makes (does not start) the process; `args(events)` gives its arguments, the queue among them."""
        ctx = mp.get_context("spawn")
        self.events = ctx.Queue()
        self.proc = ctx.Process(target=target, name=name, daemon=daemon, args=args(self.events))

    def launch(self) -> None:
        """Starts the process without waiting for it to come up (`wait_ready` waits): the robot processes each
        import torch (the extension's seqlock) for ~1-2 s, Rig lets them do so at the same time."""
        if self.proc.pid is None:
            self.proc.start()

    def error(self) -> str | None:
        """The first error the process reported, if any (non-blocking)."""
        while not self.events.empty():
            kind, message = self.events.get_nowait()
            if kind == "error":
                return message
        return None

    def wait_ready(self, ready: Callable[[], bool], what: str, timeout: float,
                   failed: Callable[[], bool] = lambda: False) -> None:
        """Launches the process and waits until `ready()`; RuntimeError with the child's error if it fails
        (or `failed()`), TimeoutError after `timeout` s."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not ready():
            if failed() or not self.proc.is_alive():
                raise RuntimeError(f"{what} did not start: {self.error() or 'process exited'}")
            err = self.error()
            if err:
                raise RuntimeError(f"{what} did not start: {err}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not start within {timeout} s")
            time.sleep(0.01)

    def terminate(self, timeout: float = 5.0) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout)
