"""Latent planning: CEM planner on known energies, KV-cache rollout vs full recompute, planner vs the
Meta-style reference, sub-goals / warm start / batching, energy landscape, CLI, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor, ACPredictorConfig, EncoderConfig, VideoEncoder
from vjepa_fast.planning import (
    CEMPlanner,
    GoalSequence,
    PlannerConfig,
    PlanningModel,
    WorldModel,
    shift_plan,
    to_actions,
)
from vjepa_fast.planning.reference import ReferencePlanner
from vjepa_fast.precision import native_bf16
from vjepa_fast.reference.cem import philox_normals

# ------------------------------------------------------------------------------------------ toy models


class PointModel:
    """Known dynamics: the latent of a state is features of the end-effector position p (xyz);
    a rollout moves p by the summed xyz deltas. quadratic=True: latent = (p - c)^2 so that the planner's
    L1 energy against a zero goal is the quadratic mean((p - c)^2)."""

    def __init__(self, n: int = 4, d: int = 6, quadratic_center: torch.Tensor | None = None) -> None:
        g = torch.Generator().manual_seed(3)
        self.center = quadratic_center
        self.latent_shape = (1, 3) if quadratic_center is not None else (n, d)
        self.w = torch.randn(3, n * d, generator=g)

    def latent(self, p: torch.Tensor) -> torch.Tensor:
        """p [..., 3] -> [..., N, D]."""
        if self.center is not None:
            return ((p - self.center) ** 2)[..., None, :]
        return (p @ self.w).unflatten(-1, self.latent_shape)

    def rollout(self, z0, state, actions):
        p = state[:, None, :3] + actions[..., :3].sum(dim=2)  # [B, S, 3]
        return self.latent(p)


def _tiny_predictor(action_std: float = 2.0, seed: int = 0) -> ActionConditionedPredictor:
    torch.manual_seed(seed)
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny()).eval()
    with torch.no_grad():  # random weights that make the action matter (trunc-normal 0.02 barely does)
        pred.action_encoder.weight.normal_(0.0, action_std)
    return pred


def _latents(b: int, n: int, d: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.layer_norm(torch.randn(b, n, d, generator=g), (d,))


STATE = torch.tensor([[0.45, -0.05, 0.30, 3.0, 0.1, -0.2, 0.5]])

# --------------------------------------------------------------------------------------- known energies


def test_point_model_is_a_planning_model():
    assert isinstance(PointModel(), PlanningModel)


@pytest.mark.parametrize("bound", ["box", "ball"])
def test_quadratic_energy_minimised(bound):
    """Energy mean((p - c)^2) with c inside the bounds: the plan lands within 1 mm of c."""
    c = torch.tensor([0.03, -0.02, 0.015])
    model = PointModel(quadratic_center=c)
    cfg = PlannerConfig(num_samples=300, topk=30, iterations=12, horizon=1, momentum_pos=0.1, bound=bound)
    state = torch.zeros(1, 7)
    res = CEMPlanner(model, cfg).plan(torch.zeros(1, 1, 3), state, torch.zeros(1, 1, 3))
    assert (res.mean[0, 0] - c).abs().max() < 1e-3
    assert res.energy.item() < 1e-6
    assert res.stats["best"].shape == (1, 12)
    # Elite energies never get worse by more than sampling noise, and end far below the start.
    assert res.stats["elite_mean"][0, -1] < 0.01 * res.stats["elite_mean"][0, 0]


def test_point_goal_reached_two_problems_batched():
    """Two robots, two goals, one call: each plan's end point is within 3 mm of its goal; the first action
    points at the goal; the held gripper stays 0 and rotations are 0."""
    model = PointModel()
    state = torch.zeros(2, 7)
    state[1, :3] = torch.tensor([0.1, 0.2, 0.3])
    target = state[:, :3] + torch.tensor([[0.09, -0.06, 0.03], [-0.05, 0.08, -0.1]])
    cfg = PlannerConfig(num_samples=300, topk=20, iterations=10, horizon=2, momentum_pos=0.1)
    res = CEMPlanner(model, cfg).plan(model.latent(state[:, :3]), state, model.latent(target))
    end = state[:, :3] + res.actions[..., :3].sum(1)
    assert (end - target).norm(dim=-1).max() < 3e-3
    first = res.actions[:, 0, :3]
    cos = F.cosine_similarity(first, target - state[:, :3], dim=-1)
    assert (cos > 0.9).all()
    assert (res.actions[..., 3:] == 0).all()


def test_gripper_planned_and_bounded():
    class GripModel(PointModel):
        def rollout(self, z0, state, actions):
            g = (state[:, None, 6] + actions[..., 6].sum(2)).clamp(0, 1)  # [B, S]
            return (g - 0.8).abs()[..., None, None].expand(*g.shape, 1, 3)

    model = GripModel(quadratic_center=torch.zeros(3))
    cfg = PlannerConfig(num_samples=200, topk=20, iterations=8, horizon=1, gripper="plan", gripper_step=0.5)
    state = torch.zeros(1, 7)
    state[0, 6] = 0.5
    res = CEMPlanner(model, cfg).plan(torch.zeros(1, 1, 3), state, torch.zeros(1, 1, 3))
    assert res.mean.shape == (1, 1, 4)
    assert abs(res.actions[0, 0, 6].item() - 0.3) < 0.02
    assert res.std[0, 0, 3] <= 0.5


def test_clip_gripper_range_keeps_the_gripper_in_zero_one():
    from vjepa_fast.planning.cem import clip_gripper_range

    state = torch.zeros(2, 7)
    state[1, 6] = 0.75  # problem 1: the hand three quarters closed
    s = torch.zeros(2, 3, 2, 4)
    s[..., 3] = torch.tensor([[-0.5, 0.4], [0.9, 0.5], [0.3, -0.6]])  # per sample: two gripper changes
    out = clip_gripper_range(s, state)
    assert torch.equal(out[..., :3], s[..., :3])
    # from 0: -0.5 -> 0 (stays open), then +0.4; 0.9, then 0.1 (up to closed); 0.3, then -0.3 (back to open)
    torch.testing.assert_close(out[0, ..., 3], torch.tensor([[0.0, 0.4], [0.9, 0.1], [0.3, -0.3]]))
    torch.testing.assert_close(out[1, ..., 3], torch.tensor([[-0.5, 0.4], [0.25, 0.0], [0.25, -0.6]]))
    path = state[:, None, 6:7] + out[..., 3].cumsum(-1)
    assert bool((path >= 0).all() and (path <= 1).all())


class OpenExploit(PointModel):
    """Energy |g + 0.5| of the gripper g after the actions, unclamped: the model extrapolates, so opening an open
    hand (g < 0 from 0), a change the hand cannot make, scores best."""

    def rollout(self, z0, state, actions):
        g = state[:, None, 6] + actions[..., 6].sum(2)
        return (g + 0.5).abs()[..., None, None].expand(*g.shape, 1, 3)

    def rollout_differentiable(self, z0, state, actions):
        return self.rollout(z0, state, actions)


def test_gripper_range_stops_the_planner_scoring_changes_the_hand_cannot_make():
    """A model whose error rewards opening an open hand (g < 0 from 0): without gripper_range the planner picks
    it; with it the change is clipped to 0, the reachable optimum."""

    model = OpenExploit(quadratic_center=torch.zeros(3))
    state = torch.zeros(1, 7)
    for on, want in ((False, -0.5), (True, 0.0)):
        cfg = PlannerConfig(num_samples=200, topk=20, iterations=8, horizon=1, gripper="plan", gripper_step=1.0,
                            gripper_range=on)
        res = CEMPlanner(model, cfg).plan(torch.zeros(1, 1, 3), state, torch.zeros(1, 1, 3))
        assert abs(res.actions[0, 0, 6].item() - want) < 0.03, (on, res.actions[0, 0, 6].item())


@pytest.mark.parametrize("grip", [0.0, 1.0])
def test_gripper_range_raw_fit_does_not_lean_toward_toggling(grip):
    """An energy blind to the gripper (the point model): refit on the clipped changes, the elites pile up at the
    reachable bound and the returned change leans toward the other state (the mean past +-0.25 in most plans:
    sim-eval's rule toggles the hand); refit on the drawn changes ("raw") it stays near 0."""
    model = PointModel(quadratic_center=torch.tensor([0.02, 0.0, 0.0]))
    state = torch.zeros(1, 7)
    state[0, 6] = grip
    toward = 1.0 if grip == 0.0 else -1.0  # the direction of a toggle
    lean = {}
    for fit in ("raw", "clipped"):
        g = []
        for seed in range(24):
            cfg = PlannerConfig(num_samples=192, topk=16, iterations=4, horizon=1, gripper="plan", gripper_step=1.0,
                                gripper_range=True, gripper_range_fit=fit, max_norm=0.05, bound="box", seed=seed)
            res = CEMPlanner(model, cfg).plan(torch.zeros(1, 1, 3), state, torch.zeros(1, 1, 3))
            g.append(res.actions[0, 0, 6].item() * toward)
            assert 0.0 <= grip + res.actions[0, 0, 6].item() <= 1.0  # the returned change is one the hand can make
        lean[fit] = sum(x > 0.25 for x in g) / len(g)
    assert lean["clipped"] > 0.6, lean  # the bias the raw fit removes (so this test can fail)
    assert lean["raw"] < 0.35, lean


def test_closed_loop_subgoals_and_warm_start():
    """MPC on the point model: execute the first action, re-plan warm-started, switch sub-goals when reached."""
    model = PointModel()
    state = torch.zeros(1, 7)
    goals_p = torch.tensor([[[0.1, 0.0, 0.0], [0.1, 0.1, 0.0]]])
    goals = GoalSequence(model.latent(goals_p))
    # Horizon 1 (the paper's): with an energy on the final latent only, the first of several steps is free.
    cfg = PlannerConfig(num_samples=200, topk=20, iterations=6, horizon=1, momentum_pos=0.1)
    planner = CEMPlanner(model, cfg)
    init = None
    for step in range(12):
        res = planner.plan(model.latent(state[:, :3]), state, goals.current(), init_mean=init, seed=step)
        state = state.clone()
        state[:, :3] += res.actions[:, 0, :3]
        init = shift_plan(res.mean)
        reached = (model.latent(state[:, :3]) - goals.current()).abs().mean(dim=(-2, -1)) < 0.004
        goals.advance(reached & ~goals.at_last())
    assert bool(goals.at_last().all())
    assert (state[0, :3] - goals_p[0, 1]).norm() < 0.01


def test_given_philox_normals_reproduce_the_seeded_plan():
    """`plan(normals=...)` with the Philox draws of `seed` gives the seeded plan (tensor and callable forms),
    for CEMPlanner and ReferencePlanner."""
    model = PointModel()
    state = torch.zeros(2, 7)
    goal = model.latent(torch.tensor([[0.05, -0.02, 0.03], [-0.04, 0.01, 0.02]]))
    z0 = model.latent(state[:, :3])
    cfg = PlannerConfig(num_samples=32, topk=5, iterations=3, horizon=2, gripper="plan", seed=9)
    b, s, h, a = 2, cfg.num_samples, cfg.horizon, cfg.action_dims
    z = torch.stack([philox_normals(9, it, b, s * h * a).view(b, s, h, a) for it in range(cfg.iterations)])
    for planner in (CEMPlanner(model, cfg), ReferencePlanner(model, cfg)):
        seeded = planner.plan(z0, state, goal)
        for given in (z, lambda it: z[it]):
            got = planner.plan(z0, state, goal, normals=given, seed=123)  # the seed is not used
            torch.testing.assert_close(got.mean, seeded.mean, rtol=0, atol=1e-6)
            torch.testing.assert_close(got.std, seeded.std, rtol=0, atol=1e-6)


def test_shift_plan():
    m = torch.arange(12.0).view(1, 3, 4)
    out = shift_plan(m)
    assert torch.equal(out[0, :2], m[0, 1:]) and torch.equal(out[0, 2], torch.zeros(4))


# ---------------------------------------------------------------------------- world model rollouts


@pytest.mark.parametrize("impl", ["module", "lean", "lean-fused", "lean-fused-no-triton"])
def test_kv_rollout_equals_full_recompute(impl, monkeypatch):
    """KV-cached rollout (3 steps, with rotations and a gripper) == the reference's full recompute.

    "lean-fused": a predictor with attn_impl="fused", whose lean rollout runs the Triton RoPE attention kernel
    over its KV buffer (the interpreter on the CPU); "-no-triton": the same where Triton cannot run."""
    pred = _tiny_predictor()
    if impl.startswith("lean-fused"):
        fused = ActionConditionedPredictor(pred.config.replace(attn_impl="fused")).eval()
        fused.load_state_dict(pred.state_dict())
        if impl.endswith("no-triton"):
            monkeypatch.setenv("TRITON_INTERPRET", "0")
        pred, impl = fused, "lean"
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    z0 = _latents(2, n, d)
    state = STATE.repeat(2, 1)
    g = torch.Generator().manual_seed(5)
    actions = 0.05 * torch.randn(2, 3, 3, 7, generator=g)
    wm = WorldModel(None, pred, dtype="float32", impl=impl)
    ours = wm.rollout(z0, state, actions, return_all=True)  # [B, S, H, N, D]
    ref = ReferencePlanner(pred, PlannerConfig(horizon=3))
    for b in range(2):
        torch.testing.assert_close(ours[b, :, -1], ref.rollout(z0[b], state[b], actions[b]), atol=2e-5, rtol=2e-5)
    assert ours.shape == (2, 3, 3, n, d)
    # Chunking over samples changes nothing.
    chunked = WorldModel(None, pred, dtype="float32", impl=impl, chunk_samples=4).rollout(z0, state, actions)
    torch.testing.assert_close(chunked, ours[:, :, -1], atol=1e-6, rtol=1e-6)


def test_lean_bf16_error_within_twice_module_bf16():
    """Low-precision rule: lean bf16's error vs fp32 is at most 2x the module forward's bf16 error."""
    pred = _tiny_predictor()
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    z0, state = _latents(1, n, d), STATE
    actions = 0.05 * torch.randn(1, 16, 2, 7, generator=torch.Generator().manual_seed(2))
    exact = WorldModel(None, pred, dtype="float32", impl="module").rollout(z0, state, actions)
    err_module = (WorldModel(None, pred, dtype="bfloat16", impl="module").rollout(z0, state, actions) - exact).abs()
    err_lean = (WorldModel(None, pred, dtype="bfloat16", impl="lean").rollout(z0, state, actions) - exact).abs()
    assert err_lean.max() <= 2 * err_module.max()
    assert err_lean.mean() <= 2 * err_module.mean()


def test_encode_layer_norms_two_frame_clip():
    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig.tiny()).eval()
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny())
    wm = WorldModel(enc, pred)
    img = torch.randn(2, 3, 64, 64)
    z = wm.encode(img)
    with torch.no_grad():
        expect = F.layer_norm(enc(img[:, :, None].repeat(1, 1, 2, 1, 1)), (96,), eps=1e-5)
    torch.testing.assert_close(z, expect, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="latents"):
        wm.encode(torch.randn(1, 3, 32, 32))


