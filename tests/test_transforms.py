"""Evaluation preprocessing: short-side resize to int(crop*256/224), center crop, ImageNet normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vjepa_fast.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_resize_size,
    preprocess_frames,
    preprocess_image,
    preprocess_video,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def test_resize_size():
    assert eval_resize_size(256) == 292
    assert eval_resize_size(384) == 438
    assert eval_resize_size(224) == 256


def _pil_reference(frame: np.ndarray, crop: int) -> torch.Tensor:
    """PIL bilinear short-side resize + center crop + normalise, written independently."""
    img = Image.fromarray(frame)
    w, h = img.size
    short = eval_resize_size(crop)
    size = (int(short * w / h), short) if h <= w else (short, int(short * h / w))
    img = img.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - crop) / 2)), int(round((size[1] - crop) / 2))
    img = img.crop((left, top, left + crop, top + crop))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
    return (x - MEAN) / STD


def _smooth_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    # Smooth content: PIL rounds to uint8 after resizing, so compare where rounding is the only gap.
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize("h,w,crop", [(240, 320, 128), (320, 240, 64), (100, 100, 64)])
def test_frame_matches_pil(h, w, crop):
    frame = _smooth_frame(h, w)
    ours = preprocess_frames(frame, crop)
    assert ours.shape == (3, crop, crop) and ours.dtype == torch.float32
    # One uint8 step of PIL's rounding is 1/255/std <= 0.018 after normalisation.
    torch.testing.assert_close(ours, _pil_reference(frame, crop), atol=0.02, rtol=0)


def test_video_layouts_and_dtypes():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, 4, 72, 96), generator=g, dtype=torch.uint8)
    out = preprocess_video(video, 64)
    assert out.shape == (3, 4, 64, 64)
    batched = preprocess_video(torch.stack([video, video]), 64)
    assert batched.shape == (2, 3, 4, 64, 64)
    torch.testing.assert_close(batched[1], out)
    torch.testing.assert_close(preprocess_video(video.float() / 255, 64), out)
    # Frame t of the clip equals that frame alone, through the camera path (THWC numpy).
    frames = video.permute(1, 2, 3, 0).numpy()
    torch.testing.assert_close(preprocess_frames(frames, 64), out)
    torch.testing.assert_close(preprocess_frames(frames[2], 64), out[:, 2])


def test_constant_image_normalises_to_imagenet_stats(tmp_path):
    rgb = (10, 128, 250)
    path = tmp_path / "img.png"
    Image.new("RGB", (50, 40), rgb).save(path)
    out = preprocess_image(path, 32)
    expected = (torch.tensor(rgb).float().view(3, 1, 1) / 255 - MEAN) / STD
    torch.testing.assert_close(out, expected.expand(3, 32, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(preprocess_image(Image.open(path), 32), out)
    torch.testing.assert_close(preprocess_image(np.asarray(Image.open(path)), 32), out)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\[C, T, H, W\]"):
        preprocess_video(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess_video(torch.full((3, 2, 8, 8), 200.0))
    with pytest.raises(TypeError, match="uint8"):
        preprocess_video(torch.zeros(3, 2, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="RGB"):
        preprocess_frames(np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        preprocess_image(tmp_path / "missing.png")
    with pytest.raises(TypeError, match="PIL image"):
        preprocess_image(42)
