"""robot/physics.py, robot/tasks.py, robot/generate_physics.py and robot/task_eval.py: the in-process physics is
franky-sim's own controller cycle, its frames and states are the live simulator's for the same state, the
scripted oracle solves every task, success is judged on the true state, and the generator and evaluator run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("franky_sim")
pytest.importorskip("mujoco")
pytest.importorskip("ruckig")

os.environ.setdefault("MUJOCO_GL", "egl")

from robot.physics import Layout, PhysicsArm  # noqa: E402
from robot.tasks import CUBE, TASKS, draw_task, go_ready, goal_frames, success  # noqa: E402


@pytest.fixture(scope="module")
def arm():
    a = PhysicsArm("table_right", 128)
    yield a
    a.close()


def test_step_is_franky_sims_own_control_cycle():
    """Our fused cycle vs franky-sim's calls (cartesian_position_control + sim.step) over a descending move
    with the hand closing: the same floating-point operations, so the same bits."""
    a, b = PhysicsArm(render=False), PhysicsArm(render=False)
    try:
        layout = Layout.draw(np.random.default_rng(3))
        for arm in (a, b):
            arm.reset(layout, settle=0)
            arm.robot.set_hand_goal(0.0, 0.05, 70.0)
        for xyz in a._trajectory(a.home, a.home + np.array([0.04, -0.03, -0.15])):
            a._step(xyz)
            b.robot.cartesian_position_control(np.r_[xyz, b._quat], None)
            b.sim.step()
        assert np.array_equal(a.data.qpos, b.data.qpos) and np.array_equal(a.data.qvel, b.data.qvel)
        assert np.abs(a.q() - np.array(a.robot.initial_q)).max() > 0.05  # it moved
    finally:
        a.close()
        b.close()


def test_layouts_and_task_draws_are_seeded_and_apart():
    for task in TASKS:
        a, b = draw_task(task, 5), draw_task(task, 5)
        assert a == b and draw_task(task, 6) != a
        xy = np.array([v[:2] for v in a.layout.objects.values()])
        gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(xy), 1)]
        assert gaps.min() >= 0.09
        if task != "grasp":
            d = np.hypot(a.target[0] - a.cube_start[0], a.target[1] - a.cube_start[1])
            assert (0.06 <= d <= 0.12) if task == "push" else (0.10 <= d <= 0.20)
    with pytest.raises(ValueError, match="unknown task 'lift'; the tasks are grasp, push, pick_place"):
        draw_task("lift", 0)
    # Evaluation layouts never repeat a training episode's, at any seed: the generator's episode (seed, index)
    # draws from the key [seed, index], every task from [seed, task, EVAL_STREAM].
    from robot.generate_physics import REGION as GEN_REGION

    for seed in (0, 3):
        for index in range(3):
            train = Layout.draw(np.random.default_rng([seed, index]), region=GEN_REGION).objects[CUBE][:2]
            for task in TASKS:
                assert np.hypot(*(np.array(draw_task(task, seed + index).cube_start[:2]) - train)) > 1e-6


@pytest.mark.parametrize("task", TASKS)
def test_scripted_oracle_solves_the_task_and_untouched_scenes_fail(arm, task):
    inst = draw_task(task, 0)
    arm.reset(inst.layout)
    go_ready(arm)
    ok, info = success(inst, arm)
    assert not ok, f"{task} judged done before anything happened: {info}"
    frames, oracle = goal_frames(inst, arm)
    assert oracle["success"], f"the scripted {task} failed: {success(inst, arm)[1]}"
    assert len(frames) >= 2 and frames[0].shape == (128, 128, 3)
    assert not np.array_equal(frames[0], frames[-1])


def test_grasp_needs_a_hold_and_5_cm(arm):
    """A cube lifted 3 cm is not a grasp; one lifted 10 cm and held is; the same cube let go is not."""
    inst = draw_task("grasp", 1)
    arm.reset(inst.layout)
    go_ready(arm)
    c = arm.object_xyz(CUBE)
    arm.move_to(np.array([c[0], c[1], 0.15]), 0.0)
    arm.move_to(np.array([c[0], c[1], 0.05]))
    arm.move_to(arm.commanded, 1.0)
    assert arm.holding(CUBE)
    arm.move_to(np.array([c[0], c[1], 0.08]))
    ok, info = success(inst, arm)
    assert not ok and 0.02 < info["lift_m"] < 0.05, info
    arm.move_to(np.array([c[0], c[1], 0.15]))
    ok, info = success(inst, arm)
    assert ok and info["lift_m"] > 0.09, info
    arm.move_to(arm.commanded, 0.0)
    assert not success(inst, arm)[0]


def test_state_and_snapshot_round_trip(arm):
    arm.reset(Layout.default())
    go_ready(arm)
    s0, f0 = arm.state(), arm.render()
    snap = arm.snapshot()
    arm.act(np.array([0.03, 0.0, -0.04]), grip=1.0)
    s1 = arm.state()
    np.testing.assert_allclose(s1[:3] - s0[:3], [0.03, 0.0, -0.04], atol=2e-3)  # the commanded move, at rest
    assert s1[6] > 0.9 and s0[6] < 0.05  # closed empty vs open (0 open .. 1 closed)
    arm.restore(snap)
    assert np.array_equal(arm.state(), s0) and np.array_equal(arm.render(), f0)


def test_frames_and_states_match_the_live_simulator(tmp_path: Path):
    """For the live simulator's own joint and object state (the arm moved and the hand closed through the
    libfranka protocol, a cube pushed by hand into a new place): PhysicsArm renders the live camera's pixels and
    reports pylibfranka's O_T_EE as its state."""
    pytest.importorskip("pylibfranka")
    import pylibfranka

    from robot import shm
    from robot.camera import CameraProcess
    from robot.collect import collection_safety
    from robot.control import ControlProcess
    from robot.generate import pose_state
    from robot.mpc import state_from_pose
    from robot.sim import SimServer
    from test_generate import _frozen_frame, _wrap

    arm = PhysicsArm("table_right", 256)
    server = SimServer(tmp_path / "sim").start()
    camera = control = None
    qpos_block = shm.SeqlockArray(server.qpos_name, (server.NQ_MAX,), np.float64, create=False)
    try:
        camera = CameraProcess("sim", fps=10.0, timeout=5.0, scene_xml=str(server.scene_xml),
                               qpos_name=server.qpos_name, nq_max=server.NQ_MAX, camera="table_right").start()
        control = ControlProcess(server.hostname, collection_safety(0.05), tmp_path / "control_log.npz")
        control.start()
        while control.read_status()[shm.CYCLES] < 50:
            pass
        home = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
        for delta in ([-0.05, 0.0, -0.12], [0.0, 0.0, -0.12]):  # down onto the table region
            control.send_target(home + np.array(delta), 0.0)
            assert control.wait_settled(20.0), control.error()
        control.close()
        control = None
        gripper = pylibfranka.Gripper(server.hostname)
        gripper.move(0.02, 0.05)
        state = pylibfranka.Robot(server.hostname, pylibfranka.RealtimeConfig.kIgnore).read_once()
        q_d, o_t_ee = np.array(state.q_d), np.array(state.O_T_EE)
        live, qpos = _frozen_frame(server, camera, qpos_block, arm.model.nq)
        arm.data.qpos[:] = qpos
        arm.q_d = q_d
        ours = arm.state()
        theirs = state_from_pose(o_t_ee, arm.gripper()).double().numpy()
        np.testing.assert_allclose(ours[:3], theirs[:3], rtol=0, atol=1e-6)  # float32 on the wire
        assert np.abs(_wrap(ours[3:6] - theirs[3:6])).max() < 1e-6
        np.testing.assert_allclose(ours, pose_state(arm.ee_pose(), arm.gripper()))
        assert 0.5 < arm.gripper() < 1.0  # the fingers moved to 2 cm through the gripper server
        diff = np.abs(arm.render().astype(int) - live.astype(int))
        assert diff.max() == 0, f"max pixel difference {diff.max()}"
    finally:
        qpos_block.close()
        if control is not None:
            control.close()
        if camera is not None:
            camera.close()
        server.stop()
        arm.close()


