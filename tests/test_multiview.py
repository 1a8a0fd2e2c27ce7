"""vjepa_fast.planning.multiview: several cameras planned on as one model. Its rollout is each view's own
rollout, its L1 energy the token-weighted mean of the views' energies, planners run on it unchanged, and bad
inputs are refused by name. The simulator side (robot/simtools): views rendered per camera, and a sim-eval
method given as FILE1+FILE2 plans on both views."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor, ACPredictorConfig
from vjepa_fast.planning import CEMPlanner, PlannerConfig, PlanningModel, WorldModel
from vjepa_fast.planning.multiview import MultiViewModel
from vjepa_fast.planning.plans import l1_energy

STATE = torch.tensor([[0.45, -0.05, 0.30, 3.0, 0.1, -0.2, 0.5]])


def _view(seed: int) -> WorldModel:
    torch.manual_seed(seed)
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny()).eval()
    with torch.no_grad():  # random weights that make the action matter
        pred.action_encoder.weight.normal_(0.0, 2.0)
    return WorldModel(None, pred, dtype="float32")


def _latents(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.layer_norm(torch.randn(1, n, d, generator=g), (d,))


def test_rollout_and_energy_are_the_views_own():
    a, b = _view(0), _view(1)
    mv = MultiViewModel([a, b], cameras=["table_right", "front_left_low"])
    assert isinstance(mv, PlanningModel)
    n, d = a.latent_shape
    assert mv.latent_shape == (2 * n, d)
    za, zb, ga, gb = (_latents(n, d, s) for s in (1, 2, 3, 4))
    actions = torch.randn(1, 5, 2, 7, generator=torch.Generator().manual_seed(5)) * 0.03
    out = mv.rollout(torch.cat([za, zb], 1), STATE, actions)
    ref_a, ref_b = a.rollout(za, STATE, actions), b.rollout(zb, STATE, actions)
    torch.testing.assert_close(out, torch.cat([ref_a, ref_b], 2), rtol=0, atol=0)
    # The L1 energy of the joint latent is the mean of the two views' energies (equal token counts).
    e = l1_energy(out, torch.cat([ga, gb], 1))
    torch.testing.assert_close(e, 0.5 * (l1_energy(ref_a, ga) + l1_energy(ref_b, gb)), rtol=1e-6, atol=1e-7)
    # The two views differ, so the joint energy is not one view's.
    assert not torch.allclose(e, l1_energy(ref_a, ga))
    assert [t.shape[-2] for t in mv.split(out)] == [n, n]


def test_cem_plans_on_the_joint_model():
    """A plan on two views equals a plan on one model whose latent is both views' (same seed, same samples)."""
    a, b = _view(0), _view(1)
    mv = MultiViewModel([a, b])
    n, d = a.latent_shape
    z0, zg = torch.cat([_latents(n, d, 1), _latents(n, d, 2)], 1), torch.cat([_latents(n, d, 3), _latents(n, d, 4)], 1)
    cfg = PlannerConfig(num_samples=16, topk=4, iterations=2, horizon=1, seed=0)
    res = CEMPlanner(mv, cfg).plan(z0, STATE, zg)
    assert res.actions.shape == (1, 1, 7) and torch.isfinite(res.energy).all()
    # Its energy is what the joint rollout of its action scores.
    again = l1_energy(mv.rollout(z0, STATE, res.actions[:, None]), zg)[0, 0]
    torch.testing.assert_close(res.energy[0], again, rtol=1e-5, atol=1e-6)


