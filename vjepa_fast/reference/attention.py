"""Plain-PyTorch twin of `torch.ops.vjepa_fast.rope_attention` and of its backward: the definition of correct.

Per sample: RoPE tables from the position codes (a flat grid index >= 0 rotates t/h/w, a code -(t+1) rotates t
only), `apply_rope` on queries and keys, then SDPA with an optional boolean block-causal mask. The backward is
written out by hand (fp32 maths), because the op's implementation runs below the autograd key.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vjepa_fast.rope import apply_rope, pair_swap, rope_positions, rope_tables

__all__ = ["reference_rope_attention", "reference_rope_attention_backward"]


def _tables_from_codes(codes: torch.Tensor, grid: Sequence[int], head_dim: int, style: str = "tiled",
                       interp: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    codes = codes.long()
    on_grid = codes >= 0
    t, h, w = rope_positions(codes.clamp(min=0), (grid[1], grid[2]), interp)
    t = torch.where(on_grid, t, -codes - 1)
    cos_g, sin_g = rope_tables(t, h, w, head_dim, style)
    cos_t, sin_t = rope_tables(t, None, None, head_dim, style)
    return torch.where(on_grid[:, None], cos_g, cos_t), torch.where(on_grid[:, None], sin_g, sin_t)


def _block_causal_mask(len_q: int, len_k: int, step_len: int, device: torch.device) -> torch.Tensor:
    q_step = (torch.arange(len_q, device=device) + (len_k - len_q)) // step_len
    k_step = torch.arange(len_k, device=device) // step_len
    return k_step[None, :] <= q_step[:, None]


def _key_ranges(cu_k: torch.Tensor, seqused_k: torch.Tensor | None) -> list[tuple[int, int]]:
    bk = cu_k.tolist()
    if seqused_k is None:
        return [(bk[b], bk[b + 1]) for b in range(len(bk) - 1)]
    return [(bk[b], bk[b] + n) for b, n in enumerate(seqused_k.tolist())]


def reference_rope_attention(q, k, v, pos_q, pos_k, cu_q, cu_k, grid: Sequence[int], scale: float,
                             step_len: int, seqused_k: torch.Tensor | None = None, rope_style: str = "tiled",
                             rope_interp: int = 0) -> torch.Tensor:
    """The op's maths in PyTorch (differentiable): out [Tq, H, hd] in q's dtype."""
    head_dim = q.shape[-1]
    out = []
    bq, keys = cu_q.tolist(), _key_ranges(cu_k, seqused_k)
    for b in range(len(bq) - 1):
        q0, q1, (k0, k1) = bq[b], bq[b + 1], keys[b]
        if q1 == q0:
            continue
        cq, sq = _tables_from_codes(pos_q[q0:q1], grid, head_dim, rope_style, rope_interp)
        ck, sk = _tables_from_codes(pos_k[k0:k1], grid, head_dim, rope_style, rope_interp)
        qb = apply_rope(q[q0:q1].transpose(0, 1), cq, sq)  # [H, Lq, hd]
        kb = apply_rope(k[k0:k1].transpose(0, 1), ck, sk)
        vb = v[k0:k1].transpose(0, 1)
        mask = _block_causal_mask(q1 - q0, k1 - k0, step_len, q.device) if step_len > 0 else None
        out.append(F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale).transpose(0, 1))
    if not out:
        return q.new_zeros(q.shape)
    return torch.cat(out, 0)


def reference_rope_attention_backward(grad_out, q, k, v, pos_q, pos_k, cu_q, cu_k, grid: Sequence[int],
                                      scale: float, step_len: int, seqused_k: torch.Tensor | None = None,
                                      rope_style: str = "tiled", rope_interp: int = 0):
    """Gradients of `reference_rope_attention` written out (fp32 maths): (dq, dk, dv) in the inputs' dtypes.

    Written by hand rather than by autograd because the op's implementation runs below the autograd key.
    """
    head_dim = q.shape[-1]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    bq, keys = cu_q.tolist(), _key_ranges(cu_k, seqused_k)
    for b in range(len(bq) - 1):
        q0, q1, (k0, k1) = bq[b], bq[b + 1], keys[b]
        if q1 == q0:
            continue
        cq, sq = _tables_from_codes(pos_q[q0:q1], grid, head_dim, rope_style, rope_interp)
        ck, sk = _tables_from_codes(pos_k[k0:k1], grid, head_dim, rope_style, rope_interp)
        qf = q[q0:q1].float().transpose(0, 1)  # [H, Lq, hd]
        kf = k[k0:k1].float().transpose(0, 1)
        vf = v[k0:k1].float().transpose(0, 1)
        go = grad_out[q0:q1].float().transpose(0, 1)
        qr = qf * cq + pair_swap(qf) * sq
        kr = kf * ck + pair_swap(kf) * sk
        s = qr @ kr.transpose(1, 2) * scale
        if step_len > 0:
            s = s.masked_fill(~_block_causal_mask(q1 - q0, k1 - k0, step_len, q.device), float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = p @ vf
        dv[k0:k1] = (p.transpose(1, 2) @ go).transpose(0, 1).to(v.dtype)
        dp = go @ vf.transpose(1, 2)
        ds = p * (dp - (go * o).sum(-1, keepdim=True))
        dqr = ds @ kr * scale
        dkr = ds.transpose(1, 2) @ qr * scale
        dq[q0:q1] = (dqr * cq - pair_swap(dqr * sq)).transpose(0, 1).to(q.dtype)
        dk[k0:k1] = (dkr * ck - pair_swap(dkr * sk)).transpose(0, 1).to(k.dtype)
    return dq, dk, dv
