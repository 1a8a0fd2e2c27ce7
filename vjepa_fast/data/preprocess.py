"""Frame preprocessing of robot episodes, recorded in latent-cache headers: `FramePreprocess` (crop, squash,
normalise: DROID's) and `PlannerPreprocess` (the planner's run-time preprocessing)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vjepa_fast.data.transforms import IMAGENET_MEAN, IMAGENET_STD, preprocess_frames

__all__ = ["FramePreprocess", "PlannerPreprocess"]


@dataclass(frozen=True)
class FramePreprocess:
    """Frames uint8 [F, H, W, 3] -> float32 [F, 3, size, size]: optional center crop to `crop_aspect` (W/H),
    bilinear (antialiased) resize to size x size (squashed, aspect not kept), /255, ImageNet normalisation.

    `droid()` is the V-JEPA 2-AC DROID preprocessing (SPEC section 8): 1280x720 -> 972x720 crop -> 256x256.
    Recorded in latent-cache headers, so a cache made with other preprocessing is refused.
    """

    size: int = 256
    crop_aspect: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"FramePreprocess.size must be a positive int, got {self.size!r}")
        if self.crop_aspect is not None and not (self.crop_aspect > 0 and math.isfinite(self.crop_aspect)):
            raise ValueError(f"FramePreprocess.crop_aspect must be None or > 0, got {self.crop_aspect!r}")

    @classmethod
    def droid(cls, size: int = 256) -> FramePreprocess:
        return cls(size=size, crop_aspect=1.35)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FramePreprocess:
        return cls(size=int(d["size"]), crop_aspect=d.get("crop_aspect"), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        if self.crop_aspect is not None:
            if w / h > self.crop_aspect:  # too wide: crop width (DROID 1280x720 -> 972x720)
                new_w = int(round(h * self.crop_aspect))
                left = (w - new_w) // 2
                x = x[..., :, left : left + new_w]
            elif w / h < self.crop_aspect:  # too tall: crop height
                new_h = int(round(w / self.crop_aspect))
                top = (h - new_h) // 2
                x = x[..., top : top + new_h, :]
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class PlannerPreprocess(FramePreprocess):
    """The run-time (planner) preprocessing, `transforms.preprocess_image`: short side -> size*256/224, centre
    crop, ImageNet normalisation. A FramePreprocess so a latent cache records it (and refuses a mismatch):
    a predictor trained on latents made this way sees at training time what the planner feeds it."""

    crop_aspect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": "eval_resize_center_crop"}

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        return preprocess_frames(frames, self.size).permute(1, 0, 2, 3).contiguous()  # [F, 3, s, s]
