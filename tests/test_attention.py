"""Fused RoPE attention (kernels/attention.py, vjepa_fast.ops.attention) against the reference maths.

On the CPU the Triton kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 when no GPU
is visible); the same tests run the compiled kernels on a GPU. Three independent computations are compared:
the Triton kernels, `reference_rope_attention` (apply_rope + SDPA) differentiated by autograd, and the
reference backend's hand-written backward; the models with attn_impl="fused" are checked against Meta's
recorded outputs and against attn_impl="sdpa", forward and backward.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vjepa_fast import load_official
from vjepa_fast.models import (
    ACKVCache,
    ACPredictorConfig,
    EncoderConfig,
    PredictorConfig,
    VideoEncoder,
)
from vjepa_fast.models.attention import attention
from vjepa_fast.ops.attention import (
    MAX_HEAD_DIM,
    MIN_HEAD_DIM,
    rope_attention,
    time_only_codes,
    triton_available,
)
from vjepa_fast.reference.attention import reference_rope_attention, reference_rope_attention_backward

TOL = dict(atol=1e-4, rtol=1e-4)  # against Meta's recorded fp32 outputs (fixtures README: ~1e-5 expected)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
HAVE_TRITON = triton_available(DEVICE)
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="needs a GPU or TRITON_INTERPRET=1 with triton installed")

torch.set_num_threads(2)


def _case(lens_q, lens_k, heads, head_dim, dtype, grid=(4, 4, 4), time_only=0.0, seed=0):
    """Packed q/k/v (k and v as views of one [T, 2, H, hd] tensor, as the models pass them) and codes."""
    g = torch.Generator().manual_seed(seed)
    tq, tk = sum(lens_q), sum(lens_k)
    q = torch.randn(tq, heads, head_dim, generator=g).to(DEVICE, dtype)
    kv = torch.randn(tk, 2, heads, head_dim, generator=g).to(DEVICE, dtype)
    n_grid = grid[0] * grid[1] * grid[2]

    def codes(lens):
        c = torch.randint(0, n_grid, (sum(lens),), generator=g)
        t = torch.randint(0, grid[0], (sum(lens),), generator=g)
        c = torch.where(torch.rand(sum(lens), generator=g) < time_only, time_only_codes(t).long(), c)
        return c.to(DEVICE, torch.int32)

    cu = lambda lens: torch.tensor([0, *lens]).cumsum(0).to(DEVICE, torch.int32)  # noqa: E731
    return dict(q=q, kv=kv, pos_q=codes(lens_q), pos_k=codes(lens_k), cu_q=cu(lens_q), cu_k=cu(lens_k),
                max_q=max(lens_q), max_k=max(lens_k), grid=grid)


def _run(c, backend, step_len=0, grad=None, dtype=None):
    """Output and (dq, dkv) of one backend; 'autograd' = autograd through reference_rope_attention."""
    q = c["q"].detach().clone().requires_grad_(True)
    kv = c["kv"].detach().clone().requires_grad_(True)
    if dtype is not None:
        q, kv = q.detach().to(dtype).requires_grad_(True), kv.detach().to(dtype).requires_grad_(True)
    k, v = kv[:, 0], kv[:, 1]
    if backend == "autograd":
        out = reference_rope_attention(q, k, v, c["pos_q"], c["pos_k"], c["cu_q"], c["cu_k"], c["grid"],
                                       q.shape[-1] ** -0.5, step_len)
    else:
        out = rope_attention(q, k, v, c["pos_q"], c["pos_k"], c["cu_q"], c["cu_k"], max_seqlen_q=c["max_q"],
                             max_seqlen_k=c["max_k"], grid=c["grid"], step_len=step_len, backend=backend)
    if grad is None:
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(99)).to(DEVICE)
    dq, dkv = torch.autograd.grad(out, (q, kv), grad.to(out.dtype))
    return out.float(), dq.float(), dkv.float(), grad


def _assert_fp32_close(a, b, name):
    # fp32 vs fp32: differences are summation-order rounding, ~1e-7 relative; 1e-5 of the largest entry.
    scale = max(b.abs().max().item(), 1.0)
    err = (a - b).abs().max().item()
    assert err <= 1e-5 * scale, f"{name}: max |diff| {err:.3g} > 1e-5 x {scale:.3g}"


SHAPES = {
    # name: (lens_q, lens_k, heads, head_dim, step_len, time_only fraction)
    "one_token": ([1], [1], 1, 24, 0, 0.0),
    "len97_hd24": ([97], [97], 1, 24, 0, 0.0),
    "varlen_hd80": ([97, 1, 33], [97, 1, 33], 2, 80, 0, 0.0),
    "hd64_time_only_tokens": ([40, 70], [40, 70], 2, 64, 0, 0.3),
    "block_causal": ([90, 54], [90, 54], 2, 32, 18, 0.1),
    "block_causal_kv_cache": ([18, 36], [90, 54], 1, 32, 18, 0.1),
    "kv_cache_full_attention": ([5, 9], [30, 20], 2, 48, 0, 0.0),
}


@needs_triton
@pytest.mark.parametrize("name", list(SHAPES))
def test_fp32_matches_reference(name):
    lens_q, lens_k, heads, hd, step_len, time_only = SHAPES[name]
    c = _case(lens_q, lens_k, heads, hd, torch.float32, time_only=time_only)
    tri = _run(c, "triton", step_len)
    ref = _run(c, "autograd", step_len, grad=tri[3])
    hand = _run(c, "reference", step_len, grad=tri[3])
    for i, what in enumerate(("out", "dq", "dkv")):
        _assert_fp32_close(tri[i], ref[i], f"triton {what}")
        _assert_fp32_close(hand[i], ref[i], f"reference backend {what}")


@needs_triton
def test_len1025_and_uneven_tiles(monkeypatch):
    """1025 tokens (one past a tile multiple) with BLOCK_M != BLOCK_N, full and block-causal: the loop bounds
    (the causal key end, the dK/dV loop's first query block) round to tiles of two different sizes."""
    import vjepa_fast.kernels.attention as kernels

    c = _case([1025], [1025], 1, 24, torch.float32, grid=(8, 8, 16))
    monkeypatch.setattr(kernels, "BLOCK_OVERRIDE", (128, 64))
    tri = _run(c, "triton")
    ref = _run(c, "autograd", grad=tri[3])
    for i, what in enumerate(("out", "dq", "dkv")):
        _assert_fp32_close(tri[i], ref[i], what)
    c = _case([150, 61], [150, 61], 1, 24, torch.float32)
    for blocks in ((16, 64), (64, 16)):
        monkeypatch.setattr(kernels, "BLOCK_OVERRIDE", blocks)
        tri = _run(c, "triton", step_len=20)
        ref = _run(c, "autograd", step_len=20, grad=tri[3])
        for i, what in enumerate(("out", "dq", "dkv")):
            _assert_fp32_close(tri[i], ref[i], f"{blocks} {what}")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("step_len", [0, 16])
def test_low_precision_error_bound(dtype, step_len):
    """STYLE.md's rule: the kernel's error against an fp32 reference is at most 2x that of the same computation
    done by PyTorch in that low precision."""
    c = _case([64, 50], [64, 50], 2, 64, torch.float32, time_only=0.2)
    exact = _run(c, "autograd", step_len)  # fp32 inputs: the reference
    grad = exact[3]
    tri = _run(c, "triton", step_len, grad=grad, dtype=dtype)
    low = _run(c, "autograd", step_len, grad=grad, dtype=dtype)
    for i, what in enumerate(("out", "dq", "dkv")):
        err_kernel = (tri[i] - exact[i]).abs().max().item()
        err_torch = (low[i] - exact[i]).abs().max().item()
        assert err_kernel <= 2 * err_torch, f"{what}: kernel {err_kernel:.3g} vs PyTorch {dtype} {err_torch:.3g}"


@needs_triton
def test_seqused_k_reads_only_the_filled_prefix():
    """KV-cache buffers: sample b's keys are rows cu_k[b] .. cu_k[b] + seqused_k[b]; the rest is never read
    (filled with NaN here) and gets zero gradient."""
    lens_q, used, cap = [7, 12], [30, 19], 40
    c = _case(lens_q, used, 2, 32, torch.float32, time_only=0.2)
    buf = torch.full((2 * cap, 2, 2, 32), float("nan"), device=DEVICE)
    pos_buf = torch.zeros(2 * cap, dtype=torch.int32, device=DEVICE)
    for b in range(2):
        buf[b * cap : b * cap + used[b]] = c["kv"][c["cu_k"][b] : c["cu_k"][b + 1]]
        pos_buf[b * cap : b * cap + used[b]] = c["pos_k"][c["cu_k"][b] : c["cu_k"][b + 1]]
    buf.requires_grad_(True)
    q = c["q"].detach().requires_grad_(True)
    cu_buf = torch.tensor([0, cap, 2 * cap], dtype=torch.int32, device=DEVICE)
    seqused = torch.tensor(used, dtype=torch.int32, device=DEVICE)
    for step_len in (0, 6):
        out = rope_attention(q, buf[:, 0], buf[:, 1], c["pos_q"], pos_buf, c["cu_q"], cu_buf, max_seqlen_q=12,
                             max_seqlen_k=30, grid=c["grid"], step_len=step_len, seqused_k=seqused, backend="triton")
        ref = _run(c, "autograd", step_len)
        _assert_fp32_close(out.detach(), ref[0], "out")
        dq, dbuf = torch.autograd.grad(out, (q, buf), ref[3])
        _assert_fp32_close(dq, ref[1], "dq")
        for b in range(2):
            _assert_fp32_close(dbuf[b * cap : b * cap + used[b]], ref[2][c["cu_k"][b] : c["cu_k"][b + 1]], "dkv")
            assert torch.equal(dbuf[b * cap + used[b] : (b + 1) * cap], torch.zeros_like(dbuf[: cap - used[b]]))


@needs_triton
def test_block_causal_is_causal():
    """Changing the last step's keys/values leaves earlier steps' outputs bit-identical (tile skipping may not
    read the future), and a query's output depends on its own step's keys."""
    c = _case([60], [60], 1, 32, torch.float32)
    out = _run(c, "triton", step_len=20)[0]
    c2 = dict(c, kv=c["kv"].clone())
    c2["kv"][40:] = torch.randn_like(c2["kv"][40:])
    out2 = _run(c2, "triton", step_len=20)[0]
    assert torch.equal(out[:40], out2[:40])
    assert not torch.allclose(out[40:], out2[40:])


@needs_triton
def test_opcheck_and_compile():
    c = _case([7, 5], [7, 5], 2, 16, torch.float32)
    args = (c["q"].requires_grad_(True), c["kv"][:, 0], c["kv"][:, 1], c["pos_q"], c["pos_k"], c["cu_q"],
            c["cu_k"], None, c["max_q"], c["max_k"], list(c["grid"]), 0.25, 0)
    for backend in ("triton", "reference"):
        torch.library.opcheck(torch.ops.vjepa_fast.rope_attention.default, (*args, backend))

    def f(q, k, v):
        o = rope_attention(q, k, v, c["pos_q"], c["pos_k"], c["cu_q"], c["cu_k"], max_seqlen_q=7,
                           max_seqlen_k=7, grid=(4, 4, 4), step_len=3)
        return (o * o).sum()

    q, kv = c["q"].detach().requires_grad_(True), c["kv"].detach().requires_grad_(True)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    loss = compiled(q, kv[:, 0], kv[:, 1])
    loss.backward()
    q2, kv2 = q.detach().requires_grad_(True), kv.detach().requires_grad_(True)
    loss2 = f(q2, kv2[:, 0], kv2[:, 1])
    loss2.backward()
    torch.testing.assert_close(loss, loss2, atol=0, rtol=0)
    torch.testing.assert_close(q.grad, q2.grad, atol=0, rtol=0)
    torch.testing.assert_close(kv.grad, kv2.grad, atol=0, rtol=0)


def test_reference_backward_matches_autograd():
    """The reference backend's hand-written backward (the CPU fallback's) against autograd, fp32."""
    c = _case([30, 12], [45, 12], 2, 40, torch.float32, time_only=0.3)
    ref = _run(c, "autograd", step_len=3)
    k, v = c["kv"][:, 0], c["kv"][:, 1]
    dq, dk, dv = reference_rope_attention_backward(ref[3], c["q"], k, v, c["pos_q"], c["pos_k"], c["cu_q"],
                                                   c["cu_k"], c["grid"], 40 ** -0.5, 3)
    _assert_fp32_close(dq, ref[1], "dq")
    _assert_fp32_close(torch.stack([dk, dv], 1), ref[2], "dkv")


# ------------------------------------------------------------------------------------ property test

PROPERTY_MODES = ("masked", "full_grid", "block_causal", "kv_cache", "time_only")


def _property_case(head_dim: int, mode: str, seed: int) -> dict:
    """A random packed problem of one kind (lengths 1..300), built the way the models build theirs.

    masked: each sample keeps its own ascending random subset of a (T, Hp, Wp) grid (ragged keep sets);
    full_grid: every sample takes the whole grid; block_causal: steps of 0-2 time-only tokens (the AC
    predictor's action/state) plus a frame of grid tokens, step_len tokens each; kv_cache: the same with
    queries only for the last steps and keys in a preallocated buffer (seqused_k) whose gap is NaN;
    time_only: codes -(t+1) only (the `attention()` switch on rotated inputs).
    """
    import random

    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    heads, batch = rng.randint(1, 2), rng.randint(1, 3)
    step_len, seqused = 0, None
    if mode in ("masked", "full_grid", "time_only"):
        while True:
            grid = (rng.randint(1, 6), rng.randint(1, 8), rng.randint(1, 8))
            n = grid[0] * grid[1] * grid[2]
            if n <= 300:
                break
        if mode == "masked":
            pos = [torch.randperm(n, generator=g)[: rng.randint(1, n)].sort().values for _ in range(batch)]
        elif mode == "full_grid":
            pos = [torch.arange(n) for _ in range(batch)]
        else:
            pos = [-1 - torch.randint(0, grid[0], (rng.randint(1, 300),), generator=g) for _ in range(batch)]
        pos_q = pos_k = pos
    else:
        extra = rng.randint(0, 2)
        while True:
            grid = (rng.randint(1, 8), rng.randint(1, 6), rng.randint(1, 6))
            step_len = extra + grid[1] * grid[2]
            if grid[0] * step_len <= 300:
                break
        frame = grid[1] * grid[2]
        steps = [rng.randint(1, grid[0]) for _ in range(batch)]
        pos_k = [torch.cat([torch.cat([torch.full((extra,), -1 - t), t * frame + torch.arange(frame)])
                            for t in range(s)]) for s in steps]
        pos_q = pos_k
        if mode == "kv_cache":
            pos_q = [p[(s - rng.randint(1, s)) * step_len:] for p, s in zip(pos_k, steps)]
            seqused = [p.numel() for p in pos_k]
            pad = [rng.randint(0, 20) for _ in pos_k]  # the buffer's unfilled rows, never read
            pos_k = [torch.cat([p, torch.zeros(r, dtype=p.dtype)]) for p, r in zip(pos_k, pad)]

    def packed(parts):
        return torch.cat(parts).to(DEVICE, torch.int32)

    def cu(parts):
        return torch.tensor([0, *[p.numel() for p in parts]]).cumsum(0).to(DEVICE, torch.int32)

    tq, tk = sum(p.numel() for p in pos_q), sum(p.numel() for p in pos_k)
    q = torch.randn(tq, heads, head_dim, generator=g)
    kv = torch.randn(tk, 2, heads, head_dim, generator=g)
    if seqused is not None:
        starts = cu(pos_k).tolist()
        for b, used in enumerate(seqused):
            kv[starts[b] + used : starts[b + 1]] = float("nan")
    lens_k = seqused or [p.numel() for p in pos_k]
    return dict(q=q.to(DEVICE), kv=kv.to(DEVICE), pos_q=packed(pos_q), pos_k=packed(pos_k), cu_q=cu(pos_q),
                cu_k=cu(pos_k), max_q=max(p.numel() for p in pos_q), max_k=max(lens_k), grid=grid,
                step_len=step_len,
                seqused=None if seqused is None else torch.tensor(seqused, dtype=torch.int32, device=DEVICE))


@needs_triton
@pytest.mark.parametrize("head_dim", range(MIN_HEAD_DIM, MAX_HEAD_DIM + 1, 2), ids=lambda d: f"hd{d}")
def test_property_every_head_dim_and_kind(head_dim):
    """Every head dim the op accepts (odd-sized RoPE splits such as hd 30's 10/10/10 included), one problem
    kind per head dim in turn, random lengths 1..300: the Triton kernels' out, dq, dk and dv in fp32 within
    1e-5 of autograd through the reference (relative to the largest entry, at least 1)."""
    mode = PROPERTY_MODES[(head_dim // 2) % len(PROPERTY_MODES)]
    c = _property_case(head_dim, mode, seed=1000 + head_dim)
    q = c["q"].clone().requires_grad_(True)
    kv = c["kv"].clone().requires_grad_(True)
    k, v = kv[:, 0], kv[:, 1]
    out = rope_attention(q, k, v, c["pos_q"], c["pos_k"], c["cu_q"], c["cu_k"], max_seqlen_q=c["max_q"],
                         max_seqlen_k=c["max_k"], grid=c["grid"], step_len=c["step_len"], seqused_k=c["seqused"],
                         backend="triton")
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(head_dim)).to(DEVICE)
    dq, dkv = torch.autograd.grad(out, (q, kv), grad)
    qr = c["q"].clone().requires_grad_(True)
    kvr = torch.nan_to_num(c["kv"]).requires_grad_(True)  # the reference slices the filled prefix itself
    ref = reference_rope_attention(qr, kvr[:, 0], kvr[:, 1], c["pos_q"], c["pos_k"], c["cu_q"], c["cu_k"],
                                   c["grid"], head_dim ** -0.5, c["step_len"], c["seqused"])
    dq_ref, dkv_ref = torch.autograd.grad(ref, (qr, kvr), grad)
    what = f"hd {head_dim} {mode} grid {c['grid']} cu_q {c['cu_q'].tolist()} cu_k {c['cu_k'].tolist()}"
    assert torch.isfinite(out).all() and torch.isfinite(dq).all(), what
    _assert_fp32_close(out, ref, f"{what}: out")
    _assert_fp32_close(dq, dq_ref, f"{what}: dq")
    if c["seqused"] is not None:  # the buffer's unfilled rows get no gradient
        starts, used = c["cu_k"].tolist(), c["seqused"].tolist()
        filled = torch.cat([torch.arange(s, s + u) for s, u in zip(starts, used)]).to(DEVICE)
        assert not dkv[~torch.isin(torch.arange(kv.shape[0], device=DEVICE), filled)].any(), what
        dkv, dkv_ref = dkv[filled], dkv_ref[filled]
    _assert_fp32_close(dkv, dkv_ref, f"{what}: dk, dv")


@needs_triton
@pytest.mark.parametrize("hw", [(96, 48), (96, 96)], ids=["96x48_54_tokens", "96x96_108_tokens"])
def test_regression_meta_masked_encoder_head_dim_30(hw):
    """The issue-22 shape: embed 120, 4 heads (head dim 30, RoPE 10/10/10, no unrotated tail), 96 px, 6 frames,
    2 samples keeping 18 of 54 (or 108) tokens each (other keep sets per sample), fp32: the fused encoder equals
    the sdpa one (which equals Meta's on the fixtures) and a float64 twin of it, masked and unmasked."""
    cfg = EncoderConfig.tiny(embed_dim=120, num_heads=4, img_size=hw, num_frames=6, depth=2)
    assert cfg.head_dim == 30
    torch.manual_seed(0)
    ref = VideoEncoder(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    fused = VideoEncoder(cfg.replace(attn_impl="fused")).eval()
    fused.load_state_dict(ref.state_dict())
    exact = VideoEncoder(cfg).eval().double()
    exact.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(30)
    video = torch.randn(2, 3, 6, *hw, generator=g)
    n = 3 * (hw[0] // 16) * (hw[1] // 16)
    masks = torch.stack([torch.randperm(n, generator=g)[:18].sort().values for _ in range(2)])
    with torch.no_grad():
        for m in (None, [masks]):
            want = exact(video.double(), m).float()
            got, sdpa = fused(video, m), ref(video, m)
            assert (sdpa - want).abs().max() <= 1e-4
            assert (got - want).abs().max() <= 1e-4, f"masked={m is not None}: {(got - want).abs().max():.3g}"
            assert (got - sdpa).abs().max() <= 1e-5
        ragged = fused(video, [masks[0], masks[1][:11]])
        assert (ragged[0] - fused(video[:1], [masks[:1]])[0]).abs().max() <= 1e-5
        assert (ragged[1] - exact(video[1:].double(), [masks[1:, :11]])[0].float()).abs().max() <= 1e-4


def test_argument_errors(monkeypatch):
    c = _case([4], [4], 1, 16, torch.float32)
    q, k, v = c["q"], c["kv"][:, 0], c["kv"][:, 1]
    base = dict(max_seqlen_q=4, max_seqlen_k=4, grid=(4, 4, 4))
    pos, cu = c["pos_q"], c["cu_q"]
    for hd in (6, 31, 130):
        with pytest.raises(ValueError, match=f"head dim must be even and in \\[8, 128\\], got {hd}"):
            z = torch.zeros(4, 1, hd)
            rope_attention(z, z, z, pos, pos, cu, cu, **base)
    with pytest.raises(TypeError, match="k is torch.float16 but q is torch.float32"):
        rope_attention(q, k.half(), v, pos, pos, cu, cu, **base)
    with pytest.raises(ValueError, match="pos_q must be int32 with 4 entries"):
        rope_attention(q, k, v, pos.long(), pos, cu, cu, **base)
    with pytest.raises(ValueError, match="backend must be one of"):
        rope_attention(q, k, v, pos, pos, cu, cu, backend="cuda", **base)
    with pytest.raises(ValueError, match="step_len must be an int >= 0"):
        rope_attention(q, k, v, pos, pos, cu, cu, step_len=-1, **base)
    # Values the kernels cannot do right are refused, not computed.
    bad = torch.tensor([0, 3, 64, 2], dtype=torch.int32, device=DEVICE)  # 64 lies past the 4x4x4 grid
    with pytest.raises(ValueError, match=r"pos_k codes span \[0, 64\] but grid \(4, 4, 4\) allows \[-4, 63\]"):
        rope_attention(q, k, v, pos, bad, cu, cu, **base)
    with pytest.raises(ValueError, match=r"pos_q codes span \[-5, "):
        rope_attention(q, k, v, torch.tensor([-5, 0, 1, 2], dtype=torch.int32, device=DEVICE), pos, cu, cu, **base)
    with pytest.raises(ValueError, match="max_seqlen_q=3 but a sample has 4 tokens"):
        rope_attention(q, k, v, pos, pos, cu, cu, **{**base, "max_seqlen_q": 3})
    two = torch.tensor([0, 4, 4], dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="sample 0 has 4 queries and no keys"):
        rope_attention(q, k, v, pos, pos, two, torch.tensor([0, 0, 4], dtype=torch.int32, device=DEVICE), **base)
    with pytest.raises(ValueError, match="cu_seqlens_q must start at 0, not decrease and end at 4"):
        rope_attention(q, k, v, pos, pos, torch.tensor([0, 3], dtype=torch.int32, device=DEVICE), cu, **base)
    with pytest.raises(ValueError, match="block-causal sample 0 has more queries \\(4\\) than keys \\(2\\)"):
        rope_attention(q, k, v, pos, pos, cu, cu, step_len=2, seqused_k=torch.tensor([2], dtype=torch.int32,
                                                                                      device=DEVICE), **base)
    assert rope_attention(q, k, v, pos, pos, two, two, **base).shape == q.shape  # an empty sample is fine
    if DEVICE.type == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs a CUDA tensor, or TRITON_INTERPRET=1"):
            rope_attention(q, k, v, pos, pos, cu, cu, backend="triton", **base)


# ------------------------------------------------------------------------------------ the models


@pytest.fixture(scope="module")
def io(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "official_tiny_io.pt", weights_only=True)


@pytest.fixture(scope="module")
def ac_io(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "official_ac_tiny_io.pt", weights_only=True)


def _official(fixtures_dir, attn_impl, key="encoder"):
    return load_official(fixtures_dir / "official_tiny.pt", encoder_key=key, encoder_config=EncoderConfig.tiny(),
                         predictor_config=PredictorConfig.tiny(), attn_impl=attn_impl).eval()


def _official_ac(fixtures_dir, attn_impl):
    return load_official(fixtures_dir / "official_ac_tiny.pt", encoder_config=EncoderConfig.tiny(depth=1, num_frames=8),
                         predictor_config=ACPredictorConfig.tiny(), attn_impl=attn_impl).eval()


def _grads(module, out, grad):
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.autograd.grad(out, params, grad, allow_unused=True)


def _assert_grads_close(ga, gb, what):
    for i, (a, b) in enumerate(zip(ga, gb, strict=True)):
        if a is None or b is None:
            assert a is None and b is None, f"{what}: parameter {i} has a gradient in one run only"
            continue
        _assert_fp32_close(a, b, f"{what} parameter {i}")


def test_fused_models_match_fixtures_and_sdpa(fixtures_dir, io, ac_io):
    """attn_impl="fused" on Meta's recorded fp32 outputs, and forward + backward equal to attn_impl="sdpa"."""
    fused, ref = _official(fixtures_dir, "fused"), _official(fixtures_dir, "sdpa")
    assert fused.encoder.blocks[0].attn.attn_impl == "fused"
    with torch.no_grad():
        torch.testing.assert_close(fused.encoder(io["video"]), io["enc_out"], **TOL)
        torch.testing.assert_close(fused.encoder(io["video"], io["masks_x"]), io["enc_masked"], **TOL)
        torch.testing.assert_close(fused.encoder(io["video_nonsquare"]), io["enc_nonsquare_out"], **TOL)
        out = fused.predictor(io["enc_masked"], io["masks_x"], io["masks_y"], mask_index=1)
        torch.testing.assert_close(out, io["pred_out"], **TOL)

    g = torch.Generator().manual_seed(5)
    for name, run in (("encoder", lambda m: m.encoder(io["video"], io["masks_y"])),
                      ("predictor", lambda m: m.predictor(io["enc_masked"], io["masks_x"], io["masks_y"]))):
        a = run(fused)
        b = run(ref)
        _assert_fp32_close(a.detach(), b.detach(), f"{name} forward")
        grad = torch.randn(a.shape, generator=g)
        module = fused.encoder if name == "encoder" else fused.predictor
        module_ref = ref.encoder if name == "encoder" else ref.predictor
        _assert_grads_close(_grads(module, a, grad), _grads(module_ref, b, grad), name)

    fused_ac, ref_ac = _official_ac(fixtures_dir, "fused"), _official_ac(fixtures_dir, "sdpa")
    a = fused_ac.predictor(ac_io["x"], ac_io["actions"], ac_io["states"])
    torch.testing.assert_close(a.detach(), ac_io["out"], **TOL)
    b = ref_ac.predictor(ac_io["x"], ac_io["actions"], ac_io["states"])
    grad = torch.randn(a.shape, generator=g)
    _assert_grads_close(_grads(fused_ac.predictor, a, grad), _grads(ref_ac.predictor, b, grad), "AC predictor")


@torch.no_grad()
def test_fused_ac_kv_cache(fixtures_dir, ac_io):
    pred, n = _official_ac(fixtures_dir, "fused").predictor, 16
    full = pred(ac_io["x"], ac_io["actions"], ac_io["states"])
    cache = ACKVCache()
    parts = [pred(ac_io["x"][:, : 2 * n], ac_io["actions"][:, :2], ac_io["states"][:, :2], cache=cache)]
    assert cache.layers[0].packed
    for t in (2, 3):
        sl, st = slice(t * n, (t + 1) * n), slice(t, t + 1)
        parts.append(pred(ac_io["x"][:, sl], ac_io["actions"][:, st], ac_io["states"][:, st], cache=cache))
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full, ac_io["out"], **TOL)
    many = ACKVCache()
    pred(ac_io["x"][:1, : 2 * n], ac_io["actions"][:1, :2], ac_io["states"][:1, :2], cache=many)
    many = many.repeat_batch(3)
    out = pred(ac_io["x"][:1, 2 * n :].expand(3, -1, -1), ac_io["actions"][:1, 2:].expand(3, -1, -1),
               ac_io["states"][:1, 2:].expand(3, -1, -1), cache=many)
    torch.testing.assert_close(out, full[:1, 2 * n :].expand(3, -1, -1), atol=1e-5, rtol=1e-5)
    # A cache filled by the other implementation is refused, not misread.
    other = ACKVCache()
    _official_ac(fixtures_dir, "sdpa").predictor(ac_io["x"][:, :n], ac_io["actions"][:, :1], ac_io["states"][:, :1],
                                                 cache=other)
    with pytest.raises(ValueError, match="filled by another attn_impl"):
        pred(ac_io["x"][:, n : 2 * n], ac_io["actions"][:, 1:2], ac_io["states"][:, 1:2], cache=other)


def test_fused_bf16_error_bound(fixtures_dir, io):
    """bf16 weights and inputs: the fused models' error against fp32 at most 2x that of the sdpa models."""
    exact = _official(fixtures_dir, "sdpa")
    low = {impl: _official(fixtures_dir, impl).to(torch.bfloat16) for impl in ("sdpa", "fused")}
    with torch.no_grad():
        ref = exact.encoder(io["video"], io["masks_x"])
        errs = {impl: (m.encoder(io["video"].bfloat16(), io["masks_x"]).float() - ref).abs().max().item()
                for impl, m in low.items()}
        assert errs["fused"] <= 2 * errs["sdpa"], errs
        ref = exact.predictor(io["enc_masked"], io["masks_x"], io["masks_y"])
        errs = {impl: (m.predictor(io["enc_masked"].bfloat16(), io["masks_x"], io["masks_y"]).float() - ref)
                .abs().max().item() for impl, m in low.items()}
        assert errs["fused"] <= 2 * errs["sdpa"], errs


@torch.no_grad()
def test_ragged_masks(fixtures_dir, io):
    """Per-sample masks of different lengths: the fused encoder packs them into one kernel call per block and
    gives what each sample encoded alone gives (sdpa)."""
    fused, ref = _official(fixtures_dir, "fused"), _official(fixtures_dir, "sdpa")
    masks = [io["masks_y"][0], io["masks_x"][1]]  # 16 and 6 tokens
    outs = fused.encoder(io["video"], masks)
    assert [o.shape[0] for o in outs] == [16, 6]
    for i, m in enumerate(masks):
        torch.testing.assert_close(outs[i], ref.encoder(io["video"][i : i + 1], m[None])[0], atol=1e-5, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(ref.encoder(io["video"], masks),
                                                  [ref.encoder(io["video"][i : i + 1], m[None])[0]
                                                   for i, m in enumerate(masks)]))
    layers = fused.encoder(io["video"], masks, out_layers=[0, 1])
    torch.testing.assert_close(layers[1][1], outs[1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="one per sample: got 1 for a batch of 2"):
        fused.encoder(io["video"], masks[:1])


@torch.no_grad()
def test_fused_without_triton_uses_reference(monkeypatch, fixtures_dir, io):
    """attn_impl="fused" where Triton cannot run (CPU, no interpreter) falls back to the op's reference."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if DEVICE.type == "cpu":
        assert not triton_available(torch.device("cpu"))
    fused = _official(fixtures_dir, "fused")
    torch.testing.assert_close(fused.encoder(io["video"]), io["enc_out"], **TOL)


def test_attention_switch_fused_on_rotated_inputs():
    """`attention(..., impl="fused")` on already-rotated q/k (no positions) is plain softmax attention."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 32, generator=g) for n in (9, 13, 13))
    _assert_fp32_close(attention(q, k, v, impl="fused"), F.scaled_dot_product_attention(q, k, v), "attention")


def test_fused_compiles_in_models(fixtures_dir, io):
    fused = _official(fixtures_dir, "fused")
    compiled = torch.compile(fused.encoder, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(io["video"], io["masks_x"]), io["enc_masked"], **TOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_models_bf16():
    torch.manual_seed(0)
    for impl_cfg in (EncoderConfig.tiny(), ):
        ref = VideoEncoder(impl_cfg).cuda()
        fused = VideoEncoder(impl_cfg.replace(attn_impl="fused")).cuda()
        fused.load_state_dict(ref.state_dict())
        v = torch.randn(2, 3, 4, 64, 64, device="cuda")
        with torch.no_grad():
            exact = ref(v)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                e_ref = (ref(v).float() - exact).abs().max().item()
                e_fused = (fused(v).float() - exact).abs().max().item()
        assert e_fused <= 2 * e_ref, (e_fused, e_ref)


def test_cli_info_says_where_fused_attention_runs(capsys, monkeypatch):
    from vjepa_fast.cli import main

    assert main(["info"]) == 0
    expect = "Triton kernel" if DEVICE.type == "cuda" else "Triton interpreter"
    assert f"attn_impl='fused' on {DEVICE.type}: {expect}" in capsys.readouterr().out
    if DEVICE.type == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        assert main(["info"]) == 0
        assert "attn_impl='fused' on cpu: PyTorch reference" in capsys.readouterr().out
