"""Labelled videos for attentive probes: CSV reading, multi-clip x multi-view frame sampling (decoded with the
package's PyAV path, `vjepa_fast.data.decode.decode_frames`), and the frozen encoder's tokens per view.

CSV schemas (a header row is required; extra columns are ignored; relative paths are taken from the CSV's folder):
- classification: `path,label`. label: an int class index, or one of `class_names`.
- anticipation: `path,action_start_s,label`: label is the action that starts at `action_start_s` (seconds from
  the start of the video); the observed clip is `frames_per_clip` frames sampled at `fps` whose last frame is
  at `action_start_s - anticipation_s` (frames before the video start repeat frame 0).

Sampling (what Meta's frozen evals do, simplified to the parts that matter for the numbers):
- temporal: `num_segments` clips of `frames_per_clip` frames `frame_step` apart, spread evenly over the video
  (one: centred); training draws each start uniformly within its share of the video.
- spatial: the short side is resized to int(crop * 256 / 224) (the eval resize), then `num_views` crops of
  crop x crop spread evenly along the long side (one: the centre crop, V-JEPA 2's 3 views: left/centre/right).
- a view's tokens are the concatenation over its temporal clips ([S * N, D], "attend across segments"); at
  test time the probe's softmax is averaged over the views (`vjepa_fast.probes.model.multiview_probs`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vjepa_fast.constants import IMAGENET_MEAN, IMAGENET_STD
from vjepa_fast.data.transforms import eval_resize_size

__all__ = ["ProbeSample", "read_probe_csv", "video_info", "clip_frame_indices", "anticipation_frame_indices",
           "spatial_views", "ProbeVideoDataset", "encode_views"]


@dataclass(frozen=True)
class ProbeSample:
    path: str
    label: int
    action_start_s: float | None = None  # anticipation only


def read_probe_csv(path: str | os.PathLike, task: str = "classification",
                   class_names: Sequence[str] = ()) -> list[ProbeSample]:
    """The rows of a probe CSV (schemas in the module docstring). Raises ValueError naming the file, the row and
    the column for a missing column, a bad number or an unknown class name."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"probe CSV {p} does not exist")
    need = ["path", "label"] + (["action_start_s"] if task == "anticipation" else [])
    names = {n: i for i, n in enumerate(class_names)}
    out = []
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{p}: missing column(s) {missing}; a {task} CSV needs a header with {need} "
                             f"(found {header})")
        for row_no, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            raw = row["label"]
            if raw in names:
                label = names[raw]
            else:
                try:
                    label = int(raw)
                except ValueError:
                    hint = f" (not among class_names {list(class_names)[:5]}...)" if class_names else \
                        " (set data.class_names to use names)"
                    raise ValueError(f"{p} row {row_no}: label {raw!r} is not an int class index{hint}") from None
            if label < 0:
                raise ValueError(f"{p} row {row_no}: label {label} must be >= 0")
            start = None
            if task == "anticipation":
                try:
                    start = float(row["action_start_s"])
                except ValueError:
                    raise ValueError(f"{p} row {row_no}: action_start_s {row['action_start_s']!r} is not a number "
                                     "(seconds)") from None
            vp = Path(os.path.expanduser(row["path"]))
            out.append(ProbeSample(str(vp if vp.is_absolute() else p.parent / vp), label, start))
    if not out:
        raise ValueError(f"{p}: no rows")
    return out


