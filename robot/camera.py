"""Cameras as processes writing the latest frame (uint8 H x W x 3, RGB) into shared memory.

- `sim`: renders franky-sim's MuJoCo scene from the simulator's published state (headless, MUJOCO_GL=egl)
  through one of the scene's named cameras (robot/sim.py CAMERAS), with `SceneRenderer`;
- `opencv`: a USB/V4L2 camera through OpenCV (`opencv-python-headless`);
- `realsense`: an Intel RealSense colour stream (`pyrealsense2`).
The planner reads the newest frame without waiting; a frame older than `timeout` means the camera stopped.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm
from robot.proc import ChildProcess


def _center_square(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crops to a square and resizes (nearest-area via PIL) to size x size, RGB uint8."""
    from PIL import Image

    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(frame[top : top + s, left : left + s])
    return np.asarray(img.resize((size, size), Image.BILINEAR))


class SceneRenderer:
    """Renders the simulator's MuJoCo scene from a joint state (qpos) through one named camera: the one code
    path of the `sim` camera process and of robot/simtools/generate.py, so both give the same pixels for the same qpos.

        scene = SceneRenderer.from_file("scene.xml", 256, "scene_cam")
        frame = scene.render(qpos)  # uint8 [size, size, 3] RGB

    Needs MUJOCO_GL set before mujoco is first imported (set here to "egl" when unset: headless, Mesa on a CPU).
    """

    def __init__(self, model: Any, size: int, camera: str) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        from vjepa_fast.runtime import preload_triton

        preload_triton()  # before Mesa's LLVM: see its docstring (a segfault otherwise)
        import mujoco

        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"the scene has no camera {camera!r} (it has {', '.join(names) or 'none'})")
        self._mj = mujoco
        self.model, self.camera, self.size = model, camera, size
        self.data = mujoco.MjData(model)
        self.renderer = mujoco.Renderer(model, size, size)

    @classmethod
    def from_file(cls, scene_xml: str | Path, size: int, camera: str) -> SceneRenderer:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco

        return cls(mujoco.MjModel.from_xml_path(str(scene_xml)), size, camera)

    @classmethod
    def from_string(cls, xml: str, size: int, camera: str) -> SceneRenderer:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco

        return cls(mujoco.MjModel.from_xml_string(xml), size, camera)

    def render(self, qpos: np.ndarray) -> np.ndarray:
        """qpos: [model.nq] float64 -> frame uint8 [size, size, 3] RGB (a new array)."""
        self.data.qpos[:] = qpos
        self._mj.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()


def camera_main(kind: str, frame_name: str, size: int, fps: float, options: dict[str, Any], events: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    frames = shm.frame_block((size, size, 3), frame_name)
    period = 1.0 / fps
    try:
        if kind == "sim":
            qpos = shm.SeqlockArray(options["qpos_name"], (options["nq_max"],), np.float64, create=False)
            buf = np.zeros(options["nq_max"])
            from robot.sim import DEFAULT_CAMERA

            scene = SceneRenderer.from_file(options["scene_xml"], size, options.get("camera") or DEFAULT_CAMERA)

            def grab() -> np.ndarray:
                qpos.read_into(buf)
                return scene.render(buf[: scene.model.nq])

            stale_after = options.get("stale_after", 2.0)
        elif kind == "opencv":
            import cv2

            cap = cv2.VideoCapture(options.get("device", 0))
            if not cap.isOpened():
                raise RuntimeError(f"cannot open OpenCV camera {options.get('device', 0)}")

            def grab() -> np.ndarray:
                ok, bgr = cap.read()
                if not ok:
                    raise RuntimeError("the OpenCV camera returned no frame")
                return _center_square(bgr[..., ::-1], size)

            stale_after = None
        elif kind == "realsense":
            import pyrealsense2 as rs

            pipe = rs.pipeline()
            conf = rs.config()
            conf.enable_stream(rs.stream.color, 640, 480, rs.format.rgb8, 30)
            pipe.start(conf)

            def grab() -> np.ndarray:
                color = pipe.wait_for_frames(2000).get_color_frame()
                return _center_square(np.asanyarray(color.get_data()), size)

            stale_after = None
        else:
            raise ValueError(f"unknown camera kind {kind!r} (sim, opencv, realsense)")
        events.put(("ready", kind))
        while True:
            t0 = time.monotonic()
            if stale_after is not None and qpos.age > stale_after:
                # The simulator stopped publishing: stop producing frames, so the planner sees a stale camera.
                time.sleep(period)
                continue
            frames.write(grab())
            time.sleep(max(0.0, period - (time.monotonic() - t0)))
    except BaseException as exc:  # noqa: BLE001
        events.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
    finally:
        frames.close()


class CameraProcess(ChildProcess):
    """Owns a camera process and its frame block; `latest()` never waits."""

    def __init__(self, kind: str, size: int = 256, fps: float = 10.0, timeout: float = 3.0, **options: Any) -> None:
        self.kind, self.size, self.timeout = kind, size, timeout
        self.frames = shm.frame_block((size, size, 3), create=True)
        self._spawn(camera_main, f"camera-{kind}", lambda ev: (kind, self.frames.name, size, fps, options, ev))
        self._buf = np.zeros((size, size, 3), np.uint8)

    def start(self, timeout: float = 60.0) -> CameraProcess:
        self.wait_ready(lambda: self.frames.sequence != 0, f"camera {self.kind} (no frame yet)", timeout)
        return self

    def latest(self) -> tuple[np.ndarray, float]:
        """(frame uint8 [H, W, 3] RGB (a copy), age in seconds). Raises if the camera stopped."""
        err = self.error()
        if err:
            raise RuntimeError(f"camera {self.kind} failed: {err}")
        self.frames.read_into(self._buf)
        age = self.frames.age
        if age > self.timeout or not self.proc.is_alive():
            raise RuntimeError(f"camera {self.kind} stopped: the newest frame is {age:.1f} s old "
                               f"(limit {self.timeout} s)")
        return self._buf.copy(), age

    def stop(self) -> None:
        self.terminate()

    def close(self) -> None:
        self.stop()
        self.frames.close(unlink=True)


def save_png(frame: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)
