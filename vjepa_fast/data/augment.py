"""Clip augmentation for pretraining (SPEC section 4), in torch, one set of random parameters per clip.

Train: RandomResizedCrop (scale [0.3, 1], aspect w/h [0.75, 1.35], log-uniform aspect as in torchvision) ->
bilinear resize to crop_size x crop_size -> horizontal flip with p = 0.5 -> /255 -> ImageNet mean/std.
Every frame of a clip gets the same crop and the same flip: the predictor relies on tokens at the same grid
position showing the same place over time.
Eval (for ``train=False`` datasets): resize the short side to int(crop * 256 / 224), center crop, normalise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vjepa_fast.constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported)
from vjepa_fast.data.transforms import eval_resize_size

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "ClipAugment",
    "EvalClipTransform",
    "sample_resized_crop",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Random-resized-crop + flip augmentation of a clip.

    Attributes:
        crop_size: output side in pixels.
        scale: (min, max) fraction of the frame area the crop covers, 0 < min <= max <= 1.
        ratio: (min, max) crop aspect ratio width / height, 0 < min <= max.
        hflip_prob: probability of a horizontal flip of the whole clip.
        mean, std: per-channel normalisation applied to values in [0, 1].
        antialias: antialiased bilinear resize. True by default because crops from 1080p sources are shrunk
            4x or more and aliasing would then add high-frequency noise to the targets; the reference's
            interpolate call does not antialias, so set False to match it more closely.
    """

    crop_size: int = 256
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (0.75, 1.35)
    hflip_prob: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    antialias: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.crop_size, bool) or not isinstance(self.crop_size, int) or self.crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got {self.crop_size!r}")
        lo, hi = self.scale
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale!r}")
        lo, hi = self.ratio
        if not (0.0 < lo <= hi) or not math.isfinite(hi):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio!r}")
        if not (0.0 <= self.hflip_prob <= 1.0):
            raise ValueError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean!r}, {self.std!r}")

    @classmethod
    def vjepa2(cls, crop_size: int = 256) -> AugmentConfig:
        """SPEC pretraining augmentation: scale [0.3, 1], aspect [0.75, 1.35], flip p 0.5, ImageNet stats."""
        return cls(crop_size=crop_size)


def sample_resized_crop(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Random crop box (top, left, h, w) with torchvision RandomResizedCrop semantics.

    Up to 10 tries of area ~ U(scale) * H * W and log(w/h) ~ U(log ratio); when none fits, the largest
    center crop whose aspect is clamped into ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target_area = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, max(1, int(round(width / ratio[0])))
    elif in_ratio > ratio[1]:
        h, w = height, max(1, int(round(height * ratio[1])))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got {tuple(frames.shape)}")


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """x: float [F, 3, H, W] in [0, 255] -> [3, F, H, W] normalised."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1) * 255.0
    return ((x - m) / s).permute(1, 0, 2, 3).contiguous()


class ClipAugment:
    """Training augmentation: frames uint8 [F, H, W, 3] -> float32 [3, F, crop, crop], normalised.

    ``aug(frames, generator)`` draws the crop box and the flip once for the whole clip from ``generator``.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = AugmentConfig() if config is None else config

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_frames(frames)
        cfg = self.config
        _, height, width, _ = frames.shape
        top, left, h, w = sample_resized_crop(height, width, cfg.scale, cfg.ratio, generator)
        flip = bool(torch.rand((), generator=generator) < cfg.hflip_prob)
        # Crop the uint8 frames first: the float copy and the resize then touch only the crop.
        x = frames[:, top : top + h, left : left + w, :].permute(0, 3, 1, 2).float()  # [F, 3, h, w]
        x = F.interpolate(
            x, size=(cfg.crop_size, cfg.crop_size), mode="bilinear", align_corners=False, antialias=cfg.antialias
        )
        if flip:
            x = x.flip(-1)
        return _normalise(x, cfg.mean, cfg.std)


class EvalClipTransform:
    """Deterministic eval preprocessing: frames uint8 [F, H, W, 3] -> float32 [3, F, crop, crop].

    Short side resized (bilinear, antialiased) to int(crop_size * 256 / 224), then a center crop, /255 and
    normalisation (SPEC section 4).
    """

    def __init__(
        self,
        crop_size: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
        self.crop_size = crop_size
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_frames(frames)
        _, height, width, _ = frames.shape
        short = eval_resize_size(self.crop_size)
        if height <= width:
            size = (short, max(short, int(round(width * short / height))))
        else:
            size = (max(short, int(round(height * short / width))), short)
        x = frames.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top = (size[0] - self.crop_size) // 2
        left = (size[1] - self.crop_size) // 2
        x = x[:, :, top : top + self.crop_size, left : left + self.crop_size]
        return _normalise(x, self.mean, self.std)
