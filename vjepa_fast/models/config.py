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
# ViT-G's (V-JEPA 2.1, width 1664): 64/13 -> hidden 8192.
GIGANTIC_MLP_RATIO = 64 / 13

VJEPA2 = "vjepa2"
VJEPA2_1 = "vjepa2_1"
VERSIONS = (VJEPA2, VJEPA2_1)

# V-JEPA 2.1's encoder taps (deep supervision), fixed by depth in the reference; no other depth builds.
V21_ENCODER_TAPS: dict[int, tuple[int, ...]] = {
    12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 40: (9, 19, 29, 39), 48: (11, 23, 37, 47)}
# V-JEPA 2.1's predictor depths (its level table has these only; just the number of levels is used).
V21_PREDICTOR_DEPTHS = (4, 8, 12, 20, 24, 40)
V21_LEVELS = 4


def _check_version(name: str, version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"{name}.version must be one of {VERSIONS}, got {version!r}")


def rope_pretrained_grid(patch_size: int) -> int:
    """G of V-JEPA 2.1's `interpolate_rope` (positions rescaled to 0..G): 256 / patch - 1 for patch 16,
    252 / 14 - 1 for patch 14, the only two patch sizes the reference defines it for."""
    if patch_size == 16:
        return 256 // 16 - 1
    if patch_size == 14:
        return 252 // 14 - 1
    raise ValueError(f"interpolate_rope is defined for patch_size 14 or 16 only (the reference's pretraining "
                     f"grids), got {patch_size}")


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

    # Fields added for V-JEPA 2.1; a V-JEPA 2 config leaves them out of `to_dict` while they hold their defaults,
    # so the dicts (the files we saved, the latent caches' encoder fingerprints) stay what they were before 2.1.
    _V21_FIELDS = ("version", "interpolate_rope", "modality_embedding", "image_patch_embed", "n_output_distillation",
                   "num_levels", "out_embed_dim", "context_head")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); a V-JEPA 2 config without its 2.1-only defaults."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        if out.get("version", VJEPA2) == VJEPA2:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
            for name in self._V21_FIELDS:
                if name in out and out[name] == defaults.get(name, object()):
                    del out[name]
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
    `cpu_small` (the CPU planning preset's encoder). V-JEPA 2.1 (`version="vjepa2_1"`): `vjepa2_1_vit_base_384`,
    `vjepa2_1_vit_large_384`, `vjepa2_1_vit_giant_384`, `vjepa2_1_vit_gigantic_384` (the released B/L/g/G)
    and `vjepa2_1_tiny` (the 2.1 fixtures' size).

    V-JEPA 2.1 differs in: four deep-supervision taps (block indices fixed by depth, `taps`), each with its
    own LayerNorm (`norms_block`, no final `norm`); the standard interleaved RoPE, with rows and columns
    rescaled to the 256 px pretraining grid when `interpolate_rope` (None: True for 2.1, the hub's setting);
    a tubelet-1 patch embedding for single images (`image_patch_embed`) and learned image/video embeddings
    added to every token (`modality_embedding`); `n_output_distillation` taps (4, or 1: the last) in the
    hierarchical output. Those four fields are V-JEPA 2.1 only.
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
    version: str = VJEPA2
    interpolate_rope: bool | None = None  # None: the version's own (V-JEPA 2 False, 2.1 True)
    modality_embedding: bool = True  # V-JEPA 2.1 only
    image_patch_embed: bool = True  # V-JEPA 2.1 only (the reference's img_temporal_dim_size=1)
    n_output_distillation: int = V21_LEVELS  # V-JEPA 2.1 only: taps in the hierarchical output, 4 or 1

    def __post_init__(self) -> None:
        self._check_common()
        for field in ("embed_dim", "depth", "in_chans"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{field} must be a positive int, got {value!r}")
        self._check_heads("EncoderConfig", "embed_dim", self.embed_dim, self.num_heads)
        _check_version("EncoderConfig", self.version)
        if self.version == VJEPA2:
            if self.interpolate_rope:
                raise ValueError("EncoderConfig.interpolate_rope is a V-JEPA 2.1 feature (version='vjepa2_1')")
            return
        if self.depth not in V21_ENCODER_TAPS:
            raise ValueError(f"EncoderConfig.depth must be one of {sorted(V21_ENCODER_TAPS)} for V-JEPA 2.1 (its "
                             f"taps are fixed by depth), got {self.depth}")
        if self.n_output_distillation not in (1, V21_LEVELS):
            raise ValueError(f"EncoderConfig.n_output_distillation must be 1 or 4, got {self.n_output_distillation!r}")
        if self.rope_interp:
            rope_pretrained_grid(self.patch_size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def is_v21(self) -> bool:
        return self.version == VJEPA2_1

    @property
    def rope_style(self) -> str:
        """"tiled" (V-JEPA 2's RoPE) or "interleaved" (2.1's)."""
        return "interleaved" if self.is_v21 else "tiled"

    @property
    def rope_interp(self) -> int:
        """G > 0 when h/w RoPE positions are rescaled to a 0..G grid (2.1's interpolate_rope), else 0."""
        on = self.is_v21 if self.interpolate_rope is None else self.interpolate_rope
        return rope_pretrained_grid(self.patch_size) if on else 0

    @property
    def taps(self) -> tuple[int, ...]:
        """V-JEPA 2.1: the blocks after which `norms_block[k]` is applied (4 of them); V-JEPA 2: ()."""
        return V21_ENCODER_TAPS[self.depth] if self.is_v21 else ()

    @property
    def output_taps(self) -> tuple[int, ...]:
        """The taps concatenated by `VideoEncoder(..., hierarchical=True)`: the last n_output_distillation."""
        return self.taps[-self.n_output_distillation:] if self.is_v21 else ()

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

    # ------------------------------------------------------------------------------------ V-JEPA 2.1
    @classmethod
    def _v21(cls, **fields: Any) -> EncoderConfig:
        return cls(**{"img_size": 384, "num_frames": 64, "version": VJEPA2_1, "interpolate_rope": True, **fields})

    @classmethod
    def vjepa2_1_vit_base_384(cls, **overrides: Any) -> EncoderConfig:
        """V-JEPA 2.1 ViT-B/16 (distilled from ViT-G): width 768, depth 12, 12 heads, 384 px; 86.8M parameters."""
        return cls._v21(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **overrides})

    @classmethod
    def vjepa2_1_vit_large_384(cls, **overrides: Any) -> EncoderConfig:
        """V-JEPA 2.1 ViT-L/16 (distilled from ViT-G): width 1024, depth 24, 16 heads, 384 px; 304.7M parameters."""
        return cls._v21(**{"embed_dim": 1024, "depth": 24, "num_heads": 16, **overrides})

    @classmethod
    def vjepa2_1_vit_giant_384(cls, **overrides: Any) -> EncoderConfig:
        """V-JEPA 2.1 ViT-g/16: width 1408, depth 40, 22 heads, MLP 6144, 384 px; 1013.3M parameters."""
        return cls._v21(**{"embed_dim": 1408, "depth": 40, "num_heads": 22, "mlp_ratio": GIANT_MLP_RATIO,
                           **overrides})

    @classmethod
    def vjepa2_1_vit_gigantic_384(cls, **overrides: Any) -> EncoderConfig:
        """V-JEPA 2.1 ViT-G/16: width 1664, depth 48, 26 heads, MLP 8192, 384 px; 1845.2M parameters."""
        return cls._v21(**{"embed_dim": 1664, "depth": 48, "num_heads": 26, "mlp_ratio": GIGANTIC_MLP_RATIO,
                           **overrides})

    @classmethod
    def vjepa2_1_tiny(cls, **overrides: Any) -> EncoderConfig:
        """The V-JEPA 2.1 fixtures' encoder: width 48, depth 12 (the smallest with taps), 3 heads, 64 px,
        4 frames."""
        return cls._v21(**{"embed_dim": 48, "depth": 12, "num_heads": 3, "img_size": 64, "num_frames": 4,
                           **overrides})


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
    def is_v21(self) -> bool:
        return self.version == VJEPA2_1

    @property
    def rope_style(self) -> str:
        return "interleaved" if self.is_v21 else "tiled"

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
