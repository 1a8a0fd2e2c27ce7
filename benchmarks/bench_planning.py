"""Planning latency per action: ours vs Meta's own CEM planner (`cem()` of V-JEPA 2's notebooks), same problem.

`cpu-small` (CPU): AC predictor 6x256 (4 heads) over a 192-wide encoder's 8x8 tokens per frame. The reference is
Meta's `cem(samples=200, topk=10, cem_steps=5, rollout=2)` with its other defaults (`PlannerConfig.meta()`:
max_norm 0.05 box, the gripper planned within +-0.75, momenta 0.25 / 0.95, unbiased elite std, gripper dead band
0.25), run the Meta way by `ReferencePlanner` (fp32, the frame history recomputed per horizon step, per-sample pose
update; checked against Meta's recorded actions in tests/test_meta_cem.py). Random weights, with the action
encoder drawn at std 5 so that the action moves the prediction (at the init's 0.02 it barely does). The goal
latent is the fp32 model's prediction after a hidden 2-step action (gripper unchanged), so the best energy is 0.
Rows:
  reference       Meta's algorithm, Meta's way
  ours_fp32       Meta's algorithm on our planner in fp32 (KV cache, lean rollout, CEM ops): the same plan
  ours_bf16       the same in bf16 (fp32 residual stream / head / embeddings); skipped on a CPU without native
                  bf16 (there bf16 matmuls are emulated, several x slower than fp32, and dtype "auto" is fp32)
  ours_efficient  `PlannerConfig.cpu_small_meta_efficient()`: Meta's problem (the same horizon, bounds, gripper
                  handling and dead band: `with_problem_of`) searched our way, 8 iterations x 32 samples in fp32,
                  elites kept, the better of mean and best elite returned
extra_info: `energy` (the planner's own energy of its plan), `judged_energy` (the plan re-scored by the fp32
model: the common yardstick), `speedup_vs_reference` (reference median / this median, same run).
GPU (paper scale, skipped without CUDA): ViT-g encoder (256 px) + 24x1024 AC predictor, Meta's cem with 800
samples, top-10, 10 iterations, horizon 1; ours (bf16) times encode(observation) + plan; the reference times its plan.
`test_plan_quality_cpu_small` compares final energies where one seed cannot: 4 problems (the one above and 3
with random context latents and hidden actions) x 6 seeds, Meta's algorithm (run as ours_fp32, which gives the
reference planner's plan: asserted above) vs `ours_efficient`, each plan re-scored by the fp32 model; it fails
if ours' mean final energy is higher.
Run: `pytest benchmarks/bench_planning.py --benchmark-only` (~10 min on 2 cores with AVX-512; ~25 on AVX2 only).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor, ACPredictorConfig, EncoderConfig, VideoEncoder
from vjepa_fast.planning import CEMPlanner, PlannerConfig, WorldModel, to_actions
from vjepa_fast.planning.reference import ReferencePlanner
from vjepa_fast.precision import native_bf16

HIDDEN = torch.tensor([[[0.05, -0.03, 0.02], [0.04, 0.02, -0.03]]])
STATE = torch.tensor([[0.45, -0.05, 0.30, 3.0, 0.1, -0.2, 0.5]])
_medians: dict[str, float] = {}
_plans: dict[str, torch.Tensor] = {}


def _problem(device: str, pred_cfg: ACPredictorConfig, horizon: int):
    torch.manual_seed(0)
    with torch.device(device):
        pred = ActionConditionedPredictor(pred_cfg).eval()
        with torch.no_grad():
            pred.action_encoder.weight.normal_(0.0, 5.0)
    n, d = pred_cfg.tokens_per_frame, pred_cfg.embed_dim
    z_obs = F.layer_norm(torch.randn(1, n, d, generator=torch.Generator().manual_seed(1)), (d,)).to(device)
    state = STATE.to(device)
    judge = WorldModel(None, pred, dtype="float32")
    goal = judge.rollout(z_obs, state, to_actions(HIDDEN[:, :horizon]).to(device)[:, None])[:, 0]
    return pred, judge, z_obs, state, goal


@pytest.fixture(scope="module")
def cpu_small():
    return cpu_small_problem()


def cpu_small_problem():
    """(predictor, fp32 judge, z_obs, state, goal) of the cpu-small problem (scripts/profile_planning.py)."""
    return _problem("cpu", ACPredictorConfig.cpu_small(), 2)


# Meta's cem(samples=200, topk=10, cem_steps=5, rollout=2), its other arguments at their defaults.
META = PlannerConfig.meta(num_samples=200, topk=10, iterations=5, horizon=2)
EFFICIENT = PlannerConfig.cpu_small_meta_efficient()


def _planner(impl: str, pred: ActionConditionedPredictor, seed: int):
    if impl == "reference":
        return ReferencePlanner(pred, META.replace(seed=seed))
    if impl == "ours_efficient":
        return CEMPlanner(WorldModel(None, pred, dtype=EFFICIENT.dtype), EFFICIENT.replace(seed=seed))
    dtype = "float32" if impl == "ours_fp32" else "bfloat16"
    return CEMPlanner(WorldModel(None, pred, dtype=dtype), META.replace(seed=seed, dtype=dtype))


@pytest.mark.parametrize("impl", ["reference", "ours_fp32", "ours_bf16", "ours_efficient"])
def test_plan_cpu_small(benchmark, cpu_small, impl):
    if impl == "ours_bf16" and not native_bf16("cpu"):
        pytest.skip("no native bf16 on this CPU (or VJEPA_FAST_CPU_FALLBACK=1): bf16 matmuls would be emulated; "
                    "dtype 'auto' plans in fp32 here (the ours_fp32 row)")
    pred, judge, z_obs, state, goal = cpu_small
    planner = _planner(impl, pred, seed=3)
    if impl == "reference":
        rounds = 1
    else:
        planner.plan(z_obs, state, goal)  # warm-up (oneDNN kernel selection, allocations)
        rounds = 3
    benchmark.group = "plan per action, cpu-small: Meta's cem (200 samples x 5 iterations, top-10, horizon 2) vs ours"
    res = benchmark.pedantic(planner.plan, args=(z_obs, state, goal), rounds=rounds, iterations=1)
    judged = (judge.rollout(z_obs, state, res.actions[:, None])[:, 0] - goal).abs().mean()
    _medians[impl] = benchmark.stats.stats.median
    benchmark.extra_info.update(
        threads=torch.get_num_threads(),
        energy=float(res.energy[0]),
        judged_energy=float(judged),
        zero_action_energy=float((judge.rollout(z_obs, state, torch.zeros(1, 1, 2, 7))[:, 0] - goal).abs().mean()),
        model_evals=int(res.stats["model_evals"]) if "model_evals" in res.stats else None,
        plan=[[round(v, 4) for v in row] for row in res.mean[0].tolist()],
        best_per_iteration=[round(v, 5) for v in res.stats["best"][0].tolist()],
    )
    _plans[impl] = res.mean
    if impl != "reference" and "reference" in _medians:
        benchmark.extra_info["speedup_vs_reference"] = _medians["reference"] / _medians[impl]
    if impl == "ours_fp32" and "reference" in _plans:  # the same algorithm: the same plan
        torch.testing.assert_close(res.mean, _plans["reference"], atol=1e-5, rtol=1e-4)


def test_plan_quality_cpu_small(benchmark, cpu_small):
    """Final energy, Meta's algorithm vs ours_efficient, over 4 problems x 6 seeds (fp32-judged, paired)."""
    pred, judge, z_obs, state, goal = cpu_small
    zs, goals = [z_obs], [goal]
    n, d = z_obs.shape[1:]
    for p in range(1, 4):
        g = torch.Generator().manual_seed(100 + p)
        zs.append(F.layer_norm(torch.randn(1, n, d, generator=g), (d,)))
        hidden = (torch.rand(1, 2, 3, generator=g) * 2 - 1) * 0.06
        goals.append(judge.rollout(zs[-1], state, to_actions(hidden)[:, None])[:, 0])
    z_all, g_all, s_all = torch.cat(zs), torch.cat(goals), state.expand(len(zs), -1).contiguous()

    def judged(res):
        return (judge.rollout(z_all, s_all, res.actions[:, None])[:, 0] - g_all).abs().mean(dim=(-2, -1))

    def run():
        # Meta's algorithm's plans come from ours_fp32, which reproduces the reference planner's plan (same
        # samples, same elites; checked in test_plan_cpu_small[ours_fp32] and tests/test_meta_cem.py) at less
        # than its cost: 24 reference plans would take 8-25 min.
        out = {}
        for impl in ("ours_fp32", "ours_efficient"):
            out[impl] = torch.stack([judged(_planner(impl, pred, seed).plan(z_all, s_all, g_all))
                                     for seed in range(6)])
        return out

    benchmark.group = "plan quality, cpu-small: Meta's cem vs ours_efficient, 4 problems x 6 seeds"
    out = benchmark.pedantic(run, rounds=1, iterations=1)
    ref, eff = out["ours_fp32"], out["ours_efficient"]
    benchmark.extra_info.update(
        meta_mean_energy=float(ref.mean()), efficient_mean_energy=float(eff.mean()),
        meta_energies=[round(v, 6) for v in ref.flatten().tolist()],
        efficient_energies=[round(v, 6) for v in eff.flatten().tolist()],
        efficient_wins=int((eff < ref).sum()), runs=ref.numel(),
        per_problem_meta=[round(v, 6) for v in ref.mean(0).tolist()],
        per_problem_efficient=[round(v, 6) for v in eff.mean(0).tolist()],
    )
    assert float(eff.mean()) <= float(ref.mean()), (
        f"ours_efficient mean final energy {float(eff.mean()):.3g} > Meta's cem {float(ref.mean()):.3g}")


