"""Planners beyond CEM (planning/planners.py): MPPI, iCEM, gradient, CEM + gradient on known energies and on
the AC predictor; their pieces (MPPI weights, coloured noise, iCEM's population); bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vjepa_fast.planning import CEMPlanner, PlannerConfig, WorldModel
from vjepa_fast.planning.planners import (
    PLANNERS,
    ICEMOptions,
    ICEMPlanner,
    MPPIOptions,
    colored_normals,
    make_planner,
    mppi_weights,
)

from test_planning import STATE, OpenExploit, PointModel, _latents, _tiny_predictor


class DiffPointModel(PointModel):
    """PointModel whose rollout is plain torch: differentiable, so every planner runs on it."""

    def rollout_differentiable(self, z0, state, actions):
        return self.rollout(z0, state, actions)


OPTIONS = {"cem": {}, "mppi": {}, "icem": {}, "gradient": {"steps": 60, "lr": 0.05}, "cem_grad": {"steps": 10}}


@pytest.mark.parametrize("name", PLANNERS)
@pytest.mark.parametrize("bound", ["box", "ball"])
def test_every_planner_minimises_a_quadratic(name, bound):
    """Energy mean((p - c)^2), c inside the bounds: every planner's plan lands within 2 mm of c, and its
    reported energy is the energy of the plan it returns."""
    c = torch.tensor([0.03, -0.02, 0.015])
    model = DiffPointModel(quadratic_center=c)
    cfg = PlannerConfig(num_samples=200, topk=20, iterations=10, horizon=1, momentum_pos=0.1, bound=bound)
    state, z = torch.zeros(1, 7), torch.zeros(1, 1, 3)
    res = make_planner(name, model, cfg, **OPTIONS[name]).plan(z, state, z)
    assert (res.mean[0, 0] - c).abs().max() < 2e-3, (name, res.mean)
    own = ((res.actions[0, 0, :3] - c) ** 2).mean()
    torch.testing.assert_close(res.energy[0], own, rtol=1e-5, atol=1e-9)
    assert res.stats["best"].shape[0] == 1 and int(res.stats["model_evals"]) > 0


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_reaches_two_point_goals_batched(name):
    """Two problems in one call, horizon 2: each plan ends within 5 mm of its own goal, rotation deltas 0, the
    held gripper 0, every xyz delta inside the box."""
    model = DiffPointModel()
    state = torch.zeros(2, 7)
    state[1, :3] = torch.tensor([0.1, 0.2, 0.3])
    target = state[:, :3] + torch.tensor([[0.09, -0.06, 0.03], [-0.05, 0.08, -0.1]])
    cfg = PlannerConfig(num_samples=300, topk=20, iterations=10, horizon=2, momentum_pos=0.1)
    res = make_planner(name, model, cfg, **OPTIONS[name]).plan(model.latent(state[:, :3]), state,
                                                               model.latent(target))
    end = state[:, :3] + res.actions[..., :3].sum(1)
    assert (end - target).norm(dim=-1).max() < 5e-3, (name, end, target)
    assert (res.actions[..., 3:] == 0).all()
    assert res.actions[..., :3].abs().max() <= cfg.max_norm + 1e-7


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_plans_the_gripper_within_bounds(name):
    class GripModel(DiffPointModel):
        def rollout(self, z0, state, actions):
            g = (state[:, None, 6] + actions[..., 6].sum(2)).clamp(0, 1)  # [B, S]
            return (g - 0.8).abs()[..., None, None].expand(*g.shape, 1, 3)

    model = GripModel(quadratic_center=torch.zeros(3))
    cfg = PlannerConfig(num_samples=200, topk=20, iterations=8, horizon=1, gripper="plan", gripper_step=0.5)
    state = torch.zeros(1, 7)
    state[0, 6] = 0.5
    res = make_planner(name, model, cfg, **OPTIONS[name]).plan(torch.zeros(1, 1, 3), state, torch.zeros(1, 1, 3))
    assert res.mean.shape == (1, 1, 4)
    assert abs(res.actions[0, 0, 6].item() - 0.3) < 0.03, (name, res.actions)
    assert res.mean[..., 3].abs().max() <= 0.5 + 1e-7


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_keeps_the_gripper_in_range_when_asked(name):
    """A model whose error rewards opening an open hand (g < 0 from 0): with gripper_range on, no planner's plan
    opens it (CEM's clip applies to MPPI's and iCEM's samples and to the gradient planners' projection); off,
    the exploit is found (so the check can fail)."""
    model = OpenExploit(quadratic_center=torch.zeros(3))
    state = torch.zeros(1, 7)
    for on in (False, True):
        cfg = PlannerConfig(num_samples=200, topk=20, iterations=8, horizon=2, gripper="plan", gripper_step=1.0,
                            gripper_range=on)
        res = make_planner(name, model, cfg, **OPTIONS[name]).plan(torch.zeros(1, 1, 3), state,
                                                                   torch.zeros(1, 1, 3))
        path = res.actions[0, :, 6].cumsum(0)
        if on:
            assert path.min().item() >= -1e-6 and path.max().item() <= 1 + 1e-6, (name, res.actions[0, :, 6])
        else:
            assert path[-1].item() < -0.3, (name, res.actions[0, :, 6])


def test_mppi_weights():
    e = torch.tensor([[0.3, 0.1, 0.2, 0.5], [1.0, 1.0, 1.0, 1.0]])
    w = mppi_weights(e, 0.5)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert w[0].argsort(descending=True).tolist() == [1, 2, 0, 3]  # lower energy, higher weight
    torch.testing.assert_close(w[1], torch.full((4,), 0.25))  # equal energies, equal weights
    # In units of the energy spread: an affine change of the energies' scale leaves the weights alone.
    torch.testing.assert_close(mppi_weights(e[:1] * 10 + 3, 0.5), w[:1], rtol=1e-5, atol=1e-7)
    # Cold: all weight on the best sample; hot: nearly uniform.
    assert mppi_weights(e[:1], 1e-3)[0, 1] > 0.999
    assert (mppi_weights(e[:1], 1e3)[0] - 0.25).abs().max() < 1e-3


def test_colored_noise():
    g = torch.Generator().manual_seed(0)
    white = colored_normals((2000, 16, 3), 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(white, torch.randn((2000, 16, 3), generator=torch.Generator().manual_seed(0)))
    red = colored_normals((2000, 16, 3), 2.0, g)
    assert red.shape == (2000, 16, 3)
    torch.testing.assert_close(red.std(dim=-2), torch.ones(2000, 3), rtol=1e-4, atol=1e-4)

    def lag1(x):
        x = x - x.mean(dim=-2, keepdim=True)
        return ((x[:, 1:] * x[:, :-1]).sum(-2) / (x * x).sum(-2)).mean().item()

    assert lag1(red) > 0.5 and abs(lag1(white)) < 0.1
    # A horizon of 1 cannot be coloured: white whatever beta.
    one = colored_normals((5, 1, 4), 2.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, torch.randn((5, 1, 4), generator=torch.Generator().manual_seed(1)))


def test_icem_population_shrinks_and_counts_its_evaluations():
    cfg = PlannerConfig(num_samples=100, topk=10, iterations=6, horizon=1)
    planner = ICEMPlanner(DiffPointModel(), cfg, ICEMOptions(decay=2.0))
    assert [planner.population(i) for i in range(6)] == [100, 50, 25, 20, 20, 20]
    model = DiffPointModel()
    res = planner.plan(model.latent(STATE[:, :3]), STATE, model.latent(STATE[:, :3] + 0.02))
    # Every drawn sample, the mean scored at the last iteration, and the returned plan.
    assert int(res.stats["model_evals"]) == sum(planner.population(i) for i in range(6)) + 1 + 1
    assert (res.stats["best"][0, 1:] <= res.stats["best"][0, :-1] + 1e-7).all()  # carried elites: never worse


def test_mppi_counts_its_evaluations():
    cfg = PlannerConfig(num_samples=50, topk=5, iterations=4, horizon=2)
    model = DiffPointModel()
    res = make_planner("mppi", model, cfg).plan(model.latent(STATE[:, :3]), STATE, model.latent(STATE[:, :3] + 0.02))
    assert int(res.stats["model_evals"]) == 50 * 4 + 2
    assert (res.stats["best"][0, 1:] <= res.stats["best"][0, :-1]).all()


def _world_model():
    pred = _tiny_predictor()
    return WorldModel(None, pred, dtype="float32", impl="module"), pred


def test_rollout_differentiable_matches_rollout_and_has_gradients():
    wm, _ = _world_model()
    n, d = wm.latent_shape
    z0 = _latents(2, n, d)
    state = STATE.expand(2, 7).clone()
    acts = (torch.rand(2, 3, 2, 7, generator=torch.Generator().manual_seed(4)) - 0.5) * 0.1
    acts[..., 3:6] = 0
    want = wm.rollout(z0, state, acts)
    x = acts.clone().requires_grad_(True)
    got = wm.rollout_differentiable(z0, state, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.abs().mean().backward()
    assert x.grad is not None and x.grad[..., :3].abs().sum() > 0


@pytest.mark.parametrize("name", ["gradient", "cem_grad"])
def test_gradient_planners_lower_the_energy_on_the_ac_predictor(name):
    """On the tiny AC predictor: the gradient planner's plan scores below its start (0 actions) by the model's
    own energy, and CEM + gradient never scores above CEM alone with the same seed. Also under inference_mode
    (as the robot loop calls planners)."""
    wm, _ = _world_model()
    n, d = wm.latent_shape
    z0, goal = _latents(1, n, d, seed=1), _latents(1, n, d, seed=2)
    cfg = PlannerConfig(num_samples=32, topk=4, iterations=3, horizon=2, gripper="plan")
    with torch.inference_mode():
        res = make_planner(name, wm, cfg, steps=8).plan(z0, STATE, goal)
        start = torch.zeros(1, 1, 2, 7)
        e0 = (wm.rollout(z0, STATE, start) - goal[:, None]).abs().mean(dim=(-2, -1))[0, 0]
        cem = CEMPlanner(wm, cfg).plan(z0, STATE, goal)
    e = (wm.rollout(z0, STATE, res.actions[:, None]) - goal[:, None]).abs().mean(dim=(-2, -1))[0, 0]
    torch.testing.assert_close(res.energy[0], e, rtol=1e-5, atol=1e-6)
    assert e < e0
    if name == "cem_grad":
        assert res.energy[0] <= cem.energy[0]


def test_bad_planner_names_and_options():
    model = DiffPointModel()
    with pytest.raises(ValueError, match="planner must be one of"):
        make_planner("mpc", model)
    with pytest.raises(ValueError, match=r"unknown mppi options \['beta'\]"):
        make_planner("mppi", model, beta=2.0)
    with pytest.raises(ValueError, match="cem planner takes no planner options"):
        make_planner("cem", model, steps=3)
    with pytest.raises(ValueError, match="MPPIOptions.temperature"):
        MPPIOptions(temperature=0)
    with pytest.raises(ValueError, match="ICEMOptions.decay"):
        ICEMOptions(decay=0.5)
    with pytest.raises(ValueError, match="GradientOptions.steps"):
        make_planner("gradient", model, steps=0)
    with pytest.raises(TypeError, match="rollout_differentiable"):
        make_planner("gradient", PointModel())
    with pytest.raises(ValueError, match="z_goal must have the shape"):
        make_planner("mppi", model).plan(torch.zeros(1, 4, 6), torch.zeros(1, 7), torch.zeros(2, 4, 6))


def test_point_model_inputs_are_unchanged_by_gradient_planning():
    model = DiffPointModel()
    z = model.latent(STATE[:, :3])
    goal = model.latent(STATE[:, :3] + 0.01)
    before = (z.clone(), STATE.clone(), goal.clone())
    make_planner("gradient", model, PlannerConfig(horizon=1), steps=3).plan(z, STATE, goal)
    for a, b in zip(before, (z, STATE, goal)):
        assert torch.equal(a, b)
