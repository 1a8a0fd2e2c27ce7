"""Data: evaluation preprocessing (this module) and, elsewhere, the training readers."""

from vjepa_fast.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_resize_size,
    preprocess_frames,
    preprocess_image,
    preprocess_video,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "eval_resize_size",
    "preprocess_frames",
    "preprocess_image",
    "preprocess_video",
]
