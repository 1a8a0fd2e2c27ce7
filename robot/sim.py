"""The embedded simulator: franky-sim's MuJoCo FR3 behind the real libfranka protocol on loopback, with a
table, a few objects and named exterior cameras (`CAMERAS`, `DEFAULT_CAMERA`).

`python -m robot.sim --hostname 127.0.0.1 --scene-xml X --qpos-shm NAME` is what `SimServer` starts. The
server publishes the MuJoCo state (qpos) to shared memory after every physics step; the camera process
(`sim_camera_main`) keeps its own copy of the model and renders from that state, so rendering never stalls
the 1 kHz physics.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm

_LOG = logging.getLogger(__name__)
# Table top at z = 0.02 in front of the robot; objects the arm can reach; exterior cameras looking at the workspace.
OBJECTS = (("red_cube", "0.55 -0.12 0.045", "0.025 0.025 0.025", "0.85 0.15 0.15 1"),
           ("green_cube", "0.50 0.15 0.045", "0.025 0.025 0.025", "0.15 0.75 0.2 1"),
           ("blue_box", "0.68 0.02 0.035", "0.04 0.03 0.015", "0.2 0.3 0.85 1"))


@dataclass(frozen=True)
class CameraPreset:
    """A camera of the scene: MuJoCo `pos` and `xyaxes` (image right and image up; the camera looks along
    -(x cross y)) in the robot base frame, or in the frame of `body` (a camera that moves with it, e.g. the
    wrist camera on the hand), and the vertical field of view in degrees."""

    name: str
    pos: tuple[float, float, float]
    xyaxes: tuple[float, float, float, float, float, float]
    fovy: float
    description: str
    body: str = ""  # "" : fixed in the world; else the body it is mounted on

    @classmethod
    def look_at(cls, name: str, pos: tuple[float, float, float], target: tuple[float, float, float], fovy: float,
                description: str) -> CameraPreset:
        """A camera at `pos` looking at `target` with the world z axis up in the image (no roll)."""
        p, t = np.asarray(pos, float), np.asarray(target, float)
        forward = (t - p) / np.linalg.norm(t - p)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:
            raise ValueError(f"camera {name!r}: looking straight up or down needs an explicit xyaxes")
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        axes = tuple(round(float(v), 4) + 0.0 for v in np.r_[right, up])  # + 0.0: no "-0" in the XML
        return cls(name, tuple(float(v) for v in pos), axes, float(fovy), description)

    def xml_attrib(self) -> dict[str, str]:
        return {"name": self.name, "pos": " ".join(f"{v:g}" for v in self.pos),
                "xyaxes": " ".join(f"{v:g}" for v in self.xyaxes), "fovy": f"{self.fovy:g}"}


# DROID-like exterior candidates, made for robot/collect.py's reach box: home (0.554, 0.0, 0.521) m +-
# (0.12, 0.15, 0.12), i.e. the tool centre point in x 0.43-0.67, y -0.15-0.15, z 0.40-0.64 (its far-high corner
# is out of the arm's reach with the hand pointing down), the hand up to ~0.14 m above it and ~0.11 m to either
# side. Each looks from its azimuth / elevation at the middle of the reachable box and its field of view is the
# smallest that keeps the hand in the frame, 6% from the edges, over the whole box (benchmarks/
# sim_cameras.png shows them at the box's corners).
CAMERAS: dict[str, CameraPreset] = {c.name: c for c in (
    # The original camera (what the demo model in robot/assets was trained on): front, high, aimed at the
    # table, so the gripper is small near the top edge of the view.
    CameraPreset("scene_cam", (1.35, 0.0, 0.75), (0.0, 1.0, 0.0, -0.45, 0.0, 0.89), 55.0,
                 "front, 0.8 m away, aimed at the table: the gripper small near the top edge, cut off when high"),
    CameraPreset.look_at("front_right", (1.222, -0.574, 0.832), (0.543, -0.019, 0.517), 41.0,
                         "front-right oblique (40 deg off the front, 20 deg up, 0.95 m): hand and both fingers, "
                         "the arm beside it, the near table edge"),
    CameraPreset.look_at("front_left_low", (1.31, 0.446, 0.633), (0.544, -0.008, 0.555), 41.5,
                         "front-left at gripper height (30 deg off the front, 8 deg up, 0.9 m): the largest, "
                         "least occluded hand; the table mostly out of view"),
    CameraPreset.look_at("side_right", (0.823, -0.781, 0.684), (0.498, -0.019, 0.54), 41.5,
                         "from the robot's right side (70 deg off the front, 12 deg up, 0.85 m): x and z in the "
                         "image plane, y as depth; the hand seen edge-on"),
    CameraPreset.look_at("high_left", (1.176, 0.446, 1.052), (0.55, 0.022, 0.537), 43.0,
                         "higher 3/4 view from the front-left (35 deg off the front, 35 deg up, 0.95 m): hand, arm "
                         "and the table with its objects; the wrist hides part of the hand"),
    # The manipulation tasks' camera (robot/simtools/tasks.py): the table region the cube starts and ends in (x 0.44-0.64,
    # y +-0.16) with the hand up to 0.25 m above it, from the front-right like DROID's exterior cameras.
    CameraPreset.look_at("table_right", (1.0, -0.42, 0.54), (0.54, 0.0, 0.13), 46.0,
                         "front-right, 35 deg down onto the table (0.7 m): the manipulation region, objects and "
                         "hand large; the arm's upper links out of view"),
    # DROID's third camera: on the wrist, beside the hand, looking past the fingertips (the fingers open across
    # the image), so the fingers and what lies between them fill the view. In the hand frame: 7 cm out along x,
    # aimed at the hand axis 6 cm beyond the fingertips.
    CameraPreset("wrist", (0.07, 0.0, 0.0), (0.0, 1.0, 0.0, 0.9162, 0.0, 0.4008), 75.0,
                 "on the hand, beside it, looking past the fingertips: both fingers and the object between them "
                 "large; moves with the hand", body="robot0_hand"),
)}
# The camera collection (robot/collect.py, robot/simtools/generate.py), goal rendering and MPC (robot/run_mpc.py) use
# unless told otherwise (`--sim-camera NAME`).
DEFAULT_CAMERA = "front_right"


def check_camera(name: str) -> CameraPreset:
    """The preset called `name`, or a ValueError listing the names there are."""
    if name not in CAMERAS:
        raise ValueError(f"unknown simulator camera {name!r}; the scene has: {', '.join(CAMERAS)}")
    return CAMERAS[name]


def model_camera(model_file: str | os.PathLike | None) -> str | None:
    """The sim camera a world-model file records it was trained on (`save_safetensors(info={"camera": ...})`,
    as vjepa-fast train-ac exports), or None (no file, another format, or not recorded)."""
    if not model_file or not str(model_file).endswith(".safetensors") or not os.path.isfile(model_file):
        return None
    from vjepa_fast.checkpoints import safetensors_info

    cam = safetensors_info(model_file).get("camera")
    return str(cam) if cam else None


def resolve_sim_camera(given: str | None, model_file: str | os.PathLike | None) -> str:
    """The sim camera to use: the one given, else the model file's, else DEFAULT_CAMERA. A given camera that
    differs from the model's is used, with a warning (the model sees a view it was not trained on)."""
    recorded = model_camera(model_file)
    if given:
        check_camera(given)
        if recorded and recorded != given:
            _LOG.warning("--sim-camera %s differs from the camera %s that %s was trained on: the model sees a view "
                         "it never saw", given, recorded, model_file)
        return given
    return check_camera(recorded).name if recorded else DEFAULT_CAMERA


