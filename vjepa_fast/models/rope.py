"""3D rotary position embedding exactly as V-JEPA 2 checkpoints were trained with it.

Per head of size `head_dim`, the axes t, h, w each get `d = 2 * ((head_dim // 3) // 2)` consecutive dims, in
that order; the last `head_dim - 3d` dims are not rotated (hd 64: 20/20/20 + 4, hd 80: 26/26/26 + 2,
hd 32: 10/10/10 + 2). Inside one axis block of size d, with `omega_k = 10000 ** (-k / (d/2))`, k < d/2:

    out[j] = x[j] * cos(p * omega_{j mod d/2}) + y[j] * sin(p * omega_{j mod d/2}),
    y[2k] = -x[2k + 1],  y[2k + 1] = x[2k].

That is, the frequency vectors are tiled ([f0..f_{d/2-1}, f0..f_{d/2-1}]) while the rotation pairs are
interleaved: the reference's quirk, not a norm-preserving rotation, and what the released weights need.

Everything here is written as one elementwise op over the whole head, `x * cos + pair_swap(x) * sin`, with
full-head tables (cos = 1, sin = 0 on unrotated dims and on axes a token has no position for), so a fused
kernel only has to reproduce `apply_rope` given the same tables, and a KV cache can store rotated keys.
"""

from __future__ import annotations

import torch

ROPE_THETA = 10000.0


def axis_dims(head_dim: int) -> int:
    """Dims each of t, h, w gets: `2 * ((head_dim // 3) // 2)`."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(
    indices: torch.Tensor, grid_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split flat token indices (t-major, then h, then w) into integer grid coordinates.

    indices: [...] int64 token indices; grid_hw: (Hp, Wp) of one tubelet.
    Returns (t, h, w), each shaped like `indices`.
    """
    hp, wp = grid_hw
    per_frame = hp * wp
    t = torch.div(indices, per_frame, rounding_mode="floor")
    rem = indices - t * per_frame
    h = torch.div(rem, wp, rounding_mode="floor")
    w = rem - h * wp
    return t, h, w


def _axis_angles(pos: torch.Tensor, d: int) -> torch.Tensor:
    """pos: [...] -> angles [..., d] (fp32), tiled frequencies."""
    k = torch.arange(d // 2, dtype=torch.float32, device=pos.device)
    omega = 1.0 / (ROPE_THETA ** (k / (d / 2.0)))
    freq = pos.to(torch.float32).unsqueeze(-1) * omega
    return torch.cat([freq, freq], dim=-1)


def rope_tables(
    pos_t: torch.Tensor | None,
    pos_h: torch.Tensor | None,
    pos_w: torch.Tensor | None,
    head_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-head cos/sin tables for the given positions, in fp32.

    pos_t, pos_h, pos_w: integer (or float) positions, all of one shape [...], e.g. [N] or [B, N]; an axis
    given as None is left unrotated (cos 1, sin 0): action/state tokens of the AC predictor carry only t.
    Returns cos, sin: [..., head_dim] float32.

    The reference computes omega and the angles in the input dtype (bf16 under autocast, where a position
    like 31 times omega keeps only 8 mantissa bits); we always compute them in fp32, so bf16 runs drift from
    the reference by that rounding (not from the true RoPE). fp32 runs match it.
    """
    given = [p for p in (pos_t, pos_h, pos_w) if p is not None]
    if not given:
        raise ValueError("rope_tables needs at least one of pos_t, pos_h, pos_w")
    shape = given[0].shape
    device = given[0].device
    d = axis_dims(head_dim)
    cos_parts: list[torch.Tensor] = []
    sin_parts: list[torch.Tensor] = []
    for pos in (pos_t, pos_h, pos_w):
        if pos is None:
            cos_parts.append(torch.ones(*shape, d, device=device))
            sin_parts.append(torch.zeros(*shape, d, device=device))
        else:
            if pos.shape != shape:
                raise ValueError(f"rope_tables: position shapes differ ({tuple(pos.shape)} vs {tuple(shape)})")
            angles = _axis_angles(pos, d)
            cos_parts.append(angles.cos())
            sin_parts.append(angles.sin())
    rest = head_dim - 3 * d
    if rest:
        cos_parts.append(torch.ones(*shape, rest, device=device))
        sin_parts.append(torch.zeros(*shape, rest, device=device))
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def grid_rope_tables(
    indices: torch.Tensor, grid_hw: tuple[int, int], head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [..., head_dim] for flat token indices [...] read on a (Hp, Wp) grid."""
    t, h, w = grid_positions(indices, grid_hw)
    return rope_tables(t, h, w, head_dim)


def pair_swap(x: torch.Tensor) -> torch.Tensor:
    """y[2k] = -x[2k+1], y[2k+1] = x[2k] over the last dim (even size)."""
    x2 = x.unflatten(-1, (-1, 2))
    return torch.stack((-x2[..., 1], x2[..., 0]), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys.

    x: [B, H, N, hd] (any float dtype); cos, sin: broadcastable to x, e.g. [N, hd] or [B, 1, N, hd], fp32.
    The product is formed in fp32 and cast back to x's dtype.
    """
    xf = x.float()
    return (xf * cos + pair_swap(xf) * sin).to(x.dtype)
