"""Masking for V-JEPA 2 pretraining: multi-block 3D context/target masks (SPEC section 3)."""

from __future__ import annotations

from vjepa_fast.masks.multiblock import (
    MaskCollator,
    MaskConfig,
    MaskPair,
    MultiBlockMaskGenerator,
    VarlenMaskPair,
    block_size,
    default_mask_configs,
    pack_varlen,
)

__all__ = [
    "MaskCollator",
    "MaskConfig",
    "MaskPair",
    "MultiBlockMaskGenerator",
    "VarlenMaskPair",
    "block_size",
    "default_mask_configs",
    "pack_varlen",
]