def build_scene(sim: Any, objects: dict[str, Any] | None = None) -> None:
    """Adds the table, objects and every camera of CAMERAS to a franky-sim MujocoSimulator before it starts.
    objects: name -> (x, y, yaw) to place some objects elsewhere on the table (a task layout, robot/simtools/tasks.py)."""
    for vis in sim.scene.iter("quality"):
        # Software (EGL/Mesa) rendering: shadows and multisampling cost ~6x in frame rate.
        vis.set("shadowsize", "0")
        vis.set("offsamples", "0")
    wb = sim.worldbody
    table = ET.SubElement(wb, "body", name="table", pos="0.55 0 0")
    ET.SubElement(table, "geom", type="box", size="0.35 0.45 0.01", pos="0 0 0.01", rgba="0.55 0.45 0.35 1")
    objects = dict(objects or {})
    unknown = set(objects) - {name for name, *_ in OBJECTS}
    if unknown:
        raise ValueError(f"unknown objects {sorted(unknown)}; the scene has {[name for name, *_ in OBJECTS]}")
    for name, pos, size, rgba in OBJECTS:
        attrib = {"name": name, "pos": pos}
        if name in objects:
            x, y, yaw = (float(v) for v in objects[name])
            z = 0.02 + float(size.split()[2]) + 1e-4  # resting on the table top (z 0.02)
            attrib = {"name": name, "pos": f"{x:.6f} {y:.6f} {z:.6f}",
                      "quat": f"{math.cos(yaw / 2):.9f} 0 0 {math.sin(yaw / 2):.9f}"}
        body = ET.SubElement(wb, "body", attrib)
        ET.SubElement(body, "freejoint", name=f"{name}_joint")
        ET.SubElement(body, "geom", type="box", size=size, rgba=rgba, mass="0.05", friction="1 0.01 0.001")
    bodies = {b.get("name"): b for b in sim.scene.iter("body")}
    for cam in CAMERAS.values():
        if cam.body and cam.body not in bodies:
            raise ValueError(f"camera {cam.name!r} is mounted on body {cam.body!r}, which the scene lacks")
        ET.SubElement(bodies[cam.body] if cam.body else wb, "camera", cam.xml_attrib())


