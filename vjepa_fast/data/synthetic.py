"""Synthetic videos with known factors, written as real video files (for demos, tests and sanity runs).

Each clip shows a bright square moving in a straight line over a textured background. The factors a probe
can recover are stored next to the files (`labels.json`): the motion direction (one of 4), the start
position and the square's colour.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vjepa_fast.constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported)

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx): right, left, down, up


@dataclass(frozen=True)
class SyntheticClip:
    path: str
    direction: int  # index into DIRECTIONS
    start_yx: tuple[int, int]
    color: tuple[int, int, int]
    speed: int  # px per frame


def render_moving_square(
    num_frames: int, size: int, direction: int, start_yx: tuple[int, int], color: tuple[int, int, int],
    speed: int, square: int, background: np.ndarray,
) -> np.ndarray:
    """Frames uint8 [F, size, size, 3] of a square bouncing off the borders along one axis."""
    dy, dx = DIRECTIONS[direction]
    frames = np.repeat(background[None], num_frames, axis=0).copy()
    span = size - square
    for i in range(num_frames):
        pos = []
        for p0, d in zip(start_yx, (dy, dx)):
            p = p0 + d * speed * i
            p = p % (2 * span) if span > 0 else 0
            pos.append(2 * span - p if p > span else p)  # reflect at the borders
        y, x = pos
        frames[i, y : y + square, x : x + square] = color
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: int = 15) -> None:
    """Encode frames uint8 [F, H, W, 3] as an MPEG-4 file with PyAV (high bit rate: the content survives)."""
    import av

    f, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(f):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_moving_square_videos(
    folder: str | Path, num_videos: int, *, num_frames: int = 32, size: int = 64, fps: int = 15, seed: int = 0,
) -> list[SyntheticClip]:
    """Write `num_videos` mp4 files and `labels.json` into `folder`; returns the clips' factors."""
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if size < 16 or size % 16:
        raise ValueError(f"size must be a multiple of 16 (the patch size), got {size}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    square = size // 4
    clips = []
    for i in range(num_videos):
        # Low-frequency texture so the background is not trivially flat but the square dominates.
        yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        phase = rng.uniform(0, 2 * math.pi, 3)
        bg = np.stack([60 + 30 * np.sin(xx / 7 + phase[c]) * np.cos(yy / 9 + phase[c]) for c in range(3)], -1)
        direction = int(rng.integers(4))
        start = (int(rng.integers(0, size - square)), int(rng.integers(0, size - square)))
        color = tuple(int(c) for c in rng.integers(150, 256, 3))
        speed = int(rng.integers(2, 5))
        frames = render_moving_square(num_frames, size, direction, start, color, speed, square, bg.astype(np.uint8))
        path = folder / f"clip_{i:04d}.mp4"
        write_video(path, frames, fps)
        clips.append(SyntheticClip(str(path), direction, start, color, speed))
    (folder / "labels.json").write_text(json.dumps([asdict(c) for c in clips], indent=1))
    return clips


def render_probe_set(num_clips: int, *, size: int = 64, num_frames: int = 4, frame_step: int = 4, seed: int = 0):
    """In-memory clips with labels, for linear probes (no codec in the way).

    Returns (clips float32 [N, 3, F, size, size] ImageNet-normalised, direction int64 [N] (4 classes),
    quadrant int64 [N]: which quadrant of the frame the square starts in (4 classes)).
    Frames are sampled every `frame_step` rendered frames, like the 4 fps sampling of 15 fps video.
    """
    import torch

    rng = np.random.default_rng(seed)
    square = size // 4
    span = size - square
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    clips, direction, quadrant = [], [], []
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for _ in range(num_clips):
        phase = rng.uniform(0, 2 * math.pi, 3)
        bg = np.stack([60 + 30 * np.sin(xx / 7 + phase[c]) * np.cos(yy / 9 + phase[c]) for c in range(3)], -1)
        d = int(rng.integers(4))
        start = (int(rng.integers(0, span)), int(rng.integers(0, span)))
        color = tuple(int(c) for c in rng.integers(150, 256, 3))
        frames = render_moving_square(num_frames * frame_step, size, d, start, color, int(rng.integers(2, 5)),
                                      square, bg.astype(np.uint8))[::frame_step]
        x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
        clips.append((x - mean) / std)
        direction.append(d)
        quadrant.append(2 * int(start[0] >= span // 2) + int(start[1] >= span // 2))
    return torch.stack(clips), torch.tensor(direction), torch.tensor(quadrant)
