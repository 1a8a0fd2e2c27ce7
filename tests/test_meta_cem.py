"""Meta's CEM planner, step for step: `PlannerConfig.meta()` on `CEMPlanner` and on `ReferencePlanner`, fed the
standard normals Meta's `notebooks/utils/mpc_utils.cem` drew, returns Meta's actions (official_cem.pt, see the
fixtures README). Configs one option away from Meta's (population std, our single momentum, the gripper's
std at its clip bound) do not, so the comparison can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vjepa_fast.planning import CEMPlanner, PlannerConfig, PlanningModel
from vjepa_fast.planning.planner_config import META_CEM_NAMES
from vjepa_fast.planning.plans import returned_actions
from vjepa_fast.planning.reference import ReferencePlanner
from vjepa_fast.robotics.pose import rollout_states

CASE_IDS = ["h1_mom015", "h2_meta_defaults", "h2_all015"]
TOL = 1e-6


@pytest.fixture(scope="module")
def official_cem(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "official_cem.pt", weights_only=True)


class MetaToyModel:
    """The fixture's world model as a `PlanningModel`: the latent of a pose p is
    tanh(p[:3] @ A_POS.T + p[6] * A_GRIP + B0).view(N_TOK, D); a step is Meta's `compute_new_pose` (xyz added,
    R(a[3:6]) @ R(p[3:6]) back to extrinsic-xyz Euler, gripper added then clipped to [0, 1]), which is
    `robotics.pose.rollout_states` (rotations in fp32 torch rather than scipy's float64: the latent does not
    read them, and the planned rotations are 0)."""

    def __init__(self, toy: dict) -> None:
        self.a_pos, self.a_grip, self.b0 = toy["A_POS"], toy["A_GRIP"], toy["B0"]
        self.latent_shape = (int(toy["N_TOK"]), int(toy["D"]))

    def latent(self, pose: torch.Tensor) -> torch.Tensor:
        """pose [..., 7] -> [..., N_TOK, D]."""
        x = pose[..., :3] @ self.a_pos.T + pose[..., 6:7] * self.a_grip + self.b0
        return torch.tanh(x).unflatten(-1, self.latent_shape)

    def rollout(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z0 [B, N, D] (unused: the pose carries the state), state [B, 7], actions [B, S, H, 7] -> [B, S, N, D]."""
        final = rollout_states(state[:, None, :], actions, gripper_range=(0.0, 1.0))[..., -1, :]
        return self.latent(final)


def _problem(official_cem: dict, i: int):
    case = official_cem["cases"][i]
    model = MetaToyModel(official_cem["toy"])
    # Meta draws [samples, 4] per iteration and horizon step: [it, H, S, 4] -> [it, B = 1, S, H, 4].
    normals = case["normals"].permute(0, 2, 1, 3)[:, None].contiguous()
    inputs = (case["context"][None], case["context_pose"][None], case["goal"][None])
    return case, model, normals, inputs


def _meta_config(settings: dict, **overrides) -> PlannerConfig:
    """The case's `cem` keyword arguments in our names (the mapping spelled out, and via `from_meta_cem`)."""
    ours = {META_CEM_NAMES[k]: v for k, v in settings.items()}
    assert ours.keys() <= {"num_samples", "topk", "iterations", "horizon", "max_norm", "momentum_pos",
                           "momentum_std_pos", "momentum_grip", "momentum_std_grip"}
    cfg = PlannerConfig.meta(**ours, **overrides)
    assert cfg == PlannerConfig.from_meta_cem(settings, **overrides)
    return cfg