def new_simulator(objects: dict[str, Any] | None = None) -> Any:
    """franky-sim's MujocoSimulator with one FR3 and our scene (objects: see `build_scene`), not yet started:
    what the server runs and what robot/simtools/generate.py compiles (so both see the same model)."""
    from franky_sim.mujoco_simulator import MujocoSimulator

    sim = MujocoSimulator(enable_visualization=False)
    sim.add_robot()
    build_scene(sim, objects)
    return sim


def scene_xml(sim: Any | None = None) -> str:
    """The MJCF text of the scene (of `sim`, or of a fresh `new_simulator()`), as the server writes it."""
    return ET.tostring((sim if sim is not None else new_simulator()).scene, encoding="unicode")


def serve(hostname: str, scene_xml_path: str, qpos_name: str | None, ready_file: str | None,
          objects: dict[str, Any] | None = None) -> None:
    import franky_sim

    running = True

    def _stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with new_simulator(objects) as sim:
        Path(scene_xml_path).write_text(scene_xml(sim))
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


class _AddressTaken(Exception):
    """The simulator's loopback address was bound by another process between choosing and binding it."""


class SimServer:
    """Starts franky-sim (MuJoCo) with our scene as a subprocess on a loopback address and stops it."""

    NQ_MAX = 64

    def __init__(self, workdir: str | Path, hostname: str | None = None, startup_timeout: float = 60.0,
                 objects: dict[str, Any] | None = None) -> None:
        self.objects = dict(objects or {})
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._hostname_given = hostname
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
        """Starts the server process and waits until it serves. The loopback address was free when chosen, but
        another process (a second rig, a test) can bind it before the child does: then the next free address
        is tried, up to 5 times, unless the address was given explicitly."""
        chosen_freely = self._hostname_given is None
        for attempt in range(5):
            try:
                return self._start_once()
            except _AddressTaken:
                if not chosen_freely or attempt == 4:
                    raise RuntimeError(f"the simulator could not bind {self.hostname} (ports 1337/1338 taken); see "
                                       f"{self.workdir / 'sim_server.log'}") from None
                time.sleep(0.2 * (attempt + 1))
                self.hostname = self._free_loopback()
        raise AssertionError("unreachable")

    def _start_once(self) -> SimServer:
        ready = self.workdir / "sim_ready"
        ready.unlink(missing_ok=True)
        # Sized generously: the exact nq is known only once MuJoCo compiled the scene in the child.
        self._qpos_store = shm.SeqlockArray(None, (self.NQ_MAX,), np.float64, create=True)
        env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        self._log = open(self.workdir / "sim_server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "robot.sim", "--hostname", self.hostname, "--scene-xml", str(self.scene_xml),
             "--qpos-shm", self._qpos_store.name, "--ready-file", str(ready),
             *(["--objects", json.dumps({k: list(v) for k, v in self.objects.items()})] if self.objects else [])],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while not ready.is_file():
            if self.proc.poll() is not None:
                self._log.close()
                log = (self.workdir / "sim_server.log").read_text(errors="replace")
                self._qpos_store.close(unlink=True)
                self._qpos_store = None
                if "Could not find available hostname" in log:
                    raise _AddressTaken(self.hostname)
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
    p.add_argument("--objects", default=None, help='JSON {"name": [x, y, yaw], ...}: where objects start')
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    serve(a.hostname, a.scene_xml, a.qpos_shm, a.ready_file, json.loads(a.objects) if a.objects else None)


if __name__ == "__main__":
    main()
