"""Re-export of `vjepa_fast.rope` (the RoPE tables moved below ops and models, which both use them)."""

from vjepa_fast.rope import (
    ROPE_INTERLEAVED,
    ROPE_STYLES,
    ROPE_THETA,
    ROPE_TILED,
    apply_rope,
    axis_dims,
    check_rope_style,
    grid_positions,
    grid_rope_tables,
    pair_swap,
    rope_positions,
    rope_tables,
)

__all__ = [
    "ROPE_INTERLEAVED",
    "ROPE_STYLES",
    "ROPE_THETA",
    "ROPE_TILED",
    "apply_rope",
    "axis_dims",
    "check_rope_style",
    "grid_positions",
    "grid_rope_tables",
    "pair_swap",
    "rope_positions",
    "rope_tables",
]
