"""The robot side against franky-sim (the libfranka protocol on loopback, MuJoCo physics): the safety layer,
the shared memory, the full closed loop through `robot/run_mpc.py`, and the five faults (simulator killed,
planner raises, NaN plan, camera stops, goal file that is not an image), each ending in a safe stop with a
clear message and an intact episode log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

from robot import shm  # noqa: E402
from robot.safety import SafetyConfig, SafetyViolation, check_limits, safe_target  # noqa: E402

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


def test_safety_config_is_checked_against_fr3_limits() -> None:
    with pytest.raises(ValueError, match="max_velocity"):
        SafetyConfig(max_velocity=2.0)
    with pytest.raises(ValueError, match="workspace_min"):
        SafetyConfig(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))


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


# ------------------------------------------------------------------------------------------ full loop
def _run_mpc(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    import os

    return subprocess.run([sys.executable, "robot/run_mpc.py", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_closed_loop_on_the_simulator(tmp_path: Path) -> None:
    """`run_mpc.py --sim` end to end: the arm moves, the logs are complete and readable as training data,
    the logged command stream respects the velocity/acceleration/jerk limits, shutdown is clean."""
    from vjepa_fast.data.episodes import read_episode

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
    planner = CEMPlanner(wm, PlannerConfig(num_samples=16, topk=4, iterations=2, horizon=1, max_norm=0.03))
    safety = SafetyConfig(max_step=0.03)
    with Rig(tmp_path, safety, sim=True, camera_timeout=1.5, gripper=False) as rig:
        yield {"wm": wm, "planner": planner, "sim": rig.sim, "camera": rig.camera, "control": rig.control,
               "safety": safety, "log": tmp_path / "run"}


@pytest.mark.parametrize(("fault", "message", "steps_done"), [
    ("kill_sim", "control loop stopped", 1),
    ("raise", "planner exploded", 1),
    ("nan", "non-finite", 1),
    ("camera", "camera sim stopped", 2),  # killed while planning step 1: step 2 finds no fresh frame
])
def test_fault_ends_in_a_safe_stop(rig, fault: str, message: str, steps_done: int) -> None:
    from robot.mpc import MPCRunner
    from vjepa_fast.data.episodes import read_episode

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