# ------------------------------------------------------------------------- sample-efficient options


class CountingModel(PointModel):
    """PointModel that records (name, samples per problem) of every rollout call."""

    def __init__(self, name: str, calls: list, **kw) -> None:
        super().__init__(**kw)
        self.name, self.calls = name, calls

    def rollout(self, z0, state, actions):
        self.calls.append((self.name, actions.shape[1]))
        return super().rollout(z0, state, actions)


def test_keep_elites_best_never_gets_worse():
    """With the elites carried over, the best energy per iteration is non-increasing (without, a new batch of
    samples may all be worse than the last best)."""
    c = torch.tensor([0.03, -0.02, 0.015])
    model = PointModel(quadratic_center=c)
    cfg = PlannerConfig(num_samples=12, topk=4, iterations=8, horizon=1, keep_elites=True, seed=5)
    res = CEMPlanner(model, cfg).plan(torch.zeros(1, 1, 3), torch.zeros(1, 7), torch.zeros(1, 1, 3))
    best = res.stats["best"][0]
    assert (best[1:] <= best[:-1]).all(), best
    assert best[-1] < 0.05 * best[0]


def test_return_best_never_worse_than_mean_or_best_elite():
    """return_best changes only the last choice: same samples, and the plan's energy is the lower of the final
    mean's and the last iteration's best elite's."""
    model = PointModel()
    state = torch.zeros(1, 7)
    goal = model.latent(torch.tensor([[0.06, -0.05, 0.04]]))
    z0 = model.latent(state[:, :3])
    base = PlannerConfig(num_samples=16, topk=4, iterations=3, horizon=2, seed=11)
    plain = CEMPlanner(model, base).plan(z0, state, goal)
    picked = CEMPlanner(model, base.replace(return_best=True)).plan(z0, state, goal)
    torch.testing.assert_close(picked.stats["best"], plain.stats["best"])
    assert picked.energy.item() <= plain.energy.item()
    assert picked.energy.item() <= plain.stats["best"][0, -1].item() + 1e-7
    # The returned energy is the returned plan's.
    check = (model.rollout(z0, state, picked.actions[:, None]) - goal).abs().mean().item()
    assert check == pytest.approx(picked.energy.item(), rel=1e-6)


