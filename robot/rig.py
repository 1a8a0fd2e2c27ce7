"""The robot rig as one object: the simulator (or a real arm's IP), the camera process, the control process and
the gripper, started in that order and stopped in reverse (the arm is braked first), whatever fails."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from robot import shm
from robot.camera import CameraProcess
from robot.control import ControlProcess
from robot.gripper import GripperProcess
from robot.safety import SafetyConfig
from robot.sim import DEFAULT_CAMERA, SimServer, check_camera

_LOG = logging.getLogger(__name__)


class Rig:
    """`with Rig(workdir, safety, sim=True) as rig:` gives `rig.control`, `rig.camera`, `rig.gripper`, `rig.sim`.

    sim: start franky-sim (MuJoCo) on a free loopback address; otherwise `robot_ip` is a real arm, driven with
    real time enforced. camera: "sim" (needs sim), "opencv" or "realsense". sim_camera: which of the scene's
    cameras (robot/sim.py CAMERAS) the sim camera renders. rt_priority / control_cpu: SCHED_FIFO priority and
    CPU of the 1 kHz control process. The gripper runs in its own process (`GripperProcess`).
    """

    def __init__(self, workdir: str | Path, safety: SafetyConfig, *, sim: bool, robot_ip: str | None = None,
                 camera: str | None = None, camera_fps: float = 10.0, camera_timeout: float = 3.0,
                 camera_device: Any = 0, gripper: bool = True, error_recovery: bool = False,
                 max_log_seconds: float = 600.0, sim_camera: str = DEFAULT_CAMERA, rt_priority: int | None = None,
                 control_cpu: int | None = None, sim_objects: dict[str, Any] | None = None) -> None:
        if not sim and not robot_ip:
            raise ValueError("give sim=True or a robot_ip")
        self.workdir = Path(workdir)
        self.safety = safety
        self.use_sim, self.robot_ip = sim, robot_ip
        self.camera_kind = camera or ("sim" if sim else "opencv")
        if self.camera_kind == "sim" and not sim:
            raise ValueError("the sim camera needs the simulator (sim=True)")
        self.sim_camera = check_camera(sim_camera).name
        self.camera_fps, self.camera_timeout, self.camera_device = camera_fps, camera_timeout, camera_device
        self.use_gripper, self.error_recovery, self.max_log_seconds = gripper, error_recovery, max_log_seconds
        self.rt_priority, self.control_cpu = rt_priority, control_cpu
        self.sim_objects = sim_objects  # a task layout: where the simulator's objects start (robot/simtools/tasks.py)
        self.sim: SimServer | None = None
        self.camera: CameraProcess | None = None
        self.control: ControlProcess | None = None
        self.gripper: GripperProcess | None = None

    def start(self) -> Rig:
        try:
            if self.use_sim:
                self.sim = SimServer(self.workdir / "sim", objects=self.sim_objects).start()
                ip = self.sim.hostname
                _LOG.info("franky-sim (MuJoCo) running on %s", ip)
            else:
                ip = self.robot_ip
            # Launched first, waited for last: their start-up (imports, connection) overlaps the camera's.
            self.control = ControlProcess(ip, self.safety, self.workdir / "control_log.npz",
                                          enforce_realtime=not self.use_sim, error_recovery=self.error_recovery,
                                          max_log_seconds=self.max_log_seconds, rt_priority=self.rt_priority,
                                          control_cpu=self.control_cpu)
            self.control.launch()
            if self.use_gripper:
                self.gripper = GripperProcess(ip)
                self.gripper.launch()
            if self.camera_kind == "sim":
                self.camera = CameraProcess("sim", fps=self.camera_fps, timeout=self.camera_timeout,
                                            scene_xml=str(self.sim.scene_xml), qpos_name=self.sim.qpos_name,
                                            nq_max=self.sim.NQ_MAX, camera=self.sim_camera)
            else:
                self.camera = CameraProcess(self.camera_kind, fps=self.camera_fps, timeout=self.camera_timeout,
                                            device=self.camera_device)
            self.camera.start()
            self.control.start()
            if self.gripper is not None:
                self.gripper.start()
        except BaseException:
            self.close()
            raise
        return self

    def commanded_xyz(self) -> np.ndarray:
        """The end-effector position the 1 kHz loop commands now, [3] m."""
        return self.control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()

    def close(self) -> None:
        """Brakes and finishes the motion, then stops the gripper, the camera and the simulator (each at most
        once)."""
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.gripper is not None:
            self.gripper.close()
            self.gripper = None
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