def test_generate_physics_tiny_run_is_readable_and_resumable(tmp_path: Path):
    from robot.generate_physics import PhysicsGenConfig, generate_physics, main
    from vjepa_fast.data.episodes import read_episode
    from vjepa_fast.robotics.pose import actions_from_states

    cfg = PhysicsGenConfig(episodes=2, steps=5, seed=3, size=64, mix=(1.0, 0.0, 0.0, 0.0), epsilon=0.0)
    paths = generate_physics(tmp_path / "eps", cfg, workers=1, progress=False)
    for path in paths:
        meta = json.loads((path / "meta.json").read_text())
        assert meta["complete"] and meta["camera"] == "sim:table_right" and meta["extra"]["kind"] == "grasp"
        ep = read_episode(path)
        assert ep.states.shape == (6, 7) and ep.frames([0, 5]).shape == (2, 64, 64, 3)
        cmd = ep.commanded_actions[:5].numpy()
        assert np.all(np.abs(cmd[:, :3]) <= cfg.max_delta + 1e-9)
        executed = actions_from_states(ep.states).numpy()
        # A move's state change is the commanded one to within the controller's rest error (mm: the arm stops
        # against the cube or table on the way down at worst).
        np.testing.assert_allclose(executed[:, :3], cmd[:, :3], atol=5e-3)
    stamp = (paths[0] / "meta.json").stat().st_mtime_ns
    assert generate_physics(tmp_path / "eps", cfg, workers=1, progress=False) == paths
    assert (paths[0] / "meta.json").stat().st_mtime_ns == stamp  # complete episodes are not redone
    assert main(["--out", str(tmp_path / "x"), "--episodes", "1", "--mix", "0", "0", "0", "0"]) == 2
    assert main(["--out", str(tmp_path / "x"), "--episodes", "1", "--seed", "-1"]) == 2