def test_coarse_iterations_call_order():
    """coarse_iterations = 2 of 4: the coarse model scores iterations 0-1; at the switch the kept elites are
    re-scored by the main model; the plan's energy (mean and best elite: 2 samples) is the main model's."""
    calls: list = []
    main_m, coarse_m = CountingModel("main", calls), CountingModel("coarse", calls)
    cfg = PlannerConfig(num_samples=10, topk=3, iterations=4, horizon=2, keep_elites=True, return_best=True,
                        coarse_iterations=2)
    state = torch.zeros(1, 7)
    goal = main_m.latent(torch.tensor([[0.02, 0.01, -0.03]]))
    CEMPlanner(main_m, cfg, coarse_model=coarse_m).plan(main_m.latent(state[:, :3]), state, goal)
    assert calls == [("coarse", 10), ("coarse", 10), ("main", 10), ("main", 3), ("main", 10), ("main", 2)]


def test_world_model_with_dtype_and_auto_coarse_model():
    pred = _tiny_predictor()
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    wm = WorldModel(None, pred, dtype="float32")
    low = wm.with_dtype("bfloat16")
    assert low.dtype == torch.bfloat16 and wm.with_dtype("float32") is wm
    z0 = _latents(1, n, d)
    acts = to_actions(torch.rand(1, 5, 2, 3, generator=torch.Generator().manual_seed(0)) * 0.1 - 0.05)
    ref, got = wm.rollout(z0, STATE, acts), low.rollout(z0, STATE, acts)
    assert (got - ref).abs().mean() < 0.05  # bf16 rounding of the same model, not another model
    with pytest.raises(ValueError, match="widen"):
        low.with_dtype("float32")
    cfg = PlannerConfig(num_samples=8, topk=2, iterations=2, horizon=2, coarse_iterations=1)
    # coarse_dtype "auto": bf16 where the CPU does it natively; elsewhere the main model itself.
    auto = CEMPlanner(wm, cfg).coarse_model
    assert (auto.dtype == torch.bfloat16) if native_bf16("cpu") else (auto is wm)
    planner = CEMPlanner(wm, cfg.replace(coarse_dtype="bfloat16"))  # explicit: bf16 on every CPU
    assert planner.coarse_model.dtype == torch.bfloat16
    res = planner.plan(z0, STATE, wm.rollout(z0, STATE, acts[:, :1])[:, 0])
    assert torch.isfinite(res.energy).all()


