"""The encoder's typed configuration, with named presets (EncoderConfig), and what every network config
shares (versions, the V-JEPA 2.1 levels, the base class). The predictors' are in `models/predictor_config.py`;
`models/config.py` gathers both.

Shapes of every parameter depend only on the widths, depths and patch sizes; `img_size` and `num_frames`
matter for the predictors (the token grid their RoPE positions are read on, and the number of time steps
the action-conditioned predictor accepts). The encoder reads its token grid from the input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from vjepa_fast import config as _config

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

    @property
    def is_v21(self) -> bool:
        return getattr(self, "version", VJEPA2) == VJEPA2_1

    @property
    def rope_style(self) -> str:
        """"tiled" (V-JEPA 2's RoPE) or "interleaved" (2.1's)."""
        return "interleaved" if self.is_v21 else "tiled"

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
        """Inverse of `to_dict` (`vjepa_fast.config.from_dict`: an unknown key or a wrong type is an error naming
        the key)."""
        data = dict(data)
        if isinstance(data.get("img_size"), list):
            data["img_size"] = tuple(data["img_size"])
        return _config.from_dict(cls, data)

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
