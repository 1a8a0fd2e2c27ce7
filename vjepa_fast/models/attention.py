"""Attention dispatch: one switch (`attn_impl`) choosing how every model block computes attention.

"sdpa" (default): the model rotates q and k (`apply_rope`) and calls PyTorch SDPA; block-causal attention is
one unmasked call per time step.
"fused": the model hands the qkv projection and the tokens' position codes to the fused RoPE attention op
(`vjepa_fast.ops.attention.rope_attention`: Triton on CUDA, Triton's interpreter on the CPU under
TRITON_INTERPRET=1, otherwise its PyTorch reference), which rotates, masks block-causally and attends in one
kernel. Called through `attention()` with already-rotated q/k, "fused" runs the same kernel with no rotation.

Other implementations are functions `fn(q, k, v, *, scale) -> out` with q: [B, H, Nq, hd],
k, v: [B, H, Nk, hd], out: [B, H, Nq, hd], computing softmax(q k^T * scale) v with no mask; register them with
`register_attention_impl`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F


class AttentionFn(Protocol):
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor: ...


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


FUSED = "fused"


def _fused_plain(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor:
    """The fused kernel on already-rotated q/k: code -1 is time step 0, a rotation by angle 0."""
    from vjepa_fast.ops.attention import rope_attention, uniform_cu_seqlens

    b, h, nq, hd = q.shape
    nk = k.shape[2]

    def packed(x: torch.Tensor, n: int) -> torch.Tensor:
        return x.transpose(1, 2).reshape(b * n, h, hd)

    codes_q = torch.full((b * nq,), -1, dtype=torch.int32, device=q.device)
    codes_k = torch.full((b * nk,), -1, dtype=torch.int32, device=q.device)
    out = rope_attention(packed(q, nq), packed(k, nk), packed(v, nk), codes_q, codes_k,
                         uniform_cu_seqlens(b, nq, q.device), uniform_cu_seqlens(b, nk, q.device),
                         max_seqlen_q=nq, max_seqlen_k=nk, grid=(1, 1, 1), scale=scale)
    return out.view(b, nq, h, hd).transpose(1, 2)


_IMPLS: dict[str, AttentionFn] = {"sdpa": _sdpa, FUSED: _fused_plain}


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
