"""Robot-side timings against franky-sim: the 1 kHz control loop's period statistics (on a quiet machine, and
under CPU load: one busy process per core beside it, with and without SCHED_FIFO for the control process),
and the end-to-end MPC step latency (camera frame -> safety-checked command) with the `cpu-small` planner and
a random model.

Run: `pytest benchmarks/bench_robot.py --benchmark-only`. The simulator runs at ~0.8-0.9x real time on the
2-core machine; periods are reported both on robot time (what the arm sees; missed cycles are counted there)
and on wall time (mean / p99 / p99.9 / max).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
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


def _period_stats(ctl: np.lib.npyio.NpzFile) -> dict[str, float]:
    log = ctl["log"]
    robot_dt = log[1:, 2]
    wall_dt = np.diff(log[:, 1])
    return {
        "cycles": int(len(log)),
        "robot_period_mean_ms": round(1e3 * robot_dt.mean(), 4),
        "robot_period_max_ms": round(1e3 * robot_dt.max(), 3),
        "missed_cycles": int(np.round(robot_dt / 1e-3).sum() - len(robot_dt)),
        "wall_period_mean_ms": round(1e3 * wall_dt.mean(), 4),
        "wall_period_p99_ms": round(1e3 * np.percentile(wall_dt, 99), 3),
        "wall_period_p99.9_ms": round(1e3 * np.percentile(wall_dt, 99.9), 3),
        "wall_period_max_ms": round(1e3 * wall_dt.max(), 3),
        # Our part of a cycle (state in -> command out), apart from the simulator's pacing of the period.
        "work_mean_ms": round(1e3 * log[:, 11].mean(), 4),
        "work_p99.9_ms": round(1e3 * np.percentile(log[:, 11], 99.9), 3),
        "work_max_ms": round(1e3 * log[:, 11].max(), 3),
        "torn_command_reads": int(ctl["torn_reads"]),
        "gc_collections_in_loop": int(ctl["gc_collections"]),
    }


@contextmanager
def _cpu_load(busy: int):
    """`busy` processes spinning at 100% CPU beside the benchmark (none for 0)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize(("load", "rt_priority"), [("quiet", None), ("quiet", 80), ("loaded", None), ("loaded", 80)],
                         ids=["quiet", "quiet-sched_fifo", "loaded", "loaded-sched_fifo"])
def test_control_loop_1khz(benchmark, tmp_path: Path, load: str, rt_priority: int | None) -> None:
    """10 s of the loop while the planner side sends a new target every 0.25 s (the command block is written
    while the loop reads it); the timed function is one whole session. loaded: one busy process per core;
    sched_fifo: the control process at SCHED_FIFO 80 (--rt-priority 80), where this user may."""
    if rt_priority is not None and os.getuid() != 0 and _rtprio_limit() < rt_priority:
        pytest.skip("SCHED_FIFO is not allowed for this user (ulimit -r)")
    benchmark.group = "robot: 1 kHz loop on franky-sim"
    stats: dict[str, float] = {}
    busy = (os.cpu_count() or 2) if load == "loaded" else 0

    def session() -> None:
        with SimServer(tmp_path / "sim") as sim:
            control = ControlProcess(sim.hostname, SafetyConfig(), tmp_path / "control_log.npz",
                                     rt_priority=rt_priority)
            control.start()
            start = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
            with _cpu_load(busy):
                t0 = control.read_status()[shm.ROBOT_TIME]
                k = 0
                while control.read_status()[shm.ROBOT_TIME] - t0 < 10.0:  # robot time
                    control.send_target(start + 0.03 * np.array([np.cos(k), np.sin(k), -0.5]), 0.0)
                    k += 1
                    time.sleep(0.25)
                control.close()
        stats.update(_period_stats(np.load(tmp_path / "control_log.npz")))
        stats["uptime_load_1min"] = round(os.getloadavg()[0], 2)

    load_before = os.getloadavg()
    benchmark.pedantic(session, rounds=1, iterations=1)
    benchmark.extra_info["load_average_before"] = [round(v, 2) for v in load_before]
    benchmark.extra_info["busy_processes"] = busy
    benchmark.extra_info.update(stats)


def _rtprio_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_RTPRIO)[0]


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
    planner = CEMPlanner(wm, PlannerConfig.cpu_small(max_norm=0.03, bound="ball"))  # the safety layer's bound
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
