"""Attention dispatch: one switch (`attn_impl`) so fused kernels can replace PyTorch SDPA later.

An implementation is a function `fn(q, k, v, *, scale) -> out` with q: [B, H, Nq, hd], k, v: [B, H, Nk, hd],
out: [B, H, Nq, hd], computing softmax(q k^T * scale) v with no mask (block-causal attention is built from
unmasked calls, see `ActionConditionedPredictor`). Register new ones with `register_attention_impl`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F


class AttentionFn(Protocol):
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor: ...


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


_IMPLS: dict[str, AttentionFn] = {"sdpa": _sdpa}


def register_attention_impl(
    name: str, fn: AttentionFn | Callable[..., torch.Tensor], *, overwrite: bool = False
) -> None:
    """Make `fn` selectable as `attn_impl=name` in every model config."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"attention impl name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"attention impl {name!r} must be callable, got {type(fn).__name__}")
    if name in _IMPLS and not overwrite:
        raise ValueError(f"attention impl {name!r} is already registered (pass overwrite=True to replace it)")
    _IMPLS[name] = fn


def available_attention_impls() -> tuple[str, ...]:
    return tuple(sorted(_IMPLS))


def check_attention_impl(impl: str) -> None:
    """Raise ValueError naming the known implementations when `impl` is not one of them."""
    if impl not in _IMPLS:
        raise ValueError(f"unknown attn_impl {impl!r}; known: {', '.join(available_attention_impls())}")


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, impl: str, scale: float | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale) v.

    q: [B, H, Nq, hd]; k, v: [B, H, Nk, hd]; scale defaults to hd ** -0.5. Returns [B, H, Nq, hd].
    """
    fn = _IMPLS.get(impl)
    if fn is None:
        check_attention_impl(impl)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    return fn(q, k, v, scale=scale)  # type: ignore[misc]