@pytest.mark.parametrize("impl", ["reference", "ours_bf16", "ours_bf16_fused"])
def test_plan_paper_scale_cuda(benchmark, impl):
    """ours_bf16_fused: encoder and AC predictor with attn_impl="fused" (the Triton RoPE attention kernel in
    every block, and in the lean rollout over its KV buffer). The algorithm is Meta's cem at the paper's sizes
    (`PlannerConfig.meta(num_samples=800, topk=10, iterations=10, horizon=1)`) for every row."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pred, judge, z_obs, state, goal = _problem("cuda", ACPredictorConfig.vit_giant(), 1)
    cfg = PlannerConfig.meta(num_samples=800, topk=10, iterations=10, horizon=1, seed=3)
    benchmark.group = "plan per action, paper scale (ViT-g + 24x1024 AC, 800 samples, 10 iterations, H=1)"
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    if impl == "reference":
        planner = ReferencePlanner(pred, cfg)

        def run():
            out = planner.plan(z_obs, state, goal)
            torch.cuda.synchronize()
            return out

        res = benchmark.pedantic(run, rounds=1, iterations=1)
    else:
        attn = "fused" if impl.endswith("fused") else "sdpa"
        with torch.device("cuda"):
            enc = VideoEncoder(EncoderConfig.vit_giant(attn_impl=attn)).eval()
            if attn == "fused":
                fused = ActionConditionedPredictor(pred.config.replace(attn_impl="fused")).eval()
                fused.load_state_dict(pred.state_dict())
                pred = fused
        wm = WorldModel(enc, pred, dtype="bfloat16", encoder_dtype="bfloat16")
        del enc
        planner = CEMPlanner(wm, cfg.replace(dtype="bfloat16"))
        image = torch.randn(1, 3, 256, 256, device="cuda")

        def run():
            wm.encode(image)  # the observation's latent (the goal's is encoded once per episode)
            out = planner.plan(z_obs, state, goal)
            torch.cuda.synchronize()
            return out

        run()
        res = benchmark.pedantic(run, rounds=3, iterations=1)
    judged = (judge.rollout(z_obs, state, res.actions[:, None])[:, 0] - goal).abs().mean()
    _medians["cuda_" + impl] = benchmark.stats.stats.median
    benchmark.extra_info.update(energy=float(res.energy[0]), judged_energy=float(judged))
    if impl != "reference" and "cuda_reference" in _medians:
        benchmark.extra_info["speedup_vs_reference"] = _medians["cuda_reference"] / _medians["cuda_" + impl]