def test_efficient_preset_reaches_point_goal():
    """The cpu-small-efficient schedule (48 samples x 10 iterations, elites kept, 6 coarse iterations) plans the
    known point dynamics to within 3 mm of the goal on every one of 8 seeds, at a lower mean energy than the
    200 x 5 reference schedule on the same seeds (measured: 0.00092 vs 0.00152)."""
    model = PointModel()
    state = torch.zeros(1, 7)
    target = torch.tensor([[0.08, -0.05, 0.06]])
    z0, goal = model.latent(state[:, :3]), model.latent(target)
    eff, ref = [], []
    for seed in range(8):
        res = CEMPlanner(model, PlannerConfig.cpu_small_efficient(seed=seed), coarse_model=PointModel()).plan(
            z0, state, goal)
        assert (res.actions[0, :, :3].sum(0) - target[0]).norm() < 3e-3
        eff.append(res.energy.item())
        ref.append(CEMPlanner(model, PlannerConfig.cpu_small(seed=seed)).plan(z0, state, goal).energy.item())
    assert sum(eff) < sum(ref), (eff, ref)


def test_bad_efficient_options():
    with pytest.raises(ValueError, match="coarse_iterations"):
        PlannerConfig(iterations=3, coarse_iterations=4)
    with pytest.raises(ValueError, match="coarse_iterations"):
        PlannerConfig(coarse_iterations=-1)
    with pytest.raises(ValueError, match="keep_elites"):
        PlannerConfig(keep_elites="yes")
    with pytest.raises(ValueError, match="dtype"):
        PlannerConfig(coarse_dtype="fp8")
    with pytest.raises(ValueError, match="needs a coarse_model"):
        CEMPlanner(PointModel(), PlannerConfig(coarse_iterations=2))
    with pytest.raises(ValueError, match="latents"):
        CEMPlanner(PointModel(), PlannerConfig(coarse_iterations=2), coarse_model=PointModel(n=2, d=3))
    with pytest.raises(ValueError, match="reference algorithm"):
        ReferencePlanner(_tiny_predictor(), PlannerConfig(keep_elites=True))


