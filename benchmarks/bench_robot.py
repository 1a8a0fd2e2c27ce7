"""Robot-side timings against franky-sim: the 1 kHz control loop's period statistics, and the end-to-end
MPC step latency (camera frame -> safety-checked command) with the `cpu-small` planner and a random model.

Run: `pytest benchmarks/bench_robot.py --benchmark-only`. The simulator runs at ~0.8-0.9x real time on the
2-core machine; periods are reported both on robot time (what the arm sees) and on wall time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

from robot import shm  # noqa: E402
from robot.control import ControlProcess  # noqa: E402
from robot.safety import SafetyConfig  # noqa: E402
from robot.sim import SimServer  # noqa: E402


def _period_stats(log: np.ndarray) -> dict[str, float]:
    robot_dt = log[1:, 2]
    wall_dt = np.diff(log[:, 1])
    return {
        "cycles": int(len(log)),
        "robot_period_mean_ms": round(1e3 * robot_dt.mean(), 4),
        "robot_period_max_ms": round(1e3 * robot_dt.max(), 3),
        "missed_cycles": int(np.round(robot_dt / 1e-3).sum() - len(robot_dt)),
        "wall_period_mean_ms": round(1e3 * wall_dt.mean(), 4),
        "wall_period_p99_ms": round(1e3 * np.percentile(wall_dt, 99), 3),
        "wall_period_max_ms": round(1e3 * wall_dt.max(), 3),
    }


def test_control_loop_1khz(benchmark, tmp_path: Path) -> None:
    """3 s of the loop while it follows 4 targets; the timed function is one whole session."""
    benchmark.group = "robot: 1 kHz loop on franky-sim"
    stats: dict[str, float] = {}

    def session() -> None:
        with SimServer(tmp_path / "sim") as sim:
            control = ControlProcess(sim.hostname, SafetyConfig(), tmp_path / "control_log.npz")
            control.start()
            start = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
            for k in range(4):
                control.send_target(start + 0.03 * np.array([np.cos(k), np.sin(k), -0.5]), 0.0)
                control.wait_settled(10)
            time.sleep(0.5)
            control.close()
        stats.update(_period_stats(np.load(tmp_path / "control_log.npz")["log"]))

    benchmark.pedantic(session, rounds=1, iterations=1)
    benchmark.extra_info.update(stats)


def test_mpc_step_latency_cpu_small(benchmark, tmp_path: Path) -> None:
    """Frame -> command latency of MPC steps with the cpu-small planner (200 samples, top-10, 5 iterations,
    horizon 2) and cpu_small random models, on the simulator."""
    from robot.camera import CameraProcess
    from robot.mpc import MPCRunner
    from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor, EncoderConfig, VideoEncoder
    from vjepa_fast.planning import CEMPlanner, PlannerConfig, WorldModel

    benchmark.group = "robot: MPC step latency (cpu-small)"
    torch.manual_seed(0)
    wm = WorldModel(VideoEncoder(EncoderConfig.cpu_small()).eval(),
                    ActionConditionedPredictor(ACPredictorConfig.cpu_small()))
    planner = CEMPlanner(wm, PlannerConfig.cpu_small(max_norm=0.03))
    records = []

    def episode() -> None:
        with SimServer(tmp_path / "sim") as sim:
            camera = CameraProcess("sim", scene_xml=str(sim.scene_xml), qpos_name=sim.qpos_name,
                                   nq_max=sim.NQ_MAX).start()
            safety = SafetyConfig(max_step=0.03)
            control = ControlProcess(sim.hostname, safety, tmp_path / "control_log.npz")
            control.start()
            goal = camera.latest()[0]
            summary = MPCRunner(wm, planner, control, camera, safety, [goal], tmp_path / "run").run(4)
            control.close()
            camera.close()
        assert summary.ok, summary.reason
        records.extend(summary.records)

    benchmark.pedantic(episode, rounds=1, iterations=1)
    lat = np.array([r.latency_seconds for r in records[1:]])  # step 0 includes one-off warm-up
    benchmark.extra_info["latency_mean_s"] = round(float(lat.mean()), 3)
    benchmark.extra_info["latency_max_s"] = round(float(lat.max()), 3)
    benchmark.extra_info["plan_mean_s"] = round(float(np.mean([r.plan_seconds for r in records[1:]])), 3)
