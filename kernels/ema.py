"""Triton EMA kernel: target = m * target + (1 - m) * source, fp32 maths, in place.

One launch per tensor (Triton has no portable pointer tables); the CUDA multi-tensor kernel in
csrc/ema/ema_cuda.cu is the fast path for long parameter lists. This one serves as a second,
independently written GPU implementation and runs on the CPU under TRITON_INTERPRET=1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

_BLOCK = 4096


@triton.jit
def _round_to_bf16_bits(x):
    # Round-to-nearest-even onto the bf16 grid in fp32, so the final cast is exact. Triton's interpreter
    # truncates fp32 -> bf16 casts; on GPUs this is what the hardware cast does anyway.
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _ema_kernel(target_ptr, source_ptr, n, a, b, IS_BF16: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    k = tl.load(target_ptr + offs, mask=mask).to(tl.float32)
    q = tl.load(source_ptr + offs, mask=mask).to(tl.float32)
    out = a * k + b * q
    if IS_BF16:
        out = _round_to_bf16_bits(out)
    tl.store(target_ptr + offs, out.to(target_ptr.dtype.element_ty), mask=mask)


@torch.no_grad()
def ema_update_triton_(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], momentum: float) -> None:
    """In-place EMA over two lists of contiguous fp32/bf16/fp16 tensors (validated by the caller).

    Triton passes Python floats as fp32 scalars, so fp64 tensors are refused rather than silently computed
    with an fp32 momentum.
    """
    for i, k in enumerate(target):
        if k.dtype == torch.float64:
            raise TypeError(f"ema_update_ (triton): target[{i}] is float64; use backend='auto' for float64")
    for k, q in zip(target, source, strict=True):
        n = k.numel()
        if n == 0:
            continue
        grid = (triton.cdiv(n, _BLOCK),)
        _ema_kernel[grid](k, q, n, float(momentum), 1.0 - float(momentum),
                          IS_BF16=k.dtype == torch.bfloat16, BLOCK=_BLOCK)
