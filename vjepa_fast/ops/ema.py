"""Fused EMA update of a target network (the target-encoder step of V-JEPA pretraining)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vjepa_fast.ops import _extension  # noqa: F401  (registers torch.ops.vjepa_fast.*)

EMA_BACKENDS = ("auto", "triton", "reference", "foreach")


@torch.library.register_fake("vjepa_fast::ema_update_")
def _ema_update_fake(target: list[torch.Tensor], source: list[torch.Tensor], momentum: float) -> None:
    return None


def _check(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], momentum: float) -> None:
    # The compiled kernels check the same things (with the same messages); checking here as well gives the
    # Triton and reference backends identical errors and catches non-list arguments early.
    if isinstance(target, torch.Tensor) or isinstance(source, torch.Tensor):
        raise TypeError("ema_update_: target and source must be lists of tensors, not a single tensor")
    if not isinstance(momentum, (int, float)) or isinstance(momentum, bool):
        raise TypeError(f"ema_update_: momentum must be a float, got {type(momentum).__name__}")
    if not (0.0 <= momentum <= 1.0) or math.isnan(momentum):
        raise ValueError(f"ema_update_: momentum must be in [0, 1], got {momentum}")
    if len(target) != len(source):
        raise ValueError(
            f"ema_update_: target and source must have the same length, got {len(target)} and {len(source)}"
        )


def ema_update_(
    target: Sequence[torch.Tensor],
    source: Sequence[torch.Tensor],
    momentum: float,
    *,
    backend: str = "auto",
) -> None:
    """In place, for every i: ``target[i] = momentum * target[i] + (1 - momentum) * source[i]``.

    Args:
        target: tensors updated in place (e.g. the target encoder's parameters), any shapes.
        source: tensors of the same shapes, dtypes and device (e.g. the context encoder's parameters).
        momentum: in [0, 1]; V-JEPA 2 uses 0.99925.
        backend: "auto" (compiled C++ CPU / CUDA multi-tensor kernel), "triton" (Triton kernel; on the CPU only
            under TRITON_INTERPRET=1), "reference" (plain PyTorch, fp32 maths) or "foreach" (Meta's two-pass
            torch._foreach_* update, rounds twice in low precision).

    fp32 maths for fp32/bf16/fp16 tensors (fp64 for fp64), one rounding to the parameter dtype.
    Works under torch.compile(fullgraph=True). Gradients are not tracked.
    """
    _check(target, source, momentum)
    target, source = list(target), list(source)
    if not target:
        return
    momentum = float(momentum)
    if backend not in EMA_BACKENDS:
        raise ValueError(f"ema_update_: backend must be one of {EMA_BACKENDS}, got {backend!r}")
    # Mixed devices must be caught here: the dispatcher would route a list holding a meta tensor to the
    # fake kernel and silently do nothing.
    _validate_like_kernel(target, source)
    with torch.no_grad():
        if backend == "auto":
            torch.ops.vjepa_fast.ema_update_(target, source, momentum)
        elif backend == "triton":
            from vjepa_fast.kernels.ema import ema_update_triton_

            ema_update_triton_(target, source, momentum)
        elif backend == "reference":
            from vjepa_fast.reference.ema import ema_update_reference_

            ema_update_reference_(target, source, momentum)
        else:
            from vjepa_fast.reference.ema import ema_update_foreach_

            ema_update_foreach_(target, source, momentum)


_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _validate_like_kernel(target: list[torch.Tensor], source: list[torch.Tensor]) -> None:
    device = target[0].device
    for i, (k, q) in enumerate(zip(target, source)):
        if k.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"ema_update_: target[{i}] must be float32, bfloat16, float16 or float64, got {k.dtype}")
        if k.dtype != q.dtype:
            raise TypeError(f"ema_update_: target[{i}] is {k.dtype} but source[{i}] is {q.dtype}")
        if k.shape != q.shape:
            raise ValueError(
                f"ema_update_: target[{i}] has shape {list(k.shape)} but source[{i}] has shape {list(q.shape)}"
            )
        if k.device != device or q.device != device:
            raise ValueError(f"ema_update_: all tensors must be on {device}; target[{i}]/source[{i}] are not")
        if not (k.is_contiguous() and q.is_contiguous()):
            raise ValueError(f"ema_update_: target[{i}] and source[{i}] must be contiguous")