def test_bad_views_refused_by_name():
    a = _view(0)
    with pytest.raises(ValueError, match="at least one"):
        MultiViewModel([])
    with pytest.raises(ValueError, match="2 names for 1 views"):
        MultiViewModel([a], cameras=["x", "y"])
    with pytest.raises(ValueError, match="cameras must differ"):
        MultiViewModel([a, _view(1)], cameras=["x", "x"])
    with pytest.raises(TypeError, match=r"views\[1\]"):
        MultiViewModel([a, object()])
    wide = WorldModel(None, ActionConditionedPredictor(ACPredictorConfig.tiny(embed_dim=64)), dtype="float32")
    with pytest.raises(ValueError, match="one latent width"):
        MultiViewModel([a, wide])
    mv = MultiViewModel([a, _view(1)])
    with pytest.raises(ValueError, match="z0"):
        mv.rollout(torch.zeros(1, a.latent_shape[0], a.latent_shape[1]), STATE, torch.zeros(1, 2, 1, 7))
    with pytest.raises(ValueError, match="1 views given, the model has 2"):
        mv.encode_views([[None]])


# ----------------------------------------------------------------------------------------------- simulator

def _sim():
    pytest.importorskip("franky_sim")
    pytest.importorskip("mujoco")
    os.environ.setdefault("MUJOCO_GL", "egl")


def test_physics_arm_renders_other_cameras_of_the_same_state():
    _sim()
    from robot.simtools.physics import PhysicsArm
    from robot.simtools.tasks import draw_task, go_ready

    inst = draw_task("grasp", 0)
    with PhysicsArm("table_right", 64) as arm, PhysicsArm("front_left_low", 64) as other:
        for a in (arm, other):
            a.reset(inst.layout)
            go_ready(a)
        own, extra = arm.render(), arm.render("front_left_low")
        assert (extra == other.render()).all()  # the other camera's own renderer, same state
        assert (own == arm.render("table_right")).all() and not (own == extra).all()
        with pytest.raises(ValueError, match="camera"):
            arm.render("no_such_camera")


