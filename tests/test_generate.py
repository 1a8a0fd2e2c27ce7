"""robot/simtools/generate.py: frames and states equal the live simulator's for the same arm state, a tiny generation
run in our episode format (actions executed, resumable), and clear errors for bad arguments."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")
pytest.importorskip("mujoco")

os.environ.setdefault("MUJOCO_GL", "egl")

from robot import shm  # noqa: E402
from robot.sim import DEFAULT_CAMERA  # noqa: E402
from robot.simtools.generate import REST_TOL, GenerateConfig, SimScene, generate, main, pose_state  # noqa: E402

# Measured (2026-12-02, Mesa llvmpipe): 0 for the same full qpos, as it should be for one code path. The bound
# is that, not a tolerance.
MAX_PIXEL_DIFF_SAME_QPOS = 0


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _frozen_frame(server, camera, qpos_block, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """(live frame, the qpos it was rendered from): the server process is stopped (SIGSTOP) so the physics
    state stands still, then a frame rendered wholly after that is taken; the server continues afterwards."""
    buf = np.zeros(server.NQ_MAX)
    for _ in range(20):
        os.kill(server.proc.pid, signal.SIGSTOP)
        if qpos_block.sequence % 2 == 0:  # not stopped in the middle of a write
            break
        os.kill(server.proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    else:
        raise RuntimeError("could not stop the simulator between two qpos writes")
    try:
        # Longer than a render (~20-60 ms): a frame written after t1 started after the stop. The camera stops
        # rendering 2 s after the last qpos write (stale_after), so stay well inside that.
        time.sleep(0.4)
        t1 = time.monotonic()
        qpos_block.read_into(buf)
        deadline = t1 + 1.2
        while True:
            frame, age = camera.latest()
            if time.monotonic() - age > t1:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("no camera frame after the simulator stopped")
            time.sleep(0.01)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    return frame, buf[:nq].copy()


def test_frames_and_states_match_the_live_simulator(tmp_path: Path) -> None:
    """(1) the generator renders the live sim camera's pixels for the same qpos; (2) its 7-D state for a q is
    the O_T_EE pylibfranka's readOnce reports for that q.

    franky-sim reports O_T_EE = FK(q_d), the IK's joint target, not FK(q): `BaseRobot.kinematics` returns a
    reference into pinocchio's data, which the FK of q_d overwrites before the state is sent (FK(q) differs by
    1e-5-3e-3 m while the arm lags). The generator's q IS the IK target, so q_d is "the same q". The protocol
    sends float32, hence 1e-6.
    """
    import pylibfranka

    from robot.camera import CameraProcess
    from robot.collect import collection_safety
    from robot.control import ControlProcess
    from robot.mpc import state_from_pose
    from robot.sim import SimServer

    camera_name = "front_right"
    scene = SimScene(camera_name, 256)
    server = SimServer(tmp_path / "sim").start()
    camera = control = None
    qpos_block = shm.SeqlockArray(server.qpos_name, (server.NQ_MAX,), np.float64, create=False)
    try:
        camera = CameraProcess("sim", fps=10.0, timeout=5.0, scene_xml=str(server.scene_xml),
                               qpos_name=server.qpos_name, nq_max=server.NQ_MAX, camera=camera_name).start()
        control = ControlProcess(server.hostname, collection_safety(0.05), tmp_path / "control_log.npz")
        control.start()
        deadline = time.monotonic() + 10
        while control.read_status()[shm.CYCLES] < 50:  # RUNNING is published before the first cycle
            assert time.monotonic() < deadline, "the control loop ran no cycle"
            time.sleep(0.01)
        home = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
        control.send_target(home + np.array([0.06, -0.09, -0.07]), 0.0)
        assert control.wait_settled(20.0), control.error()
        control.close()  # the server holds the arm (at q_d); nothing waits on the server while it is stopped
        control = None

        # (2) readOnce: q_d and O_T_EE from one state packet.
        state = pylibfranka.Robot(server.hostname, pylibfranka.RealtimeConfig.kIgnore).read_once()
        q_d, o_t_ee = np.array(state.q_d), np.array(state.O_T_EE)
        assert np.abs(q_d - scene.arm.initial_q).max() > 0.05  # away from home
        np.testing.assert_allclose(scene.arm.pose(q_d), o_t_ee.reshape(4, 4, order="F"), rtol=0, atol=1e-6)
        ours = pose_state(scene.arm.pose(q_d), 0.0)
        theirs = state_from_pose(o_t_ee, 0.0).double().numpy()  # run_mpc's conversion
        np.testing.assert_allclose(ours[:3], theirs[:3], rtol=0, atol=1e-6)
        assert np.abs(_wrap(ours[3:6] - theirs[3:6])).max() < 1e-6

        # (1) the same full qpos through the generator's renderer.
        nq = scene.renderer.model.nq
        for _ in range(2):  # twice: a second, independent freeze of the same state
            live, qpos = _frozen_frame(server, camera, qpos_block, nq)
            np.testing.assert_allclose(qpos[scene.arm_qpos], q_d, atol=0.02)  # the arm is where it was read
            diff = np.abs(scene.render(qpos).astype(int) - live.astype(int))
            assert diff.max() <= MAX_PIXEL_DIFF_SAME_QPOS, f"max pixel difference {diff.max()}"
        # The generator's own scene (objects where the XML puts them, fingers at the initial opening) with the
        # live arm: the live physics moved the cubes and fingers by ~0.1 mm at most (measured 1.1e-4), which
        # flips a few edge pixels (measured: 2 of 65536).
        rest = np.setdiff1d(np.arange(nq), scene.arm_qpos)
        assert np.abs(qpos[rest] - scene.base_qpos[rest]).max() < 1e-3
        own = np.abs(scene.render(scene.qpos(qpos[scene.arm_qpos])).astype(int) - live.astype(int)).max(axis=2)
        assert (own > 0).mean() < 1e-3, f"{(own > 0).sum()} pixels differ"
    finally:
        qpos_block.close()
        if control is not None:
            control.close()
        if camera is not None:
            camera.close()
        server.stop()
        scene.close()


def test_tiny_generation_run_is_readable_and_resumable(tmp_path: Path) -> None:
    from vjepa_fast.data.episode_format import find_episodes, read_episode
    from vjepa_fast.robotics.pose import actions_from_states

    cfg = GenerateConfig(episodes=2, steps=3, seed=5)
    out = tmp_path / "eps"
    paths = generate(out, cfg, workers=1, progress=False)
    assert [p.name for p in paths] == ["ep_000000", "ep_000001"]
    assert sorted(Path(p).name for p in find_episodes(out)) == ["ep_000000", "ep_000001"]
    assert not list((tmp_path / ".eps.partial").iterdir())  # complete episodes were renamed into place
    first = {}
    for path in paths:
        meta = json.loads((path / "meta.json").read_text())
        assert meta["complete"] and meta["camera"] == f"sim:{DEFAULT_CAMERA}" and meta["fps"] == 4.0
        assert meta["extra"]["generator"]["path"] == "step"
        ep = read_episode(path)
        assert ep.states.shape == (4, 7) and ep.frames([0, 3]).shape == (2, 256, 256, 3)
        cmd = ep.commanded_actions
        assert bool(cmd[-1].isnan().all())  # the last step has no action
        moves = cmd[:3, :3].numpy()
        assert np.all(np.abs(moves) <= cfg.max_delta + 1e-9) and np.all(cmd[:3, 3:].numpy() == 0)
        # The state moved by the commanded action: each state is within REST_TOL (1e-4 m) of its commanded
        # position, so a move is within 2 x that (measured <= 7.2e-5 m over 720 generated moves).
        executed = actions_from_states(ep.states)
        np.testing.assert_allclose(executed[:, :3].numpy(), moves, rtol=0, atol=2 * REST_TOL)
        assert executed[:, 3:6].abs().max() < 1e-4  # orientation held
        assert np.all(ep.states[:, 6].numpy() == 0.5)  # the sim's initial 0.04 m of 0.08 m, as collect.py reads
        lo, hi = np.array(meta["extra"]["box_lo"]), np.array(meta["extra"]["box_hi"])
        assert np.all(ep.states[:, :3].numpy() >= lo - 1e-4) and np.all(ep.states[:, :3].numpy() <= hi + 1e-4)
        assert float((ep.frames([0]).float() - ep.frames([3]).float()).abs().mean()) > 0.1  # the image changed
        first[path.name] = ep.states.clone()
    # Resumable: a complete episode is kept, a torn one (no meta.json) is redone, identically (seed, index).
    stamp = (paths[0] / "steps.jsonl").stat().st_mtime_ns
    (paths[1] / "meta.json").unlink()
    (tmp_path / ".eps.partial" / "ep_000001").mkdir()  # and a half-written copy left by a crash
    generate(out, cfg, workers=1, progress=False)
    assert (paths[0] / "steps.jsonl").stat().st_mtime_ns == stamp
    assert np.array_equal(read_episode(paths[1]).states.numpy(), first["ep_000001"].numpy())


def test_workers_and_mp4(tmp_path: Path) -> None:
    """The process pool gives the same episodes as one process; --mp4 episodes decode."""
    from vjepa_fast.data.episode_format import read_episode

    cfg = GenerateConfig(episodes=2, steps=1, seed=2)
    one = generate(tmp_path / "one", cfg, workers=1, progress=False)
    two = generate(tmp_path / "two", cfg, workers=2, progress=False)
    for a, b in zip(one, two):
        ea, eb = read_episode(a), read_episode(b)
        assert np.array_equal(ea.states.numpy(), eb.states.numpy())
        assert np.array_equal(ea.frames([0, 1]).numpy(), eb.frames([0, 1]).numpy())
    video = generate(tmp_path / "mp4", GenerateConfig(episodes=1, steps=1, seed=2, video=True), workers=1,
                     progress=False)[0]
    assert json.loads((video / "meta.json").read_text())["frames"] == "mp4" and not (video / "frames").exists()
    frames = read_episode(video).frames([0, 1]).float()
    assert frames.shape == (2, 256, 256, 3)
    assert float((frames - read_episode(one[0]).frames([0, 1]).float()).abs().mean()) < 8  # lossy, close


@pytest.mark.parametrize("kwargs, message", [
    ({"episodes": 0}, "episodes and steps must be >= 1"),
    ({"max_delta": 0.5}, "max_delta must be in"),
    ({"camera": "nope"}, "unknown simulator camera 'nope'"),
    ({"path": "spline"}, "path must be one of"),
    ({"size": 8}, "size must be in"),
    ({"ik_step": 0.1}, "ik_step must be in"),
    ({"box_half": (0.1, 0.1)}, "box_half must be 3"),
])
def test_bad_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerateConfig(**kwargs)


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        generate(tmp_path / "x", GenerateConfig(episodes=1, steps=1), workers=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        generate(tmp_path / "file", GenerateConfig(episodes=1, steps=1), workers=1)
    assert main(["--out", str(tmp_path / "y"), "--sim-camera", "nope"]) == 2
    assert "unknown simulator camera 'nope'" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "y"), "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # nothing written on a bad argument


def test_rendering_then_triton_in_one_process() -> None:
    """Mesa's llvmpipe and libtriton both carry an LLVM: a frame rendered before triton is first imported used
    to kill the process (segmentation fault) when triton loaded; the renderer now loads triton first. Run in a
    fresh interpreter, where nothing has imported triton yet."""
    import subprocess
    import sys

    pytest.importorskip("triton")
    code = ("from robot.simtools.generate import SimScene\ns = SimScene('front_right', 32)\ns.render()\n"
            "import torch._dynamo\nprint('alive')")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stderr[-2000:])