def video_info(path: str) -> tuple[int, float]:
    """(number of frames, frames per second) of a video file, from its header (frames decoded if unknown)."""
    from vjepa_fast.data.decode import count_frames, open_video

    container = open_video(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(Fraction(rate)) if rate else 30.0
    finally:
        container.close()
    return count_frames(path), fps


def clip_frame_indices(num_frames: int, frames_per_clip: int, frame_step: int, num_segments: int,
                       generator: torch.Generator | None = None) -> list[list[int]]:
    """Frame indices [S][F] of `num_segments` clips: evenly spread (generator None) or each start uniform in
    its share of the video (training). Indices past the end repeat the last frame."""
    span = (frames_per_clip - 1) * frame_step + 1
    room = max(num_frames - span, 0)
    clips = []
    for k in range(num_segments):
        if generator is None:
            start = room // 2 if num_segments == 1 else round(k * room / (num_segments - 1))
        else:
            lo, hi = k * room // num_segments, (k + 1) * room // num_segments
            start = lo + int(torch.randint(0, hi - lo + 1, (), generator=generator))
        clips.append([min(start + i * frame_step, num_frames - 1) for i in range(frames_per_clip)])
    return clips


def anticipation_frame_indices(video_fps: float, num_frames: int, action_start_s: float, anticipation_s: float,
                               frames_per_clip: int, fps: float) -> list[int]:
    """Indices of the observed clip: frames_per_clip frames at `fps`, the last at action_start_s - anticipation_s
    (frame floor(t * video_fps)), clipped to the video."""
    end = action_start_s - anticipation_s
    times = [end - (frames_per_clip - 1 - i) / fps for i in range(frames_per_clip)]
    return [min(max(int(math.floor(t * video_fps + 1e-6)), 0), num_frames - 1) for t in times]


def spatial_views(frames: torch.Tensor, crop: int, num_views: int, view: int | None = None) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [V, T, crop, crop, 3]: short side resized to int(crop * 256 / 224)
    (bilinear, antialiased), then `num_views` crops spread along the long side (or only view `view`)."""
    t, h, w, _ = frames.shape
    short = eval_resize_size(crop)
    size = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False,
                      antialias=True).round_().clamp_(0, 255).to(torch.uint8)
    along_w = size[1] >= size[0]
    room = (size[1] if along_w else size[0]) - crop
    other = ((size[0] if along_w else size[1]) - crop) // 2
    views = []
    for v in ([view] if view is not None else range(num_views)):
        off = room // 2 if num_views == 1 else round(v * room / (num_views - 1))
        top, left = (other, off) if along_w else (off, other)
        views.append(x[:, :, top : top + crop, left : left + crop].permute(0, 2, 3, 1))
    return torch.stack(views)


class ProbeVideoDataset(Dataset):
    """Samples of a probe CSV as uint8 frames [V, S, F, crop, crop, 3] (+ label, index).

    train=False: every view, evenly spread clips (deterministic); train=True: one random view and jittered clip
    starts, from a generator seeded by (seed, epoch, index), so runs repeat for any number of workers."""

    def __init__(self, samples: Sequence[ProbeSample], *, task: str, frames_per_clip: int, frame_step: int,
                 fps: float, anticipation_s: float, num_segments: int, num_views: int, crop_size: int,
                 train: bool = False, seed: int = 0) -> None:
        self.samples = list(samples)
        self.task, self.frames_per_clip, self.frame_step = task, frames_per_clip, frame_step
        self.fps, self.anticipation_s = fps, anticipation_s
        self.num_segments, self.num_views, self.crop = num_segments, num_views, crop_size
        self.train, self.seed, self.epoch = train, seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        from vjepa_fast.data.decode import ClipSkipped, decode_frames

        s = self.samples[i]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i) if self.train else None
        try:
            n, vfps = video_info(s.path)
            if n < 1:
                raise ValueError("no frames")
            if self.task == "anticipation":
                clips = [anticipation_frame_indices(vfps, n, s.action_start_s, self.anticipation_s,
                                                    self.frames_per_clip, self.fps)]
            else:
                clips = clip_frame_indices(n, self.frames_per_clip, self.frame_step, self.num_segments, g)
            flat = [j for c in clips for j in c]
            frames = decode_frames(s.path, flat)  # [S*F, H, W, 3]
        except (ClipSkipped, ValueError) as exc:
            raise ValueError(f"probe video {s.path} (row {i + 2} of its CSV) cannot be read: {exc}") from exc
        view = int(torch.randint(0, self.num_views, (), generator=g)) if self.train else None
        v = spatial_views(frames, self.crop, self.num_views, view)  # [V, S*F, c, c, 3]
        v = v.view(v.shape[0], len(clips), self.frames_per_clip, *v.shape[2:])
        return {"frames": v, "label": s.label, "index": i}


@torch.no_grad()
def encode_views(encoder: nn.Module, frames: torch.Tensor, *, device: torch.device,
                 amp_dtype: torch.dtype | None = None, chunk: int = 8) -> torch.Tensor:
    """Frozen-encoder tokens of uint8 frames [B, V, S, F, c, c, 3] -> float [B, V, S * N, D]: each clip encoded
    on its own (normalised with ImageNet statistics), the S clips of a view concatenated along the tokens."""
    b, v, s, f, h, w, _ = frames.shape
    x = frames.to(device, non_blocking=True).reshape(b * v * s, f, h, w, 3)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1, 1)
    outs = []
    for i in range(0, x.shape[0], chunk):
        clip = (x[i : i + chunk].permute(0, 4, 1, 2, 3).float() / 255 - mean) / std  # [c, 3, F, H, W]
        if amp_dtype is not None:
            with torch.autocast(device.type, dtype=amp_dtype):
                outs.append(encoder(clip).float())
        else:
            outs.append(encoder(clip).float())
    tokens = torch.cat(outs)  # [B*V*S, N, D]
    n, d = tokens.shape[1:]
    return tokens.view(b, v, s * n, d)
