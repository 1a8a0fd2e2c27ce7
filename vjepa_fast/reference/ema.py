"""Reference EMA updates of a target network: target = m * target + (1 - m) * source."""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def ema_update_reference_(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], momentum: float) -> None:
    """The definition of the fused op: maths in fp32 (fp64 for fp64 tensors), one rounding to the tensor dtype.

    target[i], source[i]: any shape, same shape and dtype; target is updated in place.
    """
    for k, q in zip(target, source, strict=True):
        acc = torch.float64 if k.dtype == torch.float64 else torch.float32
        k.copy_((momentum * k.to(acc) + (1.0 - momentum) * q.to(acc)).to(k.dtype))


@torch.no_grad()
def ema_update_foreach_(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], momentum: float) -> None:
    """What Meta's training loop does (two foreach passes, rounding after each in low precision)."""
    target, source = list(target), list(source)
    torch._foreach_mul_(target, momentum)
    torch._foreach_add_(target, source, alpha=1.0 - momentum)


@torch.no_grad()
def ema_update_loop_(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], momentum: float) -> None:
    """The naive per-parameter Python loop (a baseline for the benchmarks)."""
    for k, q in zip(target, source, strict=True):
        k.mul_(momentum).add_(q, alpha=1.0 - momentum)
