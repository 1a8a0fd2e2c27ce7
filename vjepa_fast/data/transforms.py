"""Evaluation preprocessing of the V-JEPA 2 reference: resize the short side to int(crop * 256 / 224)
(bilinear), center crop to crop x crop, scale to [0, 1], normalise with ImageNet mean/std.

Inputs: video tensors [C, T, H, W] / [B, C, T, H, W] (uint8 0..255, or float already in [0, 1]), images
(PIL images or file paths) and camera frames (numpy HWC / THWC uint8, RGB).

Resizing uses `F.interpolate(mode="bilinear", antialias=True)`, which follows PIL/torchvision's bilinear
filter when shrinking (the reference resizes decoded frames with a bilinear, antialiased resize); values
can differ from a PIL resize by rounding only (PIL rounds to uint8 before normalisation, we do not).
"""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from vjepa_fast.constants import EVAL_RESIZE_RATIO, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported)


def eval_resize_size(crop_size: int) -> int:
    """Short side before the center crop: int(crop * 256 / 224) (256 -> 292, 384 -> 438)."""
    return int(crop_size * EVAL_RESIZE_RATIO)


def _to_unit_float(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(
            f"float {name} must hold pixels in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); "
            "pass uint8 for 0..255 data, and do not normalise twice"
        )
    return x.float()


def _resize_crop_normalise(frames: torch.Tensor, crop_size: int) -> torch.Tensor:
    """frames: [N, C, H, W] float in [0, 1] -> [N, C, crop, crop] normalised."""
    if not isinstance(crop_size, int) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
    _, c, h, w = frames.shape
    if c != 3:
        raise ValueError(f"expected 3 (RGB) channels, got {c}")
    short = eval_resize_size(crop_size)
    # Like torchvision's Resize(int): the short side becomes `short`, the long side keeps the aspect, floored.
    if h <= w:
        new_h, new_w = short, int(short * w / h)
    else:
        new_h, new_w = int(short * h / w), short
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top = int(round((new_h - crop_size) / 2.0))
    left = int(round((new_w - crop_size) / 2.0))
    frames = frames[:, :, top : top + crop_size, left : left + crop_size]
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    return (frames - mean) / std


def preprocess_video(video: torch.Tensor, crop_size: int = 256) -> torch.Tensor:
    """Reference eval transform of a clip.

    video: [C, T, H, W] or [B, C, T, H, W], uint8 0..255 or float in [0, 1].
    Returns float32 [C, T, crop, crop] or [B, C, T, crop, crop].
    """
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"video must be a torch.Tensor, got {type(video).__name__}")
    if video.dim() not in (4, 5):
        raise ValueError(f"video must be [C, T, H, W] or [B, C, T, H, W], got shape {tuple(video.shape)}")
    batched = video.dim() == 5
    v = video if batched else video.unsqueeze(0)
    b, c, t, h, w = v.shape
    frames = _to_unit_float(v, "video").permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    out = _resize_crop_normalise(frames, crop_size)
    out = out.view(b, t, c, crop_size, crop_size).permute(0, 2, 1, 3, 4).contiguous()
    return out if batched else out[0]


def preprocess_frames(frames: Union[np.ndarray, torch.Tensor], crop_size: int = 256) -> torch.Tensor:
    """Camera frames, channels last: [H, W, 3] or [T, H, W, 3] uint8 RGB (numpy or torch).

    Returns [3, crop, crop] for one frame or the clip [3, T, crop, crop] (float32, normalised).
    """
    if isinstance(frames, np.ndarray):
        # Frames from PIL/camera buffers are often read-only; torch wants writable memory (one cheap copy).
        arr = np.ascontiguousarray(frames)
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    else:
        x = frames
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"frames must be a numpy array or torch.Tensor, got {type(frames).__name__}")
    if x.dim() not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"frames must be [H, W, 3] or [T, H, W, 3] (RGB, channels last), got shape {tuple(x.shape)}")
    single = x.dim() == 3
    clip = (x.unsqueeze(0) if single else x).permute(3, 0, 1, 2)  # [3, T, H, W]
    out = preprocess_video(clip, crop_size)
    return out[:, 0] if single else out


def preprocess_image(image: Any, crop_size: int = 256) -> torch.Tensor:
    """A PIL image, an image file path, or an HWC uint8 array -> [3, crop, crop] (float32, normalised).

    The encoder takes [B, 3, crop, crop] directly and repeats it into one 2-frame tubelet.
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        if not os.path.isfile(image):
            raise FileNotFoundError(f"image file not found: {image}")
        with Image.open(image) as im:
            return preprocess_image(im.convert("RGB"), crop_size)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return preprocess_frames(image, crop_size)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a dependency
        raise TypeError("image must be a PIL image, a path or an HWC uint8 array") from exc
    if isinstance(image, Image.Image):
        return preprocess_frames(np.asarray(image.convert("RGB")), crop_size)
    raise TypeError(f"image must be a PIL image, a path or an HWC uint8 array, got {type(image).__name__}")