def test_toy_model_reproduces_the_fixture_latents(official_cem):
    model = MetaToyModel(official_cem["toy"])
    assert isinstance(model, PlanningModel)
    for case in official_cem["cases"]:
        torch.testing.assert_close(model.latent(case["context_pose"]), case["context"], rtol=0, atol=1e-7)
        torch.testing.assert_close(model.latent(case["goal_pose"]), case["goal"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("i", range(3), ids=CASE_IDS)
def test_cem_planner_meta_matches_meta_cem(official_cem, i):
    case, model, normals, inputs = _problem(official_cem, i)
    cfg = _meta_config(case["settings"])
    res = CEMPlanner(model, cfg).plan(*inputs, normals=normals)
    assert res.actions.shape == (1, *case["action"].shape)
    diff = (res.actions[0] - case["action"]).abs().max().item()
    assert diff <= TOL, f"max |ours - Meta| = {diff:.3g}"
    # The callable form gives the same plan.
    again = CEMPlanner(model, cfg).plan(*inputs, normals=lambda it: normals[it])
    assert torch.equal(again.actions, res.actions)


@pytest.mark.parametrize("i", range(3), ids=CASE_IDS)
def test_reference_planner_meta_matches_meta_cem(official_cem, i):
    case, model, normals, inputs = _problem(official_cem, i)
    res = ReferencePlanner(model, _meta_config(case["settings"])).plan(*inputs, normals=normals)
    diff = (res.actions[0] - case["action"]).abs().max().item()
    assert diff <= TOL, f"max |reference planner - Meta| = {diff:.3g}"


OFF_BY_ONE_OPTION = {
    # (case, overrides): every one of them alone moves the result far beyond TOL.
    "population_std_h1": (0, dict(std_correction=0)),
    "population_std_h2": (1, dict(std_correction=0)),
    "population_std_h2_all015": (2, dict(std_correction=0)),
    "one_momentum_as_ours": (1, dict(momentum_pos=0.15, momentum_std_pos=None, momentum_grip=0.15,
                                     momentum_std_grip=None)),
    "gripper_std_at_clip": (1, dict(gripper_init_std=None)),
}


@pytest.mark.parametrize("name", list(OFF_BY_ONE_OPTION), ids=list(OFF_BY_ONE_OPTION))
def test_one_option_off_does_not_match(official_cem, name):
    i, overrides = OFF_BY_ONE_OPTION[name]
    case, model, normals, inputs = _problem(official_cem, i)
    cfg = PlannerConfig.from_meta_cem(case["settings"]).replace(**overrides)
    for planner in (CEMPlanner(model, cfg), ReferencePlanner(model, cfg)):
        diff = (planner.plan(*inputs, normals=normals).actions[0] - case["action"]).abs().max().item()
        assert diff > 1e3 * TOL, f"{type(planner).__name__} with {overrides} still matches ({diff:.3g})"


def test_meta_preset_fields():
    cfg = PlannerConfig.meta()
    assert (cfg.num_samples, cfg.topk, cfg.iterations, cfg.horizon, cfg.max_norm) == (100, 10, 100, 1, 0.05)
    assert (cfg.bound, cfg.gripper, cfg.gripper_step, cfg.gripper_init_std) == ("box", "plan", 0.75, 1.0)
    assert (cfg.momentum_pos, cfg.std_momenta, cfg.momentum_grip) == (0.25, (0.95, 0.15), 0.15)
    assert (cfg.std_correction, cfg.gripper_deadband, cfg.init_std, cfg.min_std) == (1, 0.25, None, 0.0)
    assert cfg.is_reference_algorithm
    assert PlannerConfig.meta(num_samples=64, horizon=2).num_samples == 64
    with pytest.raises(ValueError, match=r"\['close_gripper'\] are not supported"):
        PlannerConfig.from_meta_cem({"samples": 10, "close_gripper": 1})
    with pytest.raises(ValueError, match="needs topk >= 2"):
        PlannerConfig.meta(topk=1)


def test_dead_band_on_returned_actions_only():
    """The fixture's plans keep |gripper| >= 0.25, so the dead band is checked here: a returned gripper below
    it is 0 (and the energy is the returned actions'), the warm-start mean keeps the planned value."""
    mean = torch.tensor([[[0.01, 0.02, 0.03, 0.2], [0.0, 0.0, 0.0, -0.3]]])
    acts = returned_actions(mean, PlannerConfig.meta())
    assert acts[0, :, 6].tolist() == [0.0, pytest.approx(-0.3)]
    assert torch.equal(returned_actions(mean, PlannerConfig(gripper="plan"))[..., 6], mean[..., 3])

    class GripModel:
        latent_shape = (1, 1)

        def rollout(self, z0, state, actions):  # energy |g_final - 0.6|: the best gripper delta is +0.1
            g = (state[:, None, 6] + actions[..., 6].sum(2)).clamp(0, 1)
            return g[..., None, None]

    state = torch.zeros(1, 7)
    state[0, 6] = 0.5
    goal = torch.full((1, 1, 1), 0.6)
    cfg = PlannerConfig.meta(num_samples=200, topk=20, iterations=15, momentum_pos=0.1, momentum_grip=0.1)
    res = CEMPlanner(GripModel(), cfg).plan(torch.zeros(1, 1, 1), state, goal)
    assert abs(res.mean[0, 0, 3].item() - 0.1) < 0.02
    assert res.actions[0, 0, 6].item() == 0.0
    assert res.energy.item() == pytest.approx(0.1, abs=1e-6)
    ref = ReferencePlanner(GripModel(), cfg).plan(torch.zeros(1, 1, 1), state, goal)
    assert ref.actions[0, 0, 6].item() == 0.0 and abs(ref.mean[0, 0, 3].item() - 0.1) < 0.02


def test_bad_normals(official_cem):
    case, model, normals, inputs = _problem(official_cem, 1)
    planner = CEMPlanner(model, _meta_config(case["settings"]))
    with pytest.raises(ValueError, match=r"normals must be a float tensor \[iterations, B, S, H, A\] = "
                                         r"\[4, 1, 64, 2, 4\]"):
        planner.plan(*inputs, normals=normals[:3])
    with pytest.raises(ValueError, match="normals must be a float tensor"):
        planner.plan(*inputs, normals=normals.long())
    with pytest.raises(ValueError, match=r"normals\(0\) must return a float tensor \[B, S, H, A\]"):
        planner.plan(*inputs, normals=lambda it: normals[it, :, :10])
    with pytest.raises(TypeError, match="normals must be a tensor"):
        planner.plan(*inputs, normals=[normals[0]])
    bad = normals.clone()
    bad[2, 0, 5, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="normals must be finite"):
        planner.plan(*inputs, normals=bad)
    ref = ReferencePlanner(model, planner.config)
    with pytest.raises(ValueError, match="normals must be a float tensor"):
        ref.plan(*inputs, normals=normals[:, :, :10])
