"""Fused RoPE attention over packed variable-length samples: `torch.ops.vjepa_fast.rope_attention`.

    out = softmax(rope(q) rope(k)^T * scale [+ block-causal mask]) v, per sample and head,

with V-JEPA 2's 3D RoPE computed from integer position codes (see `position_codes`), or V-JEPA 2.1's
(`rope_style="interleaved"`, with `rope_interp` rescaling rows and columns as its encoder does). The tokens
of all samples are packed one after another ([T, H, hd], sample b at `cu_seqlens[b]:cu_seqlens[b+1]`), so
samples keep their own lengths. Backends: "triton" (kernels/attention.py: CUDA tensors, or CPU tensors
under TRITON_INTERPRET=1) and "reference" (`vjepa_fast.reference.attention`: the same maths in PyTorch, per
sample `apply_rope` + SDPA with a boolean block-causal mask). "auto" picks Triton wherever it can run. The op has autograd (the backward is a
second op) and fake kernels, so it works under torch.compile(fullgraph=True). Having no C++ kernel, the op
declares its schema here (torch.library.custom_op) rather than in csrc/ops.cpp.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from vjepa_fast.reference.attention import reference_rope_attention, reference_rope_attention_backward
from vjepa_fast.rope import ROPE_STYLES

ATTENTION_BACKENDS = ("auto", "triton", "reference")
MIN_HEAD_DIM = 8  # the kernels pad the head to a power of two >= 16 (tl.dot's smallest K)
MAX_HEAD_DIM = 128


def triton_available(device: torch.device) -> bool:
    """True where the Triton kernels can run: a CUDA device, or the CPU under TRITON_INTERPRET=1."""
    if device.type == "cuda":
        ok = True
    elif device.type == "cpu":
        ok = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    else:
        return False
    if not ok:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def position_codes(indices: torch.Tensor) -> torch.Tensor:
    """int32 position codes for flat grid indices (t-major, then h, then w): the indices themselves."""
    return indices.to(torch.int32)


def time_only_codes(steps: torch.Tensor) -> torch.Tensor:
    """int32 codes of tokens that carry only a time step t (rotated on the t dims only): -(t + 1)."""
    return (-steps - 1).to(torch.int32)


# ----------------------------------------------------------------------------------------------------------
# The custom ops

@torch.library.custom_op("vjepa_fast::rope_attention", mutates_args=())
def _rope_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos_q: torch.Tensor,
                       pos_k: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor, seqused_k: torch.Tensor | None,
                       max_q: int, max_k: int, grid: list[int], scale: float, step_len: int, backend: str,
                       rope_style: str = "tiled", rope_interp: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vjepa_fast.kernels.attention import rope_attention_fwd

        return rope_attention_fwd(q, k, v, pos_q, pos_k, cu_q, cu_k, max_q, tuple(grid), scale, step_len, seqused_k,
                                  rope_style, rope_interp)
    with torch.no_grad():
        out = reference_rope_attention(q, k, v, pos_q, pos_k, cu_q, cu_k, grid, scale, step_len, seqused_k,
                                       rope_style, rope_interp)
    # The reference backend recomputes in its backward and has no use for the log-sum-exp.
    return out.contiguous(), q.new_zeros((q.shape[0], q.shape[1]), dtype=torch.float32)


@_rope_attention_op.register_fake
def _(q, k, v, pos_q, pos_k, cu_q, cu_k, seqused_k, max_q, max_k, grid, scale, step_len, backend, rope_style="tiled",
      rope_interp=0):
    return q.new_empty(q.shape), q.new_empty((q.shape[0], q.shape[1]), dtype=torch.float32)


@torch.library.custom_op("vjepa_fast::rope_attention_backward", mutates_args=())
def _rope_attention_bwd_op(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           out: torch.Tensor, lse: torch.Tensor, pos_q: torch.Tensor, pos_k: torch.Tensor,
                           cu_q: torch.Tensor, cu_k: torch.Tensor, seqused_k: torch.Tensor | None, max_q: int,
                           max_k: int, grid: list[int], scale: float, step_len: int, backend: str,
                           rope_style: str = "tiled", rope_interp: int = 0
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if backend == "triton":
        from vjepa_fast.kernels.attention import rope_attention_bwd

        return rope_attention_bwd(grad_out, q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, max_q, max_k,
                                  tuple(grid), scale, step_len, seqused_k, rope_style, rope_interp)
    dq, dk, dv = reference_rope_attention_backward(grad_out, q, k, v, pos_q, pos_k, cu_q, cu_k, grid, scale,
                                                   step_len, seqused_k, rope_style, rope_interp)
    return dq.contiguous(), dk.contiguous(), dv.contiguous()


@_rope_attention_bwd_op.register_fake
def _(grad_out, q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, seqused_k, max_q, max_k, grid, scale, step_len,
      backend, rope_style="tiled", rope_interp=0):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape))


def _setup_context(ctx, inputs, output):
    (q, k, v, pos_q, pos_k, cu_q, cu_k, seqused_k, max_q, max_k, grid, scale, step_len, backend, rope_style,
     rope_interp) = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, seqused_k)
    ctx.args = (max_q, max_k, grid, scale, step_len, backend, rope_style, rope_interp)


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, seqused_k = ctx.saved_tensors
    max_q, max_k, grid, scale, step_len, backend, rope_style, rope_interp = ctx.args
    dq, dk, dv = torch.ops.vjepa_fast.rope_attention_backward(
        grad_out, q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, seqused_k, max_q, max_k, grid, scale, step_len,
        backend, rope_style, rope_interp)
    return dq, dk, dv, None, None, None, None, None, None, None, None, None, None, None, None, None


_rope_attention_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------------------
# Public entry point

def _check(name: str, t: object, dims: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"rope_attention: {name} must be a tensor, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(f"rope_attention: {name} must have {dims} dims, got shape {tuple(t.shape)}")
    return t


def rope_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pos_q: torch.Tensor,
    pos_k: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    *,
    max_seqlen_q: int,
    max_seqlen_k: int,
    grid: Sequence[int],
    scale: float | None = None,
    step_len: int = 0,
    seqused_k: torch.Tensor | None = None,
    backend: str = "auto",
    validate: bool = True,
    rope_style: str = "tiled",
    rope_interp: int = 0,
) -> torch.Tensor:
    """RoPE attention over packed samples.

    Args:
        q: [Tq, H, hd]; k, v: [Tk, H, hd] (fp16, bf16 or fp32, one dtype; last dim contiguous; other strides
            free, e.g. views of one qkv projection). hd even, 8..128.
        pos_q, pos_k: int32 [Tq], [Tk] position codes: a flat grid index >= 0 (t/h/w rotation), or -(t+1) for a
            token with only a time step (`time_only_codes`).
        cu_seqlens_q, cu_seqlens_k: int32 [B+1], ascending offsets of each sample's tokens.
        max_seqlen_q, max_seqlen_k: the longest sample (Python ints: no device sync).
        grid: (T, Hp, Wp) bounds of the positions: 0 <= t < T, h < Hp, w < Wp.
        scale: defaults to hd ** -0.5.
        step_len: 0 for full attention; > 0 for block-causal attention over time steps of step_len tokens
            (key j of a sample is seen by query i when j // step_len <= (i + Lk - Lq) // step_len).
        seqused_k: optional int32 [B]: sample b's keys are the first seqused_k[b] rows from cu_seqlens_k[b]
            (a preallocated KV-cache buffer of which only a prefix is filled); Lk = seqused_k[b].
        backend: "auto", "triton" or "reference".
        validate: check the index tensors' values (one host sync; skipped under torch.compile): offsets that
            start at 0, ascend and end at the packed length, samples no longer than max_seqlen_*, position
            codes inside `grid`, a key for every query, and Lk >= Lq per sample when block-causal. Anything
            else is refused with a ValueError rather than computed wrong. The models pass False: they build
            these tensors themselves, and a sync per block would stall a GPU.
        rope_style: "tiled" (V-JEPA 2's RoPE) or "interleaved" (V-JEPA 2.1's standard pairwise rotation).
        rope_interp: 0, or G > 0 to rescale grid rows and columns to h * G / (Hp - 1), w * G / (Wp - 1) as
            V-JEPA 2.1's encoder does (`vjepa_fast.rope.rope_positions`; needs Hp, Wp >= 2).
    Returns [Tq, H, hd] in q's dtype.
    """
    for name, t, dims in (("q", q, 3), ("k", k, 3), ("v", v, 3), ("pos_q", pos_q, 1), ("pos_k", pos_k, 1),
                          ("cu_seqlens_q", cu_seqlens_q, 1), ("cu_seqlens_k", cu_seqlens_k, 1)):
        _check(name, t, dims)
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"rope_attention: q must be float16, bfloat16 or float32, got {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"rope_attention: {name} is {t.dtype} but q is {q.dtype}")
    if k.shape != v.shape or k.shape[1:] != q.shape[1:]:
        raise ValueError(f"rope_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} must be "
                         "[Tq, H, hd], [Tk, H, hd], [Tk, H, hd]")
    head_dim = q.shape[-1]
    if head_dim % 2 or not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"rope_attention: head dim must be even and in [{MIN_HEAD_DIM}, {MAX_HEAD_DIM}], "
                         f"got {head_dim}")
    for name, t, n in (("pos_q", pos_q, q.shape[0]), ("pos_k", pos_k, k.shape[0])):
        if t.dtype != torch.int32 or t.numel() != n:
            raise ValueError(f"rope_attention: {name} must be int32 with {n} entries, got {t.dtype} {tuple(t.shape)}")
    for name, t in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if t.dtype != torch.int32 or t.numel() < 2:
            raise ValueError(f"rope_attention: {name} must be int32 [B+1] with B >= 1, got {t.dtype} "
                             f"{tuple(t.shape)}")
    if seqused_k is not None and (not isinstance(seqused_k, torch.Tensor) or seqused_k.dtype != torch.int32
                                  or seqused_k.shape != (cu_seqlens_k.numel() - 1,)):
        raise ValueError(f"rope_attention: seqused_k must be int32 [B] = [{cu_seqlens_k.numel() - 1}]")
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError("rope_attention: cu_seqlens_q and cu_seqlens_k must describe the same number of samples")
    devices = {t.device for t in (q, k, v, pos_q, pos_k, cu_seqlens_q, cu_seqlens_k)}
    if len(devices) != 1:
        raise ValueError(f"rope_attention: all tensors must be on one device, got {sorted(map(str, devices))}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"rope_attention: {name}'s last dim must be contiguous (stride 1)")
    grid = [int(g) for g in grid]
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"rope_attention: grid must be (T, Hp, Wp) positive ints, got {grid}")
    if not isinstance(step_len, int) or step_len < 0:
        raise ValueError(f"rope_attention: step_len must be an int >= 0, got {step_len!r}")
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"rope_attention: backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if rope_style not in ROPE_STYLES:
        raise ValueError(f"rope_attention: rope_style must be one of {ROPE_STYLES}, got {rope_style!r}")
    if not isinstance(rope_interp, int) or rope_interp < 0:
        raise ValueError(f"rope_attention: rope_interp must be an int >= 0, got {rope_interp!r}")
    if rope_interp and (grid[1] < 2 or grid[2] < 2):
        raise ValueError(f"rope_attention: rope_interp needs a grid of at least 2x2 patches, got {tuple(grid)}")
    if backend == "auto":
        backend = "triton" if triton_available(q.device) else "reference"
    elif backend == "triton" and not triton_available(q.device):
        raise RuntimeError("rope_attention: backend='triton' needs a CUDA tensor, or TRITON_INTERPRET=1 set "
                           "before import for CPU tensors (and triton installed)")
    if validate and not torch.compiler.is_compiling():
        _check_values(q.shape[0], k.shape[0], pos_q, pos_k, cu_seqlens_q, cu_seqlens_k, seqused_k,
                      int(max_seqlen_q), int(max_seqlen_k), grid, step_len)
    scale = head_dim ** -0.5 if scale is None else float(scale)
    out, _ = torch.ops.vjepa_fast.rope_attention(
        q, k, v, pos_q, pos_k, cu_seqlens_q, cu_seqlens_k, seqused_k, int(max_seqlen_q), int(max_seqlen_k), grid,
        scale, step_len, backend, rope_style, int(rope_interp))
    return out


def _check_values(tq: int, tk: int, pos_q: torch.Tensor, pos_k: torch.Tensor, cu_q: torch.Tensor,
                  cu_k: torch.Tensor, seqused_k: torch.Tensor | None, max_q: int, max_k: int, grid: list[int],
                  step_len: int) -> None:
    """The value checks of `rope_attention(validate=True)`: one transfer of the small index tensors."""
    n_grid, steps = grid[0] * grid[1] * grid[2], grid[0]
    small = [cu_q, cu_k] + ([] if seqused_k is None else [seqused_k])
    codes = [(name, t) for name, t in (("pos_q", pos_q), ("pos_k", pos_k)) if t.numel()]
    ends = [torch.stack(t.aminmax()).long() for _, t in codes]
    host = torch.cat([t.reshape(-1).long() for t in small] + ends).tolist()
    b = cu_q.numel() - 1
    bq, bk = host[: b + 1], host[b + 1 : 2 * b + 2]
    used = host[2 * b + 2 : 3 * b + 2] if seqused_k is not None else None
    for name, cu, total, exact in (("cu_seqlens_q", bq, tq, True), ("cu_seqlens_k", bk, tk, used is None)):
        if cu[0] != 0 or any(b1 < b0 for b0, b1 in zip(cu, cu[1:])) or (cu[-1] != total if exact else cu[-1] > total):
            raise ValueError(f"rope_attention: {name} must start at 0, not decrease and end at "
                             f"{'' if exact else 'most '}{total} (the packed length), got {cu}")
    lens_q = [b1 - b0 for b0, b1 in zip(bq, bq[1:])]
    lens_k = [b1 - b0 for b0, b1 in zip(bk, bk[1:])]
    if used is not None:
        if any(u < 0 or u > n for u, n in zip(used, lens_k)):
            raise ValueError(f"rope_attention: seqused_k {used} must lie in [0, the buffer of each sample "
                             f"{lens_k}]")
        lens_k = used
    for name, lens, bound in (("max_seqlen_q", lens_q, max_q), ("max_seqlen_k", lens_k, max_k)):
        if max(lens) > bound:
            raise ValueError(f"rope_attention: {name}={bound} but a sample has {max(lens)} tokens")
    for i, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        if lq and not lk:
            raise ValueError(f"rope_attention: sample {i} has {lq} queries and no keys")
        if step_len and lq > lk:
            raise ValueError(f"rope_attention: block-causal sample {i} has more queries ({lq}) than keys ({lk}); "
                             "queries are the last Lq of the keys' positions")
    tail = host[len(host) - 2 * len(codes):]
    for (name, _), lo, hi in zip(codes, tail[0::2], tail[1::2]):
        if lo < -steps or hi >= n_grid:
            raise ValueError(f"rope_attention: {name} codes span [{lo}, {hi}] but grid {tuple(grid)} allows "
                             f"[{-steps}, {n_grid - 1}] (grid indices >= 0, time-only codes -(t+1) with t < "
                             f"{steps})")


def uniform_cu_seqlens(batch: int, length: int, device: torch.device) -> torch.Tensor:
    """cu_seqlens of `batch` samples of `length` tokens each."""
    return torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=device)


__all__ = ["ATTENTION_BACKENDS", "position_codes", "reference_rope_attention", "rope_attention",
           "time_only_codes", "triton_available", "uniform_cu_seqlens"]
