"""Typed configurations of the V-JEPA 2 networks, with named presets.

Shapes of every parameter depend only on the widths, depths and patch sizes; `img_size` and `num_frames`
matter for the predictors (the token grid their RoPE positions are read on, and the number of time steps
the action-conditioned predictor accepts). The encoder reads its token grid from the input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

_C = TypeVar("_C", bound="_ConfigBase")

# ViT-g's MLP ratio in the reference (48/11 -> hidden 6144 for width 1408).
GIANT_MLP_RATIO = 48 / 11


def _as_hw(img_size: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(img_size, int):
        return (img_size, img_size)
    if isinstance(img_size, (tuple, list)) and len(img_size) == 2 and all(isinstance(s, int) for s in img_size):
        return (int(img_size[0]), int(img_size[1]))
    raise TypeError(f"{name}.img_size must be an int or a pair of ints (H, W), got {img_size!r}")


class _ConfigBase:
    """Shared checks and (de)serialisation of the config dataclasses."""

    # Declared for type checkers; the dataclass subclasses define them as fields.
    img_size: int | tuple[int, int]
    patch_size: int
    tubelet_size: int
    num_frames: int
    attn_impl: str

    def _check_common(self) -> None:
        name = type(self).__name__
        for field in ("patch_size", "tubelet_size", "num_frames"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
        h, w = _as_hw(self.img_size, name)
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"{name}.img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if not isinstance(self.attn_impl, str):
            raise TypeError(f"{name}.attn_impl must be a str, got {type(self.attn_impl).__name__}")

    @staticmethod
    def _check_heads(name: str, width_field: str, width: int, heads: int) -> None:
        if not isinstance(heads, int) or heads < 1:
            raise ValueError(f"{name}.num_heads must be a positive int, got {heads!r}")
        if width % heads:
            raise ValueError(f"{name}.{width_field} ({width}) is not divisible by num_heads ({heads})")
        if (width // heads) % 2:
            raise ValueError(f"{name}: head dim {width // heads} must be even for RoPE")

    @property
    def grid_hw(self) -> tuple[int, int]:
        """(Hp, Wp): the token grid of one tubelet at the configured image size."""
        h, w = _as_hw(self.img_size, type(self).__name__)
        return (h // self.patch_size, w // self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        if isinstance(out.get("img_size"), tuple):
            out["img_size"] = list(out["img_size"])
        return out

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        data = dict(data)
        if isinstance(data.get("img_size"), list):
            data["img_size"] = tuple(data["img_size"])
        return cls(**data)

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with some fields changed (e.g. `cfg.replace(attn_impl="triton")`)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class EncoderConfig(_ConfigBase):
    """Video ViT encoder (`VideoEncoder`).

    Presets: `vit_large` / `vit_huge` / `vit_giant` (the released V-JEPA 2 encoders, 256 px, 64 frames),
    `vit_giant_384`, and small ones for tests and CPU demos: `tiny` (the reference fixtures' size), `small` and
    `cpu_small` (the CPU planning preset's encoder).
    """

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    img_size: int | tuple[int, int] = 256
    patch_size: int = 16
    num_frames: int = 64
    tubelet_size: int = 2
    attn_impl: str = "sdpa"
    in_chans: int = 3

    def __post_init__(self) -> None:
        self._check_common()
        for field in ("embed_dim", "depth", "in_chans"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{field} must be a positive int, got {value!r}")
        self._check_heads("EncoderConfig", "embed_dim", self.embed_dim, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @classmethod
    def vit_large(cls, **overrides: Any) -> EncoderConfig:
        """ViT-L/16: width 1024, depth 24, 16 heads; 303.9M parameters."""
        return cls(**{"embed_dim": 1024, "depth": 24, "num_heads": 16, **overrides})

    @classmethod
    def vit_huge(cls, **overrides: Any) -> EncoderConfig:
        """ViT-H/16: width 1280, depth 32, 16 heads; 631.6M parameters."""
        return cls(**{"embed_dim": 1280, "depth": 32, "num_heads": 16, **overrides})

    @classmethod
    def vit_giant(cls, **overrides: Any) -> EncoderConfig:
        """ViT-g/16: width 1408, depth 40, 22 heads, MLP 6144; 1012.2M parameters."""
        return cls(
            **{"embed_dim": 1408, "depth": 40, "num_heads": 22, "mlp_ratio": GIANT_MLP_RATIO, **overrides}
        )

    @classmethod
    def vit_giant_384(cls, **overrides: Any) -> EncoderConfig:
        """ViT-g/16 of the 384 px cooldown checkpoint (vitg-384.pt); same shapes as `vit_giant`."""
        return cls.vit_giant(**{"img_size": 384, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> EncoderConfig:
        """Width 96, depth 2, 3 heads (head dim 32), 64 px, 4 frames: the reference fixtures' encoder."""
        return cls(**{"embed_dim": 96, "depth": 2, "num_heads": 3, "img_size": 64, "num_frames": 4, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> EncoderConfig:
        """Width 384, depth 12, 6 heads (head dim 64), 128 px, 16 frames: CPU demos (21.5M parameters)."""
        return cls(**{"embed_dim": 384, "depth": 12, "num_heads": 6, "img_size": 128, "num_frames": 16, **overrides})

    @classmethod
    def cpu_small(cls, **overrides: Any) -> EncoderConfig:
        """Width 192, depth 4, 3 heads (head dim 64), 128 px -> 8x8 tokens per frame: the `cpu-small` planning
        preset's encoder (SPEC section 6 on the CPU)."""
        return cls(**{"embed_dim": 192, "depth": 4, "num_heads": 3, "img_size": 128, "num_frames": 16, **overrides})


@dataclass(frozen=True)
class PredictorConfig(_ConfigBase):
    """Masked-latent predictor (`MaskedPredictor`) of V-JEPA 2 pretraining.

    `embed_dim` is the encoder width it reads and writes; `img_size`/`patch_size`/`tubelet_size` fix the
    token grid on which the token indices (and so the RoPE positions) are read.
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

    def __post_init__(self) -> None:
        self._check_common()
        for field in ("embed_dim", "predictor_embed_dim", "depth", "num_mask_tokens"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PredictorConfig.{field} must be a positive int, got {value!r}")
        self._check_heads("PredictorConfig", "predictor_embed_dim", self.predictor_embed_dim, self.num_heads)

    @property
    def head_dim(self) -> int:
        return self.predictor_embed_dim // self.num_heads

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
