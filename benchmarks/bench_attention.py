"""Fused RoPE attention (Triton) vs the reference path (permute + apply_rope + SDPA flash) at V-JEPA 2 shapes.

GPU only (the Triton interpreter on a CPU is a correctness tool, ~25 ms per tile). Shapes:
  vitl_context   ViT-L context encoder: 16 heads, hd 64, 30% of 2048 tokens kept (614), batch 24, fwd+bwd
  vitg_cooldown  ViT-g cooldown clip: 22 heads, hd 64, 8192 tokens, batch 1, fwd+bwd
  ac_train_T8    AC predictor training: 16 heads, hd 64, 8 steps of 258 tokens, block-causal, batch 8, fwd+bwd
  ac_plan_T2/T8  AC predictor in planning: 16 heads, hd 64, KV-cache step (258 new queries over T*258 keys),
                 batch 800, forward only
bf16 inputs. Each case records TFLOP/s (attention matmul FLOPs only, masked tiles not counted) and, where the
card is known, the fraction of its dense bf16 peak. Goals (issue #15): fwd+bwd >= 1.3x the reference and
>= 50% of the bf16 peak on the long shapes. Run: `pytest benchmarks/bench_attention.py --benchmark-only`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks._common import peak_bf16_flops
from vjepa_fast.rope import apply_rope, grid_rope_tables
from vjepa_fast.ops.attention import rope_attention, uniform_cu_seqlens

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = {
    # name: (batch, heads, new tokens, key tokens, step_len, grid (T, Hp, Wp), backward)
    "vitl_context": (24, 16, 614, 614, 0, (8, 16, 16), True),
    "vitg_cooldown": (1, 22, 8192, 8192, 0, (32, 16, 16), True),
    "ac_train_T8": (8, 16, 8 * 258, 8 * 258, 258, (8, 16, 16), True),
    "ac_plan_T2": (800, 16, 258, 2 * 258, 258, (8, 16, 16), False),
    "ac_plan_T8": (800, 16, 258, 8 * 258, 258, (8, 16, 16), False),
}
HEAD_DIM = 64


def _flops(batch, heads, nq, nk, step_len, backward):
    if step_len:  # block-causal: query step s sees (s + 1 + past) steps
        steps_q, past = nq // step_len, (nk - nq) // step_len
        pairs = sum((past + s + 1) * step_len * step_len for s in range(steps_q))
    else:
        pairs = nq * nk
    fwd = 4 * batch * heads * pairs * HEAD_DIM
    return fwd * (3.5 if backward else 1.0)  # backward = 2.5x the forward's matmuls


def _inputs(name):
    batch, heads, nq, nk, step_len, grid, backward = CASES[name]
    g = torch.Generator(device="cuda").manual_seed(0)
    dev = torch.device("cuda")
    # Token indices: random kept subsets for the masked encoder, all tokens otherwise.
    n_grid = grid[0] * grid[1] * grid[2]
    if name == "vitl_context":
        idx = torch.stack([torch.randperm(n_grid, device=dev, generator=g)[:nq].sort().values for _ in range(batch)])
    else:
        idx = (torch.arange(nk, device=dev) % n_grid).expand(batch, nk)
    qkv = torch.randn(batch, nq, 3, heads, HEAD_DIM, device=dev, dtype=torch.bfloat16, generator=g)
    past = None
    if nk > nq:
        past = torch.randn(batch, nk - nq, 2, heads, HEAD_DIM, device=dev, dtype=torch.bfloat16, generator=g)
    return dict(batch=batch, heads=heads, nq=nq, nk=nk, step_len=step_len, grid=grid, backward=backward,
                idx=idx, qkv=qkv.requires_grad_(backward), past=past)


def _fused(c):
    b, nq, nk, h = c["batch"], c["nq"], c["nk"], c["heads"]
    q, k, v = c["qkv"].unbind(2)
    if c["past"] is not None:
        k = torch.cat([c["past"][:, :, 0], k], 1)
        v = torch.cat([c["past"][:, :, 1], v], 1)
    codes_k = c["idx"].to(torch.int32).flatten()
    codes_q = c["idx"][:, nk - nq :].to(torch.int32).flatten()
    out = rope_attention(q.reshape(b * nq, h, HEAD_DIM), k.reshape(b * nk, h, HEAD_DIM), v.reshape(b * nk, h, HEAD_DIM),
                         codes_q, codes_k, uniform_cu_seqlens(b, nq, q.device), uniform_cu_seqlens(b, nk, q.device),
                         max_seqlen_q=nq, max_seqlen_k=nk, grid=c["grid"], step_len=c["step_len"])
    return out.view(b, nq, h * HEAD_DIM)


def _reference(c):
    """What the models do with attn_impl="sdpa": permute, rotate q and k with gathered tables, SDPA per step."""
    b, nq, nk, h, step_len = c["batch"], c["nq"], c["nk"], c["heads"], c["step_len"]
    q, k, v = c["qkv"].permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, N, hd]
    cos, sin = grid_rope_tables(c["idx"], c["grid"][1:], HEAD_DIM)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = apply_rope(q, cos[:, :, nk - nq :], sin[:, :, nk - nq :])
    k = apply_rope(k, cos[:, :, nk - nq :], sin[:, :, nk - nq :])
    if c["past"] is not None:  # cached keys are stored rotated
        pk, pv = c["past"].permute(2, 0, 3, 1, 4).unbind(0)
        k = torch.cat([apply_rope(pk, cos[:, :, : nk - nq], sin[:, :, : nk - nq]), k], 2)
        v = torch.cat([pv, v], 2)
    if not step_len:
        out = F.scaled_dot_product_attention(q, k, v)
    else:
        offset = nk - nq
        out = torch.cat([F.scaled_dot_product_attention(q[:, :, s : s + step_len], k[:, :, : offset + s + step_len],
                                                        v[:, :, : offset + s + step_len])
                         for s in range(0, nq, step_len)], 2)
    return out.transpose(1, 2).reshape(b, nq, h * HEAD_DIM)


IMPLS = {"fused": _fused, "reference": _reference}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_attention(benchmark, case, impl):
    c = _inputs(case)
    fn = IMPLS[impl]
    grad = torch.randn(c["batch"], c["nq"], c["heads"] * HEAD_DIM, device="cuda", dtype=torch.bfloat16)

    def step():
        if c["backward"]:
            c["qkv"].grad = None
            fn(c).backward(grad)
        else:
            with torch.no_grad():
                fn(c)
        torch.cuda.synchronize()

    step()  # compile / warm up
    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    flops = _flops(c["batch"], c["heads"], c["nq"], c["nk"], c["step_len"], c["backward"])
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(case=case, impl=impl, backward=c["backward"], tflops=round(flops / mean / 1e12, 1),
                                gpu=torch.cuda.get_device_name())
    peak = peak_bf16_flops()
    if peak:
        benchmark.extra_info["fraction_of_bf16_peak"] = round(flops / mean / peak, 3)


@pytest.mark.parametrize("case", ["vitl_context", "ac_plan_T8"])
def test_cuda_attention_agrees(case):
    """The benchmarked pair computes the same thing (bf16: both against an fp32 run of the reference)."""
    c = _inputs(case)
    with torch.no_grad():
        a, b = _fused(c).float(), _reference(c).float()
        c32 = dict(c, qkv=c["qkv"].float(), past=None if c["past"] is None else c["past"].float())
        exact = _reference(c32)
    assert (a - exact).abs().max() <= 2 * (b - exact).abs().max()
