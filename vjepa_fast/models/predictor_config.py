"""Configurations of the predictors: the masked-latent predictor of pretraining (PredictorConfig) and the
action-conditioned predictor (ACPredictorConfig), with named presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vjepa_fast.models.encoder_config import (
    V21_LEVELS,
    V21_PREDICTOR_DEPTHS,
    VJEPA2,
    VJEPA2_1,
    EncoderConfig,
    _check_version,
    _ConfigBase,
    rope_pretrained_grid,
)

__all__ = ["PredictorConfig", "ACPredictorConfig"]


@dataclass(frozen=True)
class PredictorConfig(_ConfigBase):
    """Masked-latent predictor (`MaskedPredictor`) of V-JEPA 2 pretraining.

    `embed_dim` is the encoder width it reads and writes; `img_size`/`patch_size`/`tubelet_size` fix the
    token grid on which the token indices (and so the RoPE positions) are read.

    V-JEPA 2.1 (`version="vjepa2_1"`) reads `num_levels` encoder taps concatenated ([.., num_levels *
    embed_dim]: input projection Linear(L*D, D) -> GELU -> Linear(D, P) for 4 levels, Linear(D, P) for 1),
    adds a learned image or video embedding to every token, rotates with the interleaved RoPE on the square
    grid img_size[0] // patch (no rescaling unless `interpolate_rope`), and writes num_levels * out_dim
    channels per token (`out_embed_dim`, None: embed_dim; the distilled B/L predictors write the teacher's
    1664) through `predictor_proj` for targets and, with `context_head`, `predictor_proj_context` for the
    context tokens. `num_levels`, `out_embed_dim`, `modality_embedding`, `context_head` and
    `interpolate_rope` are V-JEPA 2.1 only.
    """

    embed_dim: int
    predictor_embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    num_mask_tokens: int = 10
    img_size: int | tuple[int, int] = 256
    patch_size: int = 16
    num_frames: int = 64
    tubelet_size: int = 2
    attn_impl: str = "sdpa"
    mlp_ratio: float = 4.0
    version: str = VJEPA2
    num_levels: int = 1  # V-JEPA 2.1: encoder taps read and predicted (4; 1 for the distilled B/L)
    out_embed_dim: int | None = None  # V-JEPA 2.1: output width per level (None: embed_dim)
    modality_embedding: bool = True  # V-JEPA 2.1 only
    context_head: bool = True  # V-JEPA 2.1 only: predictor_proj_context (the reference's return_all_tokens)
    interpolate_rope: bool = False  # V-JEPA 2.1 only (the hub leaves it off for predictors)

    def __post_init__(self) -> None:
        self._check_common()
        for field in ("embed_dim", "predictor_embed_dim", "depth", "num_mask_tokens", "num_levels"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PredictorConfig.{field} must be a positive int, got {value!r}")
        self._check_heads("PredictorConfig", "predictor_embed_dim", self.predictor_embed_dim, self.num_heads)
        _check_version("PredictorConfig", self.version)
        if self.out_embed_dim is not None and (not isinstance(self.out_embed_dim, int) or self.out_embed_dim < 1):
            raise ValueError("PredictorConfig.out_embed_dim must be None or a positive int, "
                             f"got {self.out_embed_dim!r}")
        if self.version == VJEPA2:
            if self.num_levels != 1 or self.out_embed_dim is not None or self.interpolate_rope:
                raise ValueError("PredictorConfig.num_levels / out_embed_dim / interpolate_rope are V-JEPA 2.1 "
                                 "features (version='vjepa2_1')")
            return
        if self.depth not in V21_PREDICTOR_DEPTHS:
            raise ValueError(f"PredictorConfig.depth must be one of {V21_PREDICTOR_DEPTHS} for V-JEPA 2.1 (the "
                             f"reference's level table), got {self.depth}")
        if self.num_levels > V21_LEVELS:
            raise ValueError(f"PredictorConfig.num_levels must be in 1..4 for V-JEPA 2.1, got {self.num_levels}")
        if self.interpolate_rope:
            rope_pretrained_grid(self.patch_size)

    @property
    def head_dim(self) -> int:
        return self.predictor_embed_dim // self.num_heads

    @property
    def rope_interp(self) -> int:
        return rope_pretrained_grid(self.patch_size) if self.interpolate_rope else 0

    @property
    def in_dim(self) -> int:
        """Width of the context tokens it reads: num_levels * embed_dim."""
        return self.num_levels * self.embed_dim

    @property
    def out_dim(self) -> int:
        """Width of each prediction: num_levels * (out_embed_dim or embed_dim)."""
        return self.num_levels * (self.out_embed_dim or self.embed_dim)

    @property
    def rope_grid_hw(self) -> tuple[int, int]:
        """The (Hp, Wp) grid token indices are read on: V-JEPA 2.1's predictor uses a square one of
        img_size[0] // patch (the reference's grid_size), V-JEPA 2's the configured one."""
        hp, wp = self.grid_hw
        return (hp, hp) if self.is_v21 else (hp, wp)

    @classmethod
    def for_encoder(cls, encoder: EncoderConfig, **overrides: Any) -> PredictorConfig:
        """The hub predictor (384 wide, 12 deep, 12 heads, 10 mask tokens) for an encoder config."""
        return cls(
            **{
                "embed_dim": encoder.embed_dim,
                "img_size": encoder.img_size,
                "patch_size": encoder.patch_size,
                "num_frames": encoder.num_frames,
                "tubelet_size": encoder.tubelet_size,
                "attn_impl": encoder.attn_impl,
                **overrides,
            }
        )

    @classmethod
    def vit_large(cls, **overrides: Any) -> PredictorConfig:
        return cls.for_encoder(EncoderConfig.vit_large(), **overrides)

    @classmethod
    def vit_huge(cls, **overrides: Any) -> PredictorConfig:
        return cls.for_encoder(EncoderConfig.vit_huge(), **overrides)

    @classmethod
    def vit_giant(cls, **overrides: Any) -> PredictorConfig:
        return cls.for_encoder(EncoderConfig.vit_giant(), **overrides)

    @classmethod
    def vit_giant_384(cls, **overrides: Any) -> PredictorConfig:
        return cls.for_encoder(EncoderConfig.vit_giant_384(), **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> PredictorConfig:
        """Width 64, depth 2, 2 heads over the tiny encoder (96): the reference fixtures' predictor."""
        return cls(
            **{
                "embed_dim": 96,
                "predictor_embed_dim": 64,
                "depth": 2,
                "num_heads": 2,
                "img_size": 64,
                "num_frames": 4,
                **overrides,
            }
        )

    @classmethod
    def small(cls, **overrides: Any) -> PredictorConfig:
        return cls.for_encoder(
            EncoderConfig.small(), **{"predictor_embed_dim": 192, "depth": 6, "num_heads": 6, **overrides}
        )

    # ------------------------------------------------------------------------------------ V-JEPA 2.1
    @classmethod
    def _v21(cls, encoder: EncoderConfig, **fields: Any) -> PredictorConfig:
        return cls.for_encoder(encoder, **{"version": VJEPA2_1, "num_mask_tokens": 8, **fields})

    @classmethod
    def vjepa2_1_vit_base_384(cls, **overrides: Any) -> PredictorConfig:
        """The distilled ViT-B's predictor: 384 wide, 12 deep, one level, ViT-G (1664) outputs; 22.9M."""
        return cls._v21(EncoderConfig.vjepa2_1_vit_base_384(),
                        **{"num_levels": 1, "out_embed_dim": 1664, **overrides})

    @classmethod
    def vjepa2_1_vit_large_384(cls, **overrides: Any) -> PredictorConfig:
        """The distilled ViT-L's predictor: 384 wide, 12 deep, one level, ViT-G (1664) outputs; 23.0M."""
        return cls._v21(EncoderConfig.vjepa2_1_vit_large_384(),
                        **{"num_levels": 1, "out_embed_dim": 1664, **overrides})

    @classmethod
    def vjepa2_1_vit_giant_384(cls, **overrides: Any) -> PredictorConfig:
        """ViT-g's 2.1 predictor: 384 wide, 24 deep, 12 heads, 4 levels in and out; 55.4M parameters."""
        return cls._v21(EncoderConfig.vjepa2_1_vit_giant_384(), **{"depth": 24, "num_levels": 4, **overrides})

    @classmethod
    def vjepa2_1_vit_gigantic_384(cls, **overrides: Any) -> PredictorConfig:
        """ViT-G's 2.1 predictor: 384 wide, 24 deep, 12 heads, 4 levels in and out; 59.4M parameters."""
        return cls._v21(EncoderConfig.vjepa2_1_vit_gigantic_384(), **{"depth": 24, "num_levels": 4, **overrides})

    @classmethod
    def vjepa2_1_tiny(cls, **overrides: Any) -> PredictorConfig:
        """The 2.1 fixtures' predictor: 32 wide, 4 deep, 2 heads, 8 mask tokens, 4 levels over the tiny 2.1
        encoder (48)."""
        return cls._v21(EncoderConfig.vjepa2_1_tiny(), **{"predictor_embed_dim": 32, "depth": 4, "num_heads": 2,
                                                          "num_levels": 4, **overrides})

    @classmethod
    def vjepa2_1_tiny_distilled(cls, **overrides: Any) -> PredictorConfig:
        """The 2.1 fixtures' distilled-style predictor: as `vjepa2_1_tiny` with one level and 80-wide outputs
        (the B/L hub form: a single Linear(48, 32) input projection)."""
        return cls.vjepa2_1_tiny(**{"num_levels": 1, "out_embed_dim": 80, **overrides})


@dataclass(frozen=True)
class ACPredictorConfig(_ConfigBase):
    """Action-conditioned predictor (`ActionConditionedPredictor`) of V-JEPA 2-AC.

    `num_frames // tubelet_size` bounds the number of time steps a call may hold (the reference builds its
    causal mask for that many steps and cannot go beyond it). `img_size` fixes the frame token grid.
    """

    embed_dim: int
    predictor_embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    action_dim: int = 7
    img_size: int | tuple[int, int] = 256
    patch_size: int = 16
    num_frames: int = 64
    tubelet_size: int = 2
    attn_impl: str = "sdpa"
    mlp_ratio: float = 4.0
    extrinsics_dim: int = 6

    def __post_init__(self) -> None:
        self._check_common()
        for field in ("embed_dim", "predictor_embed_dim", "depth", "action_dim", "extrinsics_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ACPredictorConfig.{field} must be a positive int, got {value!r}")
        self._check_heads("ACPredictorConfig", "predictor_embed_dim", self.predictor_embed_dim, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.predictor_embed_dim // self.num_heads

    @property
    def max_steps(self) -> int:
        return self.num_frames // self.tubelet_size

    @property
    def tokens_per_frame(self) -> int:
        hp, wp = self.grid_hw
        return hp * wp

    @classmethod
    def vit_giant(cls, **overrides: Any) -> ACPredictorConfig:
        """V-JEPA 2-AC predictor over ViT-g: width 1024, depth 24, 16 heads; 305.2M parameters."""
        return cls(**{"embed_dim": 1408, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> ACPredictorConfig:
        """Width 64, depth 2, 2 heads over a 96-wide encoder, 64 px, 8 frames: the AC fixture's predictor."""
        return cls(
            **{
                "embed_dim": 96,
                "predictor_embed_dim": 64,
                "depth": 2,
                "num_heads": 2,
                "img_size": 64,
                "num_frames": 8,
                **overrides,
            }
        )

    @classmethod
    def cpu_small(cls, **overrides: Any) -> ACPredictorConfig:
        """Width 256, depth 6, 4 heads (head dim 64) over the 192-wide `EncoderConfig.cpu_small`, 128 px
        (8x8 tokens per frame), 16 frames (8 time steps): the `cpu-small` planning preset's predictor."""
        return cls(
            **{
                "embed_dim": 192,
                "predictor_embed_dim": 256,
                "depth": 6,
                "num_heads": 4,
                "img_size": 128,
                "num_frames": 16,
                **overrides,
            }
        )
