"""The embedded simulator: franky-sim's MuJoCo FR3 behind the real libfranka protocol on loopback, with a
table, a few objects and a scene camera; plus the camera process that renders it.

`python -m robot.sim --hostname 127.0.0.1 --scene-xml X --qpos-shm NAME` is what `SimServer` starts. The
server publishes the MuJoCo state (qpos) to shared memory after every physics step; the camera process
(`sim_camera_main`) keeps its own copy of the model and renders from that state, so rendering never stalls
the 1 kHz physics.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm

_LOG = logging.getLogger(__name__)
CAMERA = "scene_cam"
# Table top at z = 0.02 in front of the robot; objects the arm can reach; a camera looking at the workspace.
OBJECTS = (("red_cube", "0.55 -0.12 0.045", "0.025 0.025 0.025", "0.85 0.15 0.15 1"),
           ("green_cube", "0.50 0.15 0.045", "0.025 0.025 0.025", "0.15 0.75 0.2 1"),
           ("blue_box", "0.68 0.02 0.035", "0.04 0.03 0.015", "0.2 0.3 0.85 1"))


def build_scene(sim: Any) -> None:
    """Adds the table, objects and camera to a franky-sim MujocoSimulator before it starts."""
    for vis in sim.scene.iter("quality"):
        # Software (EGL/Mesa) rendering: shadows and multisampling cost ~6x in frame rate.
        vis.set("shadowsize", "0")
        vis.set("offsamples", "0")
    wb = sim.worldbody
    table = ET.SubElement(wb, "body", name="table", pos="0.55 0 0")
    ET.SubElement(table, "geom", type="box", size="0.35 0.45 0.01", pos="0 0 0.01", rgba="0.55 0.45 0.35 1")
    for name, pos, size, rgba in OBJECTS:
        body = ET.SubElement(wb, "body", name=name, pos=pos)
        ET.SubElement(body, "freejoint", name=f"{name}_joint")
        ET.SubElement(body, "geom", type="box", size=size, rgba=rgba, mass="0.05", friction="1 0.01 0.001")
    # An exterior camera, like DROID's: in front of and above the table, looking back at the arm.
    ET.SubElement(wb, "camera", name=CAMERA, pos="1.35 0.0 0.75", xyaxes="0 1 0 -0.45 0 0.89", fovy="55")


def serve(hostname: str, scene_xml: str, qpos_name: str | None, ready_file: str | None) -> None:
    import franky_sim
    from franky_sim.mujoco_simulator import MujocoSimulator

    running = True

    def _stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with MujocoSimulator(enable_visualization=False) as sim:
        sim.add_robot()
        build_scene(sim)
        Path(scene_xml).write_text(ET.tostring(sim.scene, encoding="unicode"))
        with franky_sim.SimulationServer(sim, hostname_candidates=[hostname]) as server:
            block = None
            if qpos_name:
                block = shm.SeqlockArray(qpos_name, (sim.model.nq,), np.float64, create=False, untrack=True)

                def publish(s: Any) -> None:
                    block.begin_write()
                    block.data[:] = s.data.qpos
                    block.end_write()

                sim.register_post_step_callback(publish)
            # The imports (torch, through the seqlock extension) leave ~180k objects: a full collection
            # scanning them takes ~85 ms, a stall of the simulated arm. Frozen, collections never scan them.
            gc.freeze()
            if ready_file:  # renamed into place: the parent polls for the file and must never read it empty
                tmp = Path(ready_file + ".tmp")
                tmp.write_text(f"{sim.model.nq}\n")
                tmp.replace(ready_file)
            server.running = True
            while running:
                server.run_once(realtime=True)
            if block is not None:
                block.close()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class SimServer:
    """Starts franky-sim (MuJoCo) with our scene as a subprocess on a loopback address and stops it."""

    NQ_MAX = 64

    def __init__(self, workdir: str | Path, hostname: str | None = None, startup_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hostname = hostname or self._free_loopback()
        self.scene_xml = self.workdir / "scene.xml"
        self.timeout = startup_timeout
        self.qpos: shm.SeqlockArray | None = None
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def _free_loopback() -> str:
        for last in range(1, 50):
            host = f"127.0.0.{last}"
            if _port_free(host, 1337) and _port_free(host, 1338):
                return host
        raise RuntimeError("no free loopback address with ports 1337/1338 (127.0.0.1-49 all busy)")

    def start(self) -> SimServer:
        ready = self.workdir / "sim_ready"
        ready.unlink(missing_ok=True)
        # Sized generously: the exact nq is known only once MuJoCo compiled the scene in the child.
        self._qpos_store = shm.SeqlockArray(None, (self.NQ_MAX,), np.float64, create=True)
        env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        self._log = open(self.workdir / "sim_server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "robot.sim", "--hostname", self.hostname, "--scene-xml", str(self.scene_xml),
             "--qpos-shm", self._qpos_store.name, "--ready-file", str(ready)],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while not ready.is_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited at start-up (code {self.proc.returncode}); see "
                                   f"{self.workdir / 'sim_server.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the simulator did not start within {self.timeout} s")
            time.sleep(0.05)
        self.nq = int(ready.read_text())
        return self

    @property
    def qpos_name(self) -> str:
        return self._qpos_store.name

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Hard kill (for fault tests)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_qpos_store", None) is not None:
            self._qpos_store.close(unlink=True)
            self._qpos_store = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="franky-sim MuJoCo server with the vjepa_fast scene (used by run_mpc)")
    p.add_argument("--hostname", default="127.0.0.1")
    p.add_argument("--scene-xml", required=True, help="where to write the compiled scene (for the camera)")
    p.add_argument("--qpos-shm", default=None, help="shared block to publish qpos into")
    p.add_argument("--ready-file", default=None, help="written once the server accepts connections")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    serve(a.hostname, a.scene_xml, a.qpos_shm, a.ready_file)


if __name__ == "__main__":
    main()
