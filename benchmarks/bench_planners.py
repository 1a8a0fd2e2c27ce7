"""Every planner (CEM, MPPI, iCEM, gradient, CEM + gradient) and the reference planner on one `cpu-small` problem,
side by side in one run: time per plan, the plan's energy judged by the fp32 model, model evaluations.

The problem is bench_planning's (AC predictor 6x256 over 8x8 tokens of a 192-wide encoder, random weights with
the action encoder at std 5, goal = the fp32 model's prediction after a hidden 2-step action: the best energy is
0). Every planner gets the `cpu-small` sizes (200 samples, top-10, 5 iterations, horizon 2; the gradient planner
20 Adam steps x 4 starts) in fp32, seed 3; "reference" is the Meta-style plain planner (full recompute).
extra_info: judged_energy, zero_action_energy, model_evals, speedup_vs_reference.
Run: `pytest benchmarks/bench_planners.py --benchmark-only` (~3 min on 2 cores).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_planning import _problem
from vjepa_fast.models import ACPredictorConfig
from vjepa_fast.planning import PLANNERS, PlannerConfig, WorldModel, make_planner
from vjepa_fast.planning.reference import ReferencePlanner

_medians: dict[str, float] = {}


@pytest.fixture(scope="module")
def cpu_small():
    return _problem("cpu", ACPredictorConfig.cpu_small(), 2)


@pytest.mark.parametrize("name", ["reference", *PLANNERS])
def test_planner_cpu_small(benchmark, cpu_small, name):
    pred, judge, z_obs, state, goal = cpu_small
    cfg = PlannerConfig.cpu_small(seed=3, dtype="float32")
    if name == "reference":
        planner = ReferencePlanner(pred, cfg)
    else:
        planner = make_planner(name, WorldModel(None, pred, dtype="float32"), cfg)
        planner.plan(z_obs, state, goal)  # warm-up
    benchmark.group = "planners, cpu-small problem (fp32, 200 samples x 5 iterations, horizon 2)"
    res = benchmark.pedantic(planner.plan, args=(z_obs, state, goal), rounds=1 if name == "reference" else 2,
                             iterations=1)
    judged = (judge.rollout(z_obs, state, res.actions[:, None])[:, 0] - goal).abs().mean()
    _medians[name] = benchmark.stats.stats.median
    benchmark.extra_info.update(
        judged_energy=float(judged),
        zero_action_energy=float((judge.rollout(z_obs, state, torch.zeros(1, 1, 2, 7))[:, 0] - goal).abs().mean()),
        model_evals=int(res.stats["model_evals"]) if "model_evals" in res.stats else None,
    )
    if name != "reference" and "reference" in _medians:
        benchmark.extra_info["speedup_vs_reference"] = _medians["reference"] / _medians[name]
    assert float(judged) < benchmark.extra_info["zero_action_energy"]  # every planner improves on doing nothing
