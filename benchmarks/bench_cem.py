"""One CEM iteration (sample -> quadratic energy -> top-k refit), B = 1 and 64 problems, N = 800, H = 2, A = 7.

Implementations: `vjepa_fast` (the compiled ops), `reference` (their plain-PyTorch twin: Philox in int64
tensors, same values) and `torch_randn` (what a plain PyTorch planner does: torch.randn + clamp + ball
scale-down + torch.topk + mean/std; different random numbers, same work). The energy is a cheap quadratic so
the figure is the CEM machinery itself. GPU goal: < 50 us at B = 1 and >= 5x the reference.
Run: `pytest benchmarks/bench_cem.py --benchmark-only`.
"""

from __future__ import annotations

import pytest
import torch

from vjepa_fast.ops import cem_refit, cem_sample

N, H, A, K = 800, 2, 7, 80
RADIUS = 0.075


def _state(B: int, device: str):
    g = torch.Generator().manual_seed(0)
    mean = torch.zeros(B, H, A).to(device)
    std = torch.full((B, H, A), 0.05).to(device)
    lower = torch.full((A,), -0.075).to(device)
    upper = torch.full((A,), 0.075).to(device)
    target = (0.1 * torch.rand(B, 1, H, A, generator=g) - 0.05).to(device)
    return mean, std, lower, upper, target


def _iteration(impl: str, mean, std, lower, upper, target, it: int):
    if impl == "torch_randn":
        B = mean.shape[0]
        x = mean[:, None] + std[:, None] * torch.randn(B, N, H, A, device=mean.device)
        x = torch.minimum(torch.maximum(x, lower), upper)
        xyz = x[..., :3]
        scale = (RADIUS / xyz.norm(dim=-1, keepdim=True)).clamp_max(1.0)
        x = torch.cat((xyz * scale, x[..., 3:]), dim=-1)
        energies = ((x - target) ** 2).sum(dim=(2, 3))
        idx = torch.topk(energies, K, dim=1, largest=False).indices
        elites = x.gather(1, idx[:, :, None, None].expand(B, K, H, A))
        return 0.1 * mean + 0.9 * elites.mean(1), 0.1 * std + 0.9 * elites.std(1, correction=0), idx
    backend = "auto" if impl == "vjepa_fast" else "reference"
    x = cem_sample(mean, std, lower, upper, N, seed=1, offset=it, ball_radius=RADIUS, backend=backend,
                   validate=False)
    energies = ((x - target) ** 2).sum(dim=(2, 3))
    return cem_refit(x, energies, mean, std, K, momentum_pos=0.1, momentum_grip=0.1, min_std=1e-3, backend=backend)


IMPLS = ["vjepa_fast", "reference", "torch_randn"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("B", [1, 64])
def test_cem_iteration_cpu(benchmark, B, impl):
    state = _state(B, "cpu")
    benchmark.group = f"cem iteration CPU B={B} N={N} H={H} A={A} k={K}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.pedantic(_iteration, args=(impl, *state, 3), rounds=20 if B == 1 else 5, iterations=5,
                       warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("B", [1, 64])
def test_cem_iteration_cuda(benchmark, B, impl):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    state = _state(B, "cuda")
    benchmark.group = f"cem iteration CUDA B={B} N={N} H={H} A={A} k={K}"
    benchmark.extra_info["device"] = torch.cuda.get_device_name()

    def run():
        _iteration(impl, *state, 3)
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=50, iterations=10, warmup_rounds=3)


@pytest.mark.parametrize("part", ["sample", "refit"])
def test_cem_parts_cuda_b1(benchmark, part):
    """The two kernels alone at B = 1 (launch + kernel + sync)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    mean, std, lower, upper, target = _state(1, "cuda")
    x = cem_sample(mean, std, lower, upper, N, seed=1, ball_radius=RADIUS)
    energies = ((x - target) ** 2).sum(dim=(2, 3))
    benchmark.group = "cem kernels CUDA B=1"

    def run():
        if part == "sample":
            cem_sample(mean, std, lower, upper, N, seed=1, ball_radius=RADIUS, validate=False)
        else:
            cem_refit(x, energies, mean, std, K, momentum_pos=0.1, momentum_grip=0.1)
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=50, iterations=20, warmup_rounds=3)
