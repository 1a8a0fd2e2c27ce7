"""3D rotary position embedding exactly as V-JEPA 2 and V-JEPA 2.1 checkpoints were trained with it.

Per head of size `head_dim`, the axes t, h, w each get `d = 2 * ((head_dim // 3) // 2)` consecutive dims, in
that order; the last `head_dim - 3d` dims are not rotated (hd 64: 20/20/20 + 4, hd 80: 26/26/26 + 2,
hd 32: 10/10/10 + 2). Inside one axis block of size d, with `omega_k = 10000 ** (-k / (d/2))`, k < d/2:

    out[j] = x[j] * cos(p * omega_{j mod d/2}) + y[j] * sin(p * omega_{j mod d/2}),
    y[2k] = -x[2k + 1],  y[2k + 1] = x[2k].

That is, the frequency vectors are tiled ([f0..f_{d/2-1}, f0..f_{d/2-1}]) while the rotation pairs are
interleaved: the reference's quirk, not a norm-preserving rotation, and what the released weights need
(style "tiled"). V-JEPA 2.1 uses the standard interleaved rotation instead (style "interleaved"): the pair
(2k, 2k+1) turns by one angle p * omega_k, i.e. the same formula with omega_{j // 2} in place of
omega_{j mod d/2}. Weights of one version give wrong outputs under the other's style.

V-JEPA 2.1's encoder also rescales the row and column positions to its pretraining grid
(`interpolate_rope`): h -> h * G / (Hp - 1) and w -> w * G / (Wp - 1) with G = 256 / patch - 1 (15 for patch 16,
252 / 14 - 1 = 17 for patch 14); the frame position is not scaled (`rope_positions`).

Everything here is written as one elementwise op over the whole head, `x * cos + pair_swap(x) * sin`, with
full-head tables (cos = 1, sin = 0 on unrotated dims and on axes a token has no position for), so a fused
kernel only has to reproduce `apply_rope` given the same tables, and a KV cache can store rotated keys.

The models, the attention op's reference and its Triton kernels all use these tables, so this module sits in
the base layer below them (docs/ARCHITECTURE.md); `vjepa_fast.models.rope` re-exports it.
"""

from __future__ import annotations

import torch

ROPE_THETA = 10000.0
ROPE_TILED = "tiled"  # V-JEPA 2
ROPE_INTERLEAVED = "interleaved"  # V-JEPA 2.1
ROPE_STYLES = (ROPE_TILED, ROPE_INTERLEAVED)


def check_rope_style(style: str) -> None:
    if style not in ROPE_STYLES:
        raise ValueError(f"rope style must be one of {ROPE_STYLES}, got {style!r}")


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


def rope_positions(
    indices: torch.Tensor, grid_hw: tuple[int, int], interp: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid coordinates of flat token indices, with V-JEPA 2.1's optional rescaling of h and w.

    interp: 0 for integer positions (V-JEPA 2, the 2.1 predictor); G > 0 to map rows and columns onto a
    pretraining grid of G + 1 positions: h * G / (Hp - 1), w * G / (Wp - 1), computed in fp32 in that order
    as the reference does (`interpolate_rope=True`, G = 15 for patch 16). The reference divides by zero for
    a grid one patch high or wide; here that is a ValueError.
    Returns (t, h, w) shaped like `indices` (int64 without interp, else fp32 with t exact).
    """
    t, h, w = grid_positions(indices, grid_hw)
    if not interp:
        return t, h, w
    hp, wp = grid_hw
    if hp < 2 or wp < 2:
        raise ValueError(f"interpolated RoPE needs a token grid of at least 2x2 patches, got Hp x Wp = {hp} x {wp}")
    return t.float(), h.float() * interp / (hp - 1), w.float() * interp / (wp - 1)


def _axis_angles(pos: torch.Tensor, d: int, style: str = ROPE_TILED) -> torch.Tensor:
    """pos: [...] -> angles [..., d] (fp32): tiled (V-JEPA 2) or pairwise interleaved (2.1) frequencies."""
    k = torch.arange(d // 2, dtype=torch.float32, device=pos.device)
    omega = 1.0 / (ROPE_THETA ** (k / (d / 2.0)))
    freq = pos.to(torch.float32).unsqueeze(-1) * omega
    if style == ROPE_INTERLEAVED:
        return freq.repeat_interleave(2, dim=-1)
    return torch.cat([freq, freq], dim=-1)


def rope_tables(
    pos_t: torch.Tensor | None,
    pos_h: torch.Tensor | None,
    pos_w: torch.Tensor | None,
    head_dim: int,
    style: str = ROPE_TILED,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-head cos/sin tables for the given positions, in fp32.

    pos_t, pos_h, pos_w: integer (or float) positions, all of one shape [...], e.g. [N] or [B, N]; an axis
    given as None is left unrotated (cos 1, sin 0): action/state tokens of the AC predictor carry only t.
    style: "tiled" (V-JEPA 2) or "interleaved" (V-JEPA 2.1), see the module docstring.
    Returns cos, sin: [..., head_dim] float32.

    The reference computes omega and the angles in the input dtype (bf16 under autocast, where a position
    like 31 times omega keeps only 8 mantissa bits); we always compute them in fp32, so bf16 runs drift from
    the reference by that rounding (not from the true RoPE). fp32 runs match it.
    """
    check_rope_style(style)
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
            angles = _axis_angles(pos, d, style)
            cos_parts.append(angles.cos())
            sin_parts.append(angles.sin())
    rest = head_dim - 3 * d
    if rest:
        cos_parts.append(torch.ones(*shape, rest, device=device))
        sin_parts.append(torch.zeros(*shape, rest, device=device))
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def grid_rope_tables(
    indices: torch.Tensor, grid_hw: tuple[int, int], head_dim: int, style: str = ROPE_TILED, interp: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [..., head_dim] for flat token indices [...] read on a (Hp, Wp) grid.

    style, interp: the RoPE variant (see `rope_tables`) and the 2.1 position rescaling (see `rope_positions`).
    """
    t, h, w = rope_positions(indices, grid_hw, interp)
    return rope_tables(t, h, w, head_dim, style)


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
