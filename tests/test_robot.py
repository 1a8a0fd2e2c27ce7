"""The robot side against franky-sim (the libfranka protocol on loopback, MuJoCo physics): the safety layer,
the shared memory, the 1 kHz loop's start (continuous with O_T_EE_c) and options, the gripper process, the
full closed loop through `robot/run_mpc.py` (executed == planned), the refusal of --robot-ip without a
checkpoint, and the five faults (simulator killed, planner raises, NaN plan, camera stops, goal file that is
not an image), each ending in a safe stop with a clear message and an intact episode log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

from robot import shm  # noqa: E402
from robot.safety import (  # noqa: E402
    LIBFRANKA_EXAMPLE_TORQUE_THRESHOLDS,
    SafetyConfig,
    SafetyViolation,
    check_limits,
    check_planner_bound,
    safe_target,
)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ unit parts
def test_safe_target_rules() -> None:
    cfg = SafetyConfig(max_step=0.05)
    here = np.array([0.5, 0.0, 0.4])
    target, grip = safe_target(here, np.r_[0.3, 0.4, 0.0, 0, 0, 0, 1.7], cfg)
    np.testing.assert_allclose(target - here, [0.03, 0.04, 0.0])  # 0.5 m scaled down to 0.05 m, same direction
    assert grip == 1.0
    target, _ = safe_target(np.array([0.79, 0.44, 0.09]), np.r_[0.04, 0.03, -0.03, 0, 0, 0, 0], cfg)
    np.testing.assert_allclose(target, [0.80, 0.45, 0.08])  # clamped into the workspace box
    for bad in (np.r_[np.nan, 0, 0, 0, 0, 0, 0], np.r_[0, np.inf, 0, 0, 0, 0, 0]):
        with pytest.raises(SafetyViolation, match="non-finite"):
            safe_target(here, bad, cfg)
    with pytest.raises(SafetyViolation, match="7 values"):
        safe_target(here, np.zeros(3), cfg)
    box = SafetyConfig(max_step=0.05, bound="box")
    target, _ = safe_target(here, np.r_[0.3, -0.04, 0.0, 0, 0, 0, 0], box)
    np.testing.assert_allclose(target - here, [0.05, -0.04, 0.0])  # clipped per axis


def test_executed_step_is_the_planned_step() -> None:
    """In-bounds plans (inside or on the planner's ball, float32 as the planner returns them) pass the safety
    layer unchanged; a box planner in front of the ball safety layer is refused (its corners get rescaled)."""
    from vjepa_fast.ops import cem_sample

    cfg = SafetyConfig(max_step=0.05)  # bound="ball", the default
    here = np.array([0.5, 0.0, 0.4])
    mean = torch.zeros(1, 1, 3)
    std = torch.full((1, 1, 3), 0.2)  # wide: most samples land on the sphere after the projection
    plans = cem_sample(mean, std, -torch.full((3,), 0.05), torch.full((3,), 0.05), 2000, seed=3,
                       ball_radius=0.05, ball_dims=3)[0, :, 0].numpy()  # float32 [2000, 3]
    on_sphere = np.isclose(np.linalg.norm(plans.astype(np.float64), axis=1), 0.05, rtol=1e-5)
    assert on_sphere.sum() > 500
    for step in plans:
        target, _ = safe_target(here, np.r_[step, 0, 0, 0, 0], cfg)
        np.testing.assert_allclose(target - here, step, rtol=0, atol=1e-12)
    # The old combination: a +-max_step box scored, an L2 ball executed.
    corner = np.full(3, 0.05)
    target, _ = safe_target(here, np.r_[corner, 0, 0, 0, 0], cfg)
    assert np.linalg.norm(target - here - corner) > 0.03
    with pytest.raises(ValueError, match="rescaled after scoring"):
        check_planner_bound(0.05, "box", cfg)
    check_planner_bound(0.05, "ball", cfg)
    check_planner_bound(0.05 / np.sqrt(3), "box", cfg)
    check_planner_bound(0.05, "box", SafetyConfig(max_step=0.05, bound="box"))


def test_safety_config_is_checked_against_fr3_limits() -> None:
    with pytest.raises(ValueError, match="max_velocity"):
        SafetyConfig(max_velocity=2.0)
    with pytest.raises(ValueError, match="workspace_min"):
        SafetyConfig(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))
    with pytest.raises(ValueError, match="torque thresholds"):
        SafetyConfig(lower_torque_thresholds=(30.0,) * 7)  # lower above the default upper
    with pytest.raises(ValueError, match="6 values"):
        SafetyConfig(lower_force_thresholds=(20.0,) * 7)
    # libfranka's Cartesian pose example: lower on the wrist than on the shoulder.
    assert SafetyConfig().upper_torque_thresholds == (20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0)
    assert SafetyConfig().upper_force_thresholds == (20.0, 20.0, 20.0, 25.0, 25.0, 25.0)


def test_check_limits_catches_a_jump() -> None:
    cfg = SafetyConfig()
    t = np.arange(200) * 1e-3
    smooth = np.stack([0.5 + 0.01 * np.sin(t), np.zeros_like(t), np.full_like(t, 0.4)], 1)
    assert check_limits(t, smooth, cfg)["velocity"] < 0.02
    jumpy = smooth.copy()
    jumpy[100:, 0] += 0.05  # a 5 cm jump in one cycle: the sim would accept it, we must not
    with pytest.raises(SafetyViolation, match="velocity"):
        check_limits(t, jumpy, cfg)


def test_seqlock_block_roundtrip() -> None:
    a = shm.status_block(create=True)
    b = shm.status_block(a.name)
    try:
        values = np.arange(shm.STATUS_SLOTS, dtype=np.float64)
        a.write(values)
        out, seq = b.read()
        assert seq == 2 and np.array_equal(out, values)
    finally:
        b.close()
        a.close(unlink=True)


# ------------------------------------------------------------------------------------------ 1 kHz loop
def _session(sim, tmp_path: Path, name: str, offset: np.ndarray) -> tuple[np.lib.npyio.NpzFile, list]:
    """One control session on `sim`: start, one target at `offset`, settle, stop. Returns (control log npz,
    commanded poses [16] read from the status block while it ran)."""
    from robot.control import ControlProcess

    control = ControlProcess(sim.hostname, SafetyConfig(), tmp_path / f"{name}.npz")
    seen = []
    try:
        control.start()
        seen.append(control.read_status()[shm.COMMANDED_T].copy())
        here = seen[0].reshape(4, 4, order="F")[:3, 3]
        control.send_target(here + offset, 0.0)
        deadline = time.monotonic() + 20
        while not control.wait_settled(0.05) and time.monotonic() < deadline:
            seen.append(control.read_status()[shm.COMMANDED_T].copy())
    finally:
        control.close()
    return np.load(tmp_path / f"{name}.npz"), seen


def test_commanded_stream_starts_at_O_T_EE_c(tmp_path: Path) -> None:
    """Two sessions on one simulator (the second from wherever the first left the arm): each command stream
    starts at O_T_EE_c of its first control-loop state, with velocity, acceleration and jerk within the limits
    from the first cycle on (the arm at rest before it), the orientation held exactly."""
    from robot.sim import SimServer

    cfg = SafetyConfig()
    with SimServer(tmp_path / "sim") as sim:
        first, seen1 = _session(sim, tmp_path, "first", np.array([0.03, -0.02, -0.03]))
        second, seen2 = _session(sim, tmp_path, "second", np.array([-0.02, 0.03, 0.02]))
    for ctl, seen in ((first, seen1), (second, seen2)):
        start = ctl["start_pose"]  # O_T_EE_c of the first state inside control
        assert np.all(np.isfinite(start))
        np.testing.assert_allclose(seen[0], start, rtol=0, atol=1e-12)  # what the planner sees at RUNNING
        for pose in seen:
            np.testing.assert_array_equal(pose.reshape(4, 4, order="F")[:3, :3],
                                          start.reshape(4, 4, order="F")[:3, :3])
        log = ctl["log"]
        rest = np.repeat(start[None, 12:15], 3, axis=0)  # at rest on O_T_EE_c before the first command
        xyz = np.concatenate([rest, log[:, 3:6]])
        times = np.arange(len(xyz)) * 1e-3
        peaks = check_limits(times, xyz, cfg)
        assert peaks["velocity"] > 0.01
        assert np.linalg.norm(log[0, 3:6] - start[12:15]) < cfg.max_jerk * 1e-9  # j dt^3 / 6 per axis, at most
        assert ctl["gc_collections"] == 0
        # A stream that starts from the measured pose instead (the simulator's differs from O_T_EE_c by ~10 um
        # in the first state), or 1 mm away, fails the same check: the check can see a start discontinuity.
        for off in [1e-3, ctl["start_measured"][12:15] - start[12:15]]:
            if np.linalg.norm(off) > 1e-7:
                with pytest.raises(SafetyViolation):
                    check_limits(times, np.concatenate([rest + off, log[:, 3:6]]), cfg)


def test_loop_runs_on_while_the_planner_is_stuck_mid_write(tmp_path: Path) -> None:
    """The planner's side stops between begin_write and end_write of the command block (a preempted planner):
    the 1 kHz loop keeps its last good command, counts the torn reads and never stalls or stops; once the write
    ends, the next target is followed."""
    from robot.control import ControlProcess
    from robot.sim import SimServer

    with SimServer(tmp_path / "sim") as sim:
        control = ControlProcess(sim.hostname, SafetyConfig(), tmp_path / "c.npz")
        try:
            control.start()
            here = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
            before = control.read_status()
            control.command.begin_write()
            control.command.data[shm.CMD_XYZ] = here + 0.5  # half-written garbage the loop must not follow
            time.sleep(1.0)
            during = control.read_status()
            assert control.running, control.error()
            stuck_cycles = during[shm.CYCLES] - before[shm.CYCLES]
            assert stuck_cycles > 300, f"the loop ran only {stuck_cycles:.0f} cycles in 1 s of a stuck writer"
            assert during[shm.TORN_READS] - before[shm.TORN_READS] >= stuck_cycles - 5
            np.testing.assert_allclose(during[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3], here, atol=1e-9)
            control.command.end_write()
            control.send_target(here + np.array([0.02, 0.0, -0.01]), 0.0)
            assert control.wait_settled(20)
        finally:
            control.close()


def test_control_process_cpu_and_priority(tmp_path: Path) -> None:
    """--control-cpu pins the control process, --rt-priority gives it SCHED_FIFO (where this user may)."""
    from robot.control import ControlProcess
    from robot.sim import SimServer

    with pytest.raises(ValueError, match="rt_priority"):
        ControlProcess("127.0.0.1", SafetyConfig(), tmp_path / "x.npz", rt_priority=0)
    with pytest.raises(ValueError, match="control_cpu"):
        ControlProcess("127.0.0.1", SafetyConfig(), tmp_path / "x.npz", control_cpu=4096)
    cpu = min(os.sched_getaffinity(0))
    may_fifo = os.getuid() == 0 or _rtprio_limit() >= 10
    kwargs = {"control_cpu": cpu, **({"rt_priority": 10} if may_fifo else {})}
    with SimServer(tmp_path / "sim") as sim:
        control = ControlProcess(sim.hostname, SafetyConfig(), tmp_path / "c.npz", **kwargs)
        try:
            control.start()
            assert os.sched_getaffinity(control.proc.pid) == {cpu}
            if may_fifo:
                assert os.sched_getscheduler(control.proc.pid) == os.SCHED_FIFO
            control.stop()
            assert control.read_status()[shm.STATUS] == shm.FINISHED
        finally:
            control.close()


def _rtprio_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_RTPRIO)[0]


def test_gripper_commands_do_not_wait(tmp_path: Path) -> None:
    """The gripper runs in its own process: a command returns in milliseconds while the move (~1 s) runs."""
    from robot.gripper import GripperProcess
    from robot.sim import SimServer

    with SimServer(tmp_path / "sim") as sim:
        gripper = GripperProcess(sim.hostname)
        try:
            gripper.start()
            before = gripper.read_once().width
            target = 0.02 if before > 0.04 else 0.07
            t0 = time.perf_counter()
            seq = gripper.command(target)
            gripper.read_once()
            returned = time.perf_counter() - t0
            assert returned < 0.05, f"the gripper command took {returned:.3f} s"
            assert gripper.wait_done(seq, timeout=20)
            assert abs(gripper.read_once().width - target) < 0.005
        finally:
            gripper.close()


# ------------------------------------------------------------------------------------------ full loop
def _run_mpc(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    import os

    return subprocess.run([sys.executable, "robot/run_mpc.py", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_closed_loop_on_the_simulator(tmp_path: Path) -> None:
    """`run_mpc.py --sim` end to end: the arm moves, the logs are complete and readable as training data,
    the logged command stream respects the velocity/acceleration/jerk limits, shutdown is clean."""
    from vjepa_fast.data.episode_format import read_episode

    log = tmp_path / "run"
    proc = _run_mpc(["--sim", "--goal-offset", "0.05", "0.05", "-0.05", "--max-steps", "3", "--log-dir", str(log),
                     "--samples", "16", "--topk", "4", "--iterations", "2", "--horizon", "1"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "3 steps, finished" in proc.stdout
    summary = json.loads((log / "summary.json").read_text())
    assert {k: summary[k] for k in ("ok", "reason", "steps")} == {"ok": True, "reason": "finished", "steps": 3}
    assert len(summary["goal_xyz"]) == 3 and summary["final_ee_distance_to_goal"] >= 0.0

    ep = read_episode(log / "episode")
    assert ep.states.shape == (4, 7) and ep.frames([0, 3]).shape[0] == 2
    moved = float(torch.linalg.norm(ep.states[-1, :3] - ep.states[0, :3]))
    assert moved > 0.005, f"the arm did not move ({moved:.4f} m)"
    lines = [json.loads(x) for x in (log / "mpc_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines[:-1]] == [0, 1, 2] and lines[-1]["event"] == "stopped"
    for x in lines[:-1]:
        assert np.linalg.norm(np.subtract(x["target"], x["commanded"])) <= 0.05 + 1e-9  # max step
    assert (log / "mpc.png").stat().st_size > 1000 and (log / "goal.png").is_file()

    ctl = np.load(log / "control_log.npz")["log"]
    peaks = check_limits(np.arange(len(ctl)) * 1e-3, ctl[:, 3:6], SafetyConfig())
    assert peaks["velocity"] > 0.01  # it really moved under the limits
    assert np.all(ctl[1:, 2] > 0) and np.median(ctl[:, 2]) == pytest.approx(1e-3)  # 1 kHz on robot time


def test_goal_that_is_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "goal.png"
    bad.write_text("not an image")
    proc = _run_mpc(["--sim", "--goal", str(bad), "--log-dir", str(tmp_path / "run")], timeout=120)
    assert proc.returncode == 2
    assert "--goal" in proc.stderr and "is not an image" in proc.stderr
    assert not (tmp_path / "run" / "sim").exists()  # refused before anything started


def test_robot_ip_refuses_without_a_checkpoint(tmp_path: Path) -> None:
    goal = tmp_path / "goal.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(goal)
    # 127.0.0.250: nothing listens there; the refusal must come before any connection is tried.
    proc = _run_mpc(["--robot-ip", "127.0.0.250", "--goal", str(goal), "--log-dir", str(tmp_path / "run")],
                    timeout=120)
    assert proc.returncode == 2
    assert "--robot-ip needs a world-model checkpoint" in proc.stderr and "--predictor" in proc.stderr
    proc = _run_mpc(["--robot-ip", "127.0.0.250", "--goal", str(goal), "--predictor", "x.pt", "--random-model",
                     "tiny"], timeout=120)
    assert proc.returncode == 2 and "--random-model is only allowed with --sim" in proc.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------- faults
class FaultyPlanner:
    """Wraps the real planner and injects one fault at step `at`."""

    def __init__(self, planner, fault: str, at: int, sim=None, camera=None) -> None:
        self.planner, self.fault, self.at, self.calls = planner, fault, at, 0
        self.sim, self.camera = sim, camera

    def plan(self, *args, **kwargs):
        step, self.calls = self.calls, self.calls + 1
        result = self.planner.plan(*args, **kwargs)
        if step == self.at:
            if self.fault == "raise":
                raise RuntimeError("planner exploded (injected)")
            if self.fault == "nan":
                result.actions[0, 0, 0] = float("nan")
            if self.fault == "kill_sim":
                self.sim.kill()
            if self.fault == "camera":
                self.camera.proc.kill()
                self.camera.proc.join()
        return result


@pytest.fixture
def rig(tmp_path: Path):
    """A fresh simulator + camera + control loop + tiny random world model (one simulator per test)."""
    from robot.rig import Rig
    from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor, EncoderConfig, VideoEncoder
    from vjepa_fast.planning import CEMPlanner, PlannerConfig, WorldModel

    torch.manual_seed(0)
    wm = WorldModel(VideoEncoder(EncoderConfig.tiny()).eval(), ActionConditionedPredictor(ACPredictorConfig.tiny()))
    planner = CEMPlanner(wm, PlannerConfig(num_samples=16, topk=4, iterations=2, horizon=1, max_norm=0.03,
                                           bound="ball"))
    safety = SafetyConfig(max_step=0.03)
    with Rig(tmp_path, safety, sim=True, camera_timeout=1.5, gripper=False) as rig:
        yield {"wm": wm, "planner": planner, "sim": rig.sim, "camera": rig.camera, "control": rig.control,
               "safety": safety, "log": tmp_path / "run"}


def test_executed_equals_planned_on_the_simulator(rig) -> None:
    """On the arm the planner searches the safety layer's ball: each executed delta (target - commanded) is the
    planned first action, and the 1 kHz loop reaches it."""
    from robot.mpc import MPCRunner

    goal = rig["camera"].latest()[0]
    runner = MPCRunner(rig["wm"], rig["planner"], rig["control"], rig["camera"], rig["safety"], [goal], rig["log"],
                       settle_timeout=20)
    summary = runner.run(max_steps=3)
    assert summary.ok, summary.reason
    lines = [json.loads(x) for x in (rig["log"] / "mpc_log.jsonl").read_text().splitlines()][:-1]
    assert len(lines) == 3
    for rec in lines:
        planned = np.array(rec["action"][:3])
        executed = np.subtract(rec["target"], rec["commanded"])
        np.testing.assert_allclose(executed, planned, rtol=0, atol=1e-9)
    nexts = [np.array(r["commanded"]) for r in lines[1:]]
    for rec, reached in zip(lines, nexts):
        np.testing.assert_allclose(reached, rec["target"], atol=1e-3)  # settled on it before the next plan
    from vjepa_fast.planning import CEMPlanner

    box = CEMPlanner(rig["wm"], rig["planner"].config.replace(bound="box"))
    with pytest.raises(ValueError, match="rescaled after scoring"):
        MPCRunner(rig["wm"], box, rig["control"], rig["camera"], rig["safety"], [goal], rig["log"])


@pytest.mark.parametrize(("fault", "message", "steps_done"), [
    ("kill_sim", "control loop stopped", 1),
    ("raise", "planner exploded", 1),
    ("nan", "non-finite", 1),
    ("camera", "camera sim stopped", 2),  # killed while planning step 1: step 2 finds no fresh frame
])
def test_fault_ends_in_a_safe_stop(rig, fault: str, message: str, steps_done: int) -> None:
    from robot.mpc import MPCRunner
    from vjepa_fast.data.episode_format import read_episode

    faulty = FaultyPlanner(rig["planner"], fault, at=1, sim=rig["sim"], camera=rig["camera"])
    goal = rig["camera"].latest()[0]
    runner = MPCRunner(rig["wm"], faulty, rig["control"], rig["camera"], rig["safety"], [goal], rig["log"],
                       settle_timeout=20)
    summary = runner.run(max_steps=4)
    assert not summary.ok and message in summary.reason, summary.reason
    assert summary.steps == steps_done
    # The arm was stopped: the control process is gone (braked and finished, or failed with the simulator).
    rig["control"].proc.join(10)
    assert not rig["control"].proc.is_alive()
    status = rig["control"].read_status()[shm.STATUS]
    assert status == (shm.FAILED if fault == "kill_sim" else shm.FINISHED)
    # The log up to the fault is intact and readable as training data.
    ep = read_episode(rig["log"] / "episode")
    assert ep.states.shape[0] >= 1
    saved = json.loads((rig["log"] / "summary.json").read_text())
    assert saved["ok"] is False and message in saved["reason"]
    if fault == "nan":  # the NaN target never reached the arm
        ctl = np.load(rig["control"].log_path)["log"]
        assert np.all(np.isfinite(ctl[:, 3:6]))


def test_sim_server_moves_on_when_its_address_was_taken(tmp_path: Path, monkeypatch) -> None:
    """Another process can bind the loopback address the server chose before the server does (seen: a
    collection restarting its simulator per episode while the test suite ran): the next free one is tried.
    An address given explicitly is not replaced."""
    import socket

    from robot.sim import SimServer

    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.47", 1337))
    held.listen()
    try:
        picks = iter(["127.0.0.47", "127.0.0.48"])
        monkeypatch.setattr(SimServer, "_free_loopback", staticmethod(lambda: next(picks)))
        sim = SimServer(tmp_path / "sim")
        assert sim.hostname == "127.0.0.47"
        with sim:
            assert sim.hostname == "127.0.0.48" and sim.alive()
        with pytest.raises(RuntimeError, match="could not bind 127.0.0.47"):
            SimServer(tmp_path / "sim2", hostname="127.0.0.47").start()
    finally:
        held.close()