def test_sim_eval_task_runs_the_oracle_and_random_actions(tmp_path: Path, capsys):
    from vjepa_fast.cli import main

    out = tmp_path / "ev"
    assert main(["sim-eval", "--task", "push", "--goals", "1", "--method", "oracle", "--method", "random-actions",
                 "--out", str(out), "--max-steps", "8"]) == 0
    rows = {r["method"]: r for r in json.loads((out / "sim_eval.json").read_text())["summary"]}
    assert set(rows) == {"oracle", "random-actions"}
    for r in rows.values():
        assert {"method", "success", "trials", "success_rate", "plan_s_per_step"} <= set(r) and r["trials"] == 1
    assert rows["oracle"]["success"] == 1 and rows["random-actions"]["success"] == 0
    assert (out / "sim_eval.png").is_file() and (out / "trials" / "oracle" / "push_000.png").is_file()
    assert "| oracle | 1/1 (100%)" in capsys.readouterr().out
    assert main(["sim-eval", "--task", "push", "--goals", "1", "--method", "oracle", "--seed", "-1",
                 "--out", str(out)]) == 2
    assert "seed must be >= 0, got -1" in capsys.readouterr().err


def test_subgoal_schedule_budgets_and_plateau():
    from vjepa_fast.planning import SubgoalSchedule

    s = SubgoalSchedule((3, 2, 5))
    # Improving every step: the budget alone moves on (3 steps on 0, 2 on 1, then 2 stays).
    assert [s.update(1.0 - 0.1 * i) for i in range(8)] == [0, 0, 0, 1, 1, 2, 2, 2]
    s = SubgoalSchedule((10, 10), min_gain=0.02, patience=2)
    # A plateau (< 2% better than the best for 2 steps) moves on early.
    assert [s.update(d) for d in (1.0, 0.5, 0.495, 0.494, 0.3)] == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="budgets must be >= 1"):
        SubgoalSchedule((2, 0))


def test_run_mpc_task_through_the_protocol(tmp_path: Path, capsys):
    """--sim --task: the layout placed in the live simulator, sub-goal images written, the gripper planned
    through the gripper process, success judged and printed (a random model: it fails)."""
    pytest.importorskip("pylibfranka")
    from robot.run_mpc import main

    rc = main(["--sim", "--task", "push", "--task-seed", str(2), "--random-model", "tiny",
               "--max-steps", "2", "--samples", "16", "--iterations", "2", "--log-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"task push (layout seed {2}): FAILED" in out and "target_distance_m" in out
    assert sorted(p.name for p in (tmp_path / "run").glob("goal_*.png")) == ["goal_0.png", "goal_1.png"]
    log = [json.loads(line) for line in (tmp_path / "run" / "mpc_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "plan" in r]
    assert len(steps) == 2 and all(len(r["plan"][0]) == 7 for r in steps)


def test_behaviour_cloning_learns_and_round_trips(tmp_path: Path):
    """train-bc on a small cache of physics episodes: the loss falls, the file loads, a decision is 7-D."""
    import torch

    from robot.generate_physics import PhysicsGenConfig, generate_physics
    from vjepa_fast.checkpoints import save_safetensors
    from vjepa_fast.data.episodes import PlannerPreprocess, find_episodes, read_episode
    from vjepa_fast.data.latent_cache import build_latent_cache
    from vjepa_fast.models import EncoderConfig, VideoEncoder
    from vjepa_fast.train.bc import load_bc_policy, main, train_bc

    cfg = PhysicsGenConfig(episodes=3, steps=6, seed=4, size=64, mix=(1.0, 1.0, 0.0, 1.0))
    generate_physics(tmp_path / "eps", cfg, workers=1, progress=False)
    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig.tiny()).eval()
    save_safetensors(tmp_path / "enc.safetensors", {"encoder": enc})
    build_latent_cache(tmp_path / "cache", find_episodes(tmp_path / "eps"), enc, preprocess=PlannerPreprocess(size=64),
                       reader=read_episode)
    m = train_bc(tmp_path / "cache", tmp_path / "enc.safetensors", tmp_path / "bc", steps=500, batch_size=16,
                 val_fraction=0.34, progress=False)
    assert m["log"][-1]["train_loss"] < 0.5 * m["log"][0]["train_loss"], m["log"]
    policy = load_bc_policy(tmp_path / "bc" / "policy.safetensors")
    frame = np.zeros((64, 64, 3), np.uint8)
    z = policy.world_model.encode_image_files([frame])
    a = policy.act(z, np.r_[0.5, 0.0, 0.25, np.pi, 0.0, 0.0, 0.0], z)
    assert a.shape == (7,) and np.all(np.isfinite(a)) and np.all(a[3:6] == 0)
    assert main(["--cache", str(tmp_path / "nothing"), "--encoder", str(tmp_path / "enc.safetensors"),
                 "--out", str(tmp_path / "x")]) == 2