# ------------------------------------------------------------------------------- vs the reference


def test_planner_fp32_matches_reference_planner():
    """Same seed, fp32: our planner (KV cache, CEM ops) and the Meta-style reference reach the same plan and
    energy (same Philox samples; only rounding differs)."""
    pred = _tiny_predictor()
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    z0 = _latents(1, n, d)
    wm = WorldModel(None, pred, dtype="float32")
    goal = wm.rollout(z0, STATE, to_actions(torch.tensor([[[[0.05, -0.03, 0.02], [0.03, 0.04, -0.02]]]])))[:, 0]
    cfg = PlannerConfig(num_samples=24, topk=4, iterations=3, horizon=2, seed=7)
    ours = CEMPlanner(wm, cfg).plan(z0, STATE, goal)
    ref = ReferencePlanner(pred, cfg).plan(z0, STATE, goal)
    torch.testing.assert_close(ours.mean, ref.mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.energy, ref.energy, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.stats["best"], ref.stats["best"], atol=1e-5, rtol=1e-4)


def test_reference_planner_leaves_a_bf16_predictor_alone():
    pred = _tiny_predictor().to(torch.bfloat16)
    planner = ReferencePlanner(pred, PlannerConfig(num_samples=4, topk=2, iterations=1, horizon=1))
    assert next(pred.parameters()).dtype == torch.bfloat16
    assert next(planner.predictor.parameters()).dtype == torch.float32