def test_sim_eval_plans_on_two_views(tmp_path: Path):
    """FILE1+FILE2: one world model per camera (each file records its camera); the trial renders both views,
    the random-model baseline keeps the two architectures, and a file without a camera is refused."""
    _sim()
    from robot.sim import model_camera
    from robot.simtools.task_eval import TaskEvalConfig, evaluate, load_model, parse_methods
    from vjepa_fast.checkpoints import safetensors_info, save_safetensors, load_safetensors

    shipped = Path(__file__).resolve().parents[1] / "robot" / "assets" / "sim_manip_world_model.safetensors"
    m = load_safetensors(shipped)
    other = tmp_path / "fll.safetensors"
    both = {"encoder": m.encoder, "predictor": m.predictor}
    save_safetensors(other, both, info={**safetensors_info(shipped), "camera": "front_left_low"})
    assert model_camera(other) == "front_left_low"
    spec = f"{shipped}+{other}"
    wm = load_model(spec)
    assert isinstance(wm, MultiViewModel) and wm.cameras == ["table_right", "front_left_low"]
    assert isinstance(load_model("", random_like=spec), MultiViewModel)
    cfg = TaskEvalConfig(task="grasp", goals=1, max_steps=2, samples=8, topk=2, iterations=1, approach_legs=2,
                         view_weights="1,0;1,0;1,1")
    trials = evaluate(parse_methods([f"two={spec}"]), cfg, tmp_path / "ev", progress=False)
    assert len(trials) == 1 and trials[0].steps == 2 and len(trials[0].latent_distance) == 2
    # the hand's closest approach to each sub-goal's oracle pose: measured for the first (approach_1), 5 sub-goals
    err = trials[0].subgoal_hand_error
    assert len(err) == 5 and err[0] is not None and 0.0 <= err[0] < 0.3 and err[2:] == [None] * 3, err
    three = TaskEvalConfig(task="grasp", goals=1, max_steps=1, view_weights="1,0,1")
    with pytest.raises(ValueError, match="3 weights per sub-goal, the model 2 views"):
        evaluate(parse_methods([f"two={spec}"]), three, tmp_path / "ev3", progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        parse_methods([f"two={shipped}+{tmp_path / 'missing.safetensors'}"])
    bare = tmp_path / "bare.safetensors"
    save_safetensors(bare, both)
    with pytest.raises(ValueError, match="records no camera"):
        load_model(f"{shipped}+{bare}")


def test_view_weights_scale_each_views_energy():
    """Weights [1, w]: the energy against weigh(goal) is E_a + w E_b (over the joint token count); a view
    weighted 0 is not rolled out and counts nothing; bad weights are refused."""
    a, b = _view(0), _view(1)
    mv = MultiViewModel([a, b])
    n, d = a.latent_shape
    z0 = torch.cat([_latents(n, d, 1), _latents(n, d, 2)], 1)
    goal = torch.cat([_latents(n, d, 3), _latents(n, d, 4)], 1)
    actions = torch.randn(1, 4, 1, 7, generator=torch.Generator().manual_seed(6)) * 0.03
    ea = l1_energy(a.rollout(z0[:, :n], STATE, actions), goal[:, :n])
    eb = l1_energy(b.rollout(z0[:, n:], STATE, actions), goal[:, n:])
    for w in (0.25, 0.0):
        mv.set_weights([1.0, w])
        e = l1_energy(mv.rollout(z0, STATE, actions), mv.weigh(goal))
        torch.testing.assert_close(e, 0.5 * (ea + w * eb), rtol=1e-6, atol=1e-7)
    coarse = mv.with_dtype("float32")
    mv.set_weights([0.5, 1.0])
    assert coarse.weights == [0.5, 1.0]  # shared with the planner's coarse copy
    for bad in ([1.0], [0.0, 0.0], [-1.0, 1.0]):
        with pytest.raises(ValueError, match="weights"):
            mv.set_weights(bad)


def test_task_eval_view_weights_parse_and_refuse():
    pytest.importorskip("mujoco")
    from robot.simtools.task_eval import TaskEvalConfig

    assert TaskEvalConfig(view_weights="1,0;1,1").weights_per_subgoal() == [[1.0, 0.0], [1.0, 1.0]]
    assert TaskEvalConfig().weights_per_subgoal() == []
    # unset: the first view alone toward the far sub-goals (approach_*, above), every view after
    assert TaskEvalConfig(approach_legs=2).weights_for(2) == [[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    assert TaskEvalConfig(approach_legs=1).weights_for(3) == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert TaskEvalConfig(view_weights="0,1").weights_for(2) == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="2 weights per sub-goal, the model 3 views"):
        TaskEvalConfig(view_weights="0,1").weights_for(3)
    for bad in ("1,0;1", "a,b", "0,0", "1,-1"):
        with pytest.raises(ValueError, match="view_weights"):
            TaskEvalConfig(view_weights=bad)


def test_wrist_camera_moves_with_the_hand():
    """The wrist camera is mounted on the hand: moving the hand 5 cm moves the camera 5 cm (its orientation held),
    while an exterior camera stays put."""
    _sim()
    import mujoco
    import numpy as np

    from robot.simtools.physics import PhysicsArm
    from robot.simtools.tasks import READY

    with PhysicsArm("wrist", 64) as arm:
        arm.teleport(READY)
        arm.render()
        r = arm._views["wrist"]
        wrist = mujoco.mj_name2id(r.model, mujoco.mjtObj.mjOBJ_CAMERA, "wrist")
        fixed = mujoco.mj_name2id(r.model, mujoco.mjtObj.mjOBJ_CAMERA, "table_right")
        before, rot, ext = r.data.cam_xpos[wrist].copy(), r.data.cam_xmat[wrist].copy(), r.data.cam_xpos[fixed].copy()
        shift = np.array([0.03, -0.04, 0.0])
        arm.teleport(READY + shift)
        arm.render()
        np.testing.assert_allclose(r.data.cam_xpos[wrist] - before, shift, atol=2e-3)
        np.testing.assert_allclose(r.data.cam_xmat[wrist], rot, atol=2e-2)
        np.testing.assert_allclose(r.data.cam_xpos[fixed], ext, atol=0)