# --------------------------------------------------------------------------------- energy landscape


def test_energy_landscape_png(tmp_path):
    from vjepa_fast.planning.landscape import energy_landscape, save_landscape_png

    model = PointModel()
    state = torch.zeros(1, 7)
    target = torch.tensor([[0.03, -0.045, 0.0]])
    grid, xs, ys = energy_landscape(model, model.latent(state[:, :3]), state, model.latent(target), steps=13,
                                    extent=0.075)
    assert grid.shape == (13, 13)
    iy, ix = divmod(int(grid.argmin()), 13)
    assert abs(xs[ix] - 0.03) < 0.007 and abs(ys[iy] + 0.045) < 0.007
    out = save_landscape_png(grid, xs, ys, tmp_path / "e.png", title="test")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------------------- CLI


def test_cli_plan_and_landscape(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from vjepa_fast.checkpoints import save_safetensors
    from vjepa_fast.cli import main

    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig.tiny(num_frames=8))
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny())
    save_safetensors(tmp_path / "enc.safetensors", enc)
    save_safetensors(tmp_path / "pred.safetensors", pred)
    rng = np.random.default_rng(0)
    for name in ("obs", "goal"):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    common = ["--encoder", str(tmp_path / "enc.safetensors"), "--predictor", str(tmp_path / "pred.safetensors"),
              "--obs", str(tmp_path / "obs.png"), "--goal", str(tmp_path / "goal.png")]
    assert main(["plan", *common, "--samples", "16", "--topk", "4", "--iterations", "2", "--horizon", "2",
                 "--state", "0.4", "0", "0.3", "3.1", "0", "0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "energy" in out and "step 0" in out
    assert main(["plan", *common, "--preset", "cpu-small-efficient", "--samples", "12", "--iterations", "3",
                 "--coarse-iterations", "1"]) == 0
    out = capsys.readouterr().out
    coarse = "bfloat16" if native_bf16("cpu") else "float32"  # coarse_dtype "auto"
    assert f"3 iterations (1 in {coarse})" in out and "float32, elites kept, best returned" in out
    assert main(["plan", *common, "--preset", "meta", "--samples", "12", "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "12 samples, top-10, 2 iterations, horizon 1" in out and "dgrip" in out
    # Another planner, with an option of its own; the evaluations it reports follow from the sizes.
    assert main(["plan", *common, "--samples", "16", "--iterations", "2", "--horizon", "1", "--planner", "mppi",
                 "--planner-option", "temperature=0.2"]) == 0
    out = capsys.readouterr().out
    assert "plan (mppi): 16 samples" in out and f"{16 * 2 + 2} model evaluations" in out
    with pytest.raises(SystemExit, match=r"unknown mppi options \['steps'\]"):
        main(["plan", *common, "--planner", "mppi", "--planner-option", "steps=3"])
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        main(["plan", *common, "--planner", "icem", "--planner-option", "beta"])
    png = tmp_path / "land.png"
    assert main(["energy-landscape", *common, "--steps", "5", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------------------------- bad inputs


def test_bad_configs():
    with pytest.raises(ValueError, match="horizon"):
        PlannerConfig(horizon=0)
    with pytest.raises(ValueError, match="topk"):
        PlannerConfig(num_samples=5, topk=6)
    with pytest.raises(ValueError, match="bound"):
        PlannerConfig(bound="sphere")
    with pytest.raises(ValueError, match="gripper"):
        PlannerConfig(gripper="open")
    with pytest.raises(ValueError, match="max_norm"):
        PlannerConfig(max_norm=float("nan"))
    with pytest.raises(ValueError, match="dtype"):
        PlannerConfig(dtype="int8")
    with pytest.raises(ValueError, match="momentum_std_pos"):
        PlannerConfig(momentum_std_pos=1.2)
    with pytest.raises(ValueError, match="std_correction"):
        PlannerConfig(std_correction=2)
    with pytest.raises(ValueError, match="needs topk >= 2"):
        PlannerConfig(num_samples=4, topk=1, std_correction=1)
    with pytest.raises(ValueError, match="gripper_init_std"):
        PlannerConfig(gripper_init_std=-1.0)
    with pytest.raises(ValueError, match="gripper_deadband"):
        PlannerConfig(gripper_deadband=float("inf"))
    with pytest.raises(TypeError, match="ActionConditionedPredictor or a PlanningModel"):
        ReferencePlanner(object(), PlannerConfig())


def test_bad_plan_inputs():
    pred = _tiny_predictor()
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    planner = CEMPlanner(WorldModel(None, pred, dtype="float32"), PlannerConfig(num_samples=4, topk=2, horizon=1))
    z = _latents(1, n, d)
    with pytest.raises(ValueError, match="z_obs must be"):
        planner.plan(z[:, :-1], STATE, z)
    with pytest.raises(ValueError, match="z_goal must have the shape"):
        planner.plan(z, STATE, _latents(1, n, d + 2))
    with pytest.raises(ValueError, match="state must be"):
        planner.plan(z, STATE[:, :6], z)
    nan_goal = z.clone()
    nan_goal[0, 3, 1] = math.nan
    with pytest.raises(ValueError, match="z_goal holds NaN"):
        planner.plan(z, STATE, nan_goal)
    with pytest.raises(ValueError, match="init_mean"):
        planner.plan(z, STATE, z, init_mean=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="exceeds"):
        CEMPlanner(WorldModel(None, pred), PlannerConfig(horizon=pred.config.max_steps + 1))
    with pytest.raises(TypeError, match="PlanningModel"):
        CEMPlanner(object(), PlannerConfig())
    with pytest.raises(ValueError, match="not a matching pair"):
        WorldModel(VideoEncoder(EncoderConfig.tiny(embed_dim=48)), pred)
    with pytest.raises(ValueError, match="sub-goals"):
        GoalSequence(z)


def test_with_problem_of_copies_the_problem_not_the_search():
    """cpu_small_meta_efficient: Meta's horizon, bounds, gripper handling and dead band; our search (samples,
    momenta, population std, kept elites). A config fed anything but a PlannerConfig is refused."""
    from vjepa_fast.planning.planner_config import PROBLEM_FIELDS

    meta = PlannerConfig.meta(num_samples=200, topk=10, iterations=5, horizon=2)
    eff = PlannerConfig.cpu_small_meta_efficient()
    assert all(getattr(eff, f) == getattr(meta, f) for f in PROBLEM_FIELDS)
    assert (eff.horizon, eff.max_norm, eff.gripper, eff.gripper_step, eff.gripper_deadband) == (2, 0.05, "plan", 0.75,
                                                                                               0.25)
    assert (eff.num_samples, eff.iterations, eff.topk, eff.std_correction, eff.momentum_std_pos) == (32, 8, 10, 0, None)
    assert eff.keep_elites and eff.return_best and eff.coarse_iterations == 0 and eff.dtype == "float32"
    assert PlannerConfig.cpu_small_meta_efficient(seed=5).seed == 5
    with pytest.raises(TypeError, match="PlannerConfig"):
        eff.with_problem_of({"horizon": 1})
