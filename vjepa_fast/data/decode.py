"""PyAV decoding of video files, and why a file gave no clip (`ClipSkipped`).

- ``decode_frames(path, indices)`` / ``count_frames(path)``: the frame decoder by index (frame i = the i-th
  decoded frame) that robot episodes and DROID read their MP4s with (``vjepa_fast.data.robot_episode``).
- ``decode_clip(...)``: F frames at a target fps -> uint8 [F, H, W, 3], on the same frame collection loop, with
  a seek to the clip and timestamp indexing.
- ``clip_indices`` / ``pad_with_last``: where a clip lies in a source and how a short one is filled, shared with
  the robot episodes of the clip dataset (``vjepa_fast.data.video.read_episode_clip``).
- ``read_image_clip``: an image as a clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

__all__ = [
    "SKIP_REASONS",
    "ClipSkipped",
    "clip_indices",
    "count_frames",
    "decode_clip",
    "decode_frames",
    "frame_step",
    "open_video",
    "pad_with_last",
    "read_image_clip",
]

# Why a file was skipped. Every sample carries a count for each reason so that default_collate can stack them.
SKIP_REASONS: tuple[str, ...] = ("missing", "empty", "unreadable", "no_frames", "too_short")


class ClipSkipped(Exception):
    """A file gave no usable clip; ``reason`` is one of SKIP_REASONS."""

    def __init__(self, reason: str, path: str, detail: str = "") -> None:
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, path, detail


def frame_step(average_rate: float, fps: float | None) -> int:
    """Frames to advance per sampled frame to get ``fps`` from a stream at ``average_rate``.

    Rounded to the nearest integer (halves up), at least 1: 30 -> 4 fps gives 8 (3.75 fps), 25 -> 4 gives 6
    (4.17 fps). ``fps=None`` keeps every frame.
    """
    if fps is None or not average_rate or average_rate <= 0:
        return 1
    return max(1, int(math.floor(float(average_rate) / float(fps) + 0.5)))


def open_video(path: str) -> Any:
    """An open PyAV container of ``path``. Raises ClipSkipped "missing", "empty" or "unreadable"."""
    import av  # local import: PyAV is only needed by code that decodes video

    if not os.path.exists(path):
        raise ClipSkipped("missing", path)
    if os.path.getsize(path) == 0:
        raise ClipSkipped("empty", path)
    try:
        return av.open(path)
    except Exception as e:  # PyAV raises many FFmpeg error types; all mean the same thing here
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e


def _collect_frames(
    container: Any,
    stream: Any,
    wanted: Sequence[int] | None,
    chosen: list[Any],
    *,
    timing: tuple[Fraction, Fraction, int] | None = None,
    first: int = 0,
    convert_now: bool = False,
) -> int:
    """Decode ``stream`` from where the container stands and append to ``chosen`` the frame at each index of
    ``wanted`` (ascending, no repeats; None: every frame), stopping once the last one is found.

    A frame's index: from its timestamp when ``timing`` = (rate, time_base, start_pts) is given (decode_clip:
    after a seek, variable frame rate), else its position in decoding order counted from ``first`` (frames
    without a timestamp are counted too). A wanted index between two decoded frames (dropped frames) gets the
    earlier one, as a player shows it.

    ``chosen`` receives PyAV frames (convert with ``_to_rgb``), or with ``convert_now`` their uint8 [H, W, 3]
    RGB, converted as they are decoded (a frame used twice is converted once). Measured on a busy 2-core CPU
    (80x64 mpeg4): converting as decoded was ~3x faster when keeping many frames (every frame of 120: 27 vs
    127 ms), but ~1.3x slower for the few frames of a seeked clip (5 frames: 4.1 vs 6.0 ms), so decode_frames
    converts at once and decode_clip at the end, as each did before they shared this loop.

    Returns the number of frames decoded. A decode error propagates, with ``chosen`` holding the frames found
    before it: the caller decides whether that prefix is enough.
    """
    def keep(f: Any) -> Any:
        return torch.from_numpy(_rgb24(f)) if convert_now else f

    p, counter, decoded = 0, first, 0
    prev = prev_kept = None  # the previous decoded frame, and what was kept of it (None: not kept)
    for frame in container.decode(stream):
        decoded += 1
        if wanted is None:
            chosen.append(keep(frame))
            continue
        if timing is not None and frame.pts is not None:
            rate, time_base, start_pts = timing
            i = int(round((frame.pts - start_pts) * time_base * rate))
        else:
            i = counter  # no timestamps: count frames (only exact when decoding from frame `first`)
        counter = i + 1
        kept = None
        while p < len(wanted) and wanted[p] < i:
            if prev is not None:
                prev_kept = keep(prev) if prev_kept is None else prev_kept
                chosen.append(prev_kept)
            else:
                kept = keep(frame) if kept is None else kept
                chosen.append(kept)
            p += 1
        while p < len(wanted) and wanted[p] == i:
            kept = keep(frame) if kept is None else kept
            chosen.append(kept)
            p += 1
        prev, prev_kept = frame, kept
        if p == len(wanted):
            break
    return decoded


_REFORMATTERS: dict[int, Any] = {}  # pid -> this process's own VideoReformatter (inherited ones are never touched)


def _rgb24(frame: Any) -> Any:
    """uint8 [H, W, 3] RGB of a PyAV frame, converted by a single-threaded reformatter of this process's own.

    PyAV's `to_ndarray(format=...)` goes through a shared reformatter whose libswscale context keeps slice threads;
    a DataLoader worker forked after the parent decoded inherits them, and PyAV 18.1.1 deadlocked there
    (pthread_cond_destroy in sws_frame_setup). One thread converts the same pixels."""
    pid = os.getpid()
    fmt = _REFORMATTERS.get(pid)
    if fmt is None:
        from av.video.reformatter import VideoReformatter

        fmt = _REFORMATTERS[pid] = VideoReformatter()
    try:
        out = fmt.reformat(frame, format="rgb24", threads=1)
    except TypeError:  # a PyAV without the threads argument (< 16) converts on one thread anyway
        out = fmt.reformat(frame, format="rgb24")
    return out.to_ndarray()


def _to_rgb(frames: Sequence[Any]) -> list[torch.Tensor]:
    """uint8 [H, W, 3] RGB of each PyAV frame; a frame listed several times is converted once (shared tensor)."""
    converted: dict[int, torch.Tensor] = {}
    out = []
    for f in frames:
        if id(f) not in converted:
            converted[id(f)] = torch.from_numpy(_rgb24(f))
        out.append(converted[id(f)])
    return out


def decode_frames(path: str | os.PathLike, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Decode frames by index with PyAV: frame i = the i-th frame in decoding (presentation) order.

    By index, not by timestamp: DROID's MP4 headers carry unreliable fps (SPEC section 8). Decodes from the
    start (no seek) and stops after the largest index. indices: any order, repeats allowed; None = every frame.

    Returns:
        uint8 [len(indices), H, W, 3] (RGB); [0, 0, 0, 3] for no index.
    Raises:
        ClipSkipped: "missing", "empty", "unreadable" (also on any decode error), "no_frames" (no video stream,
        or indices=None and no frame), "too_short" (an index < 0 or past the last frame).
    """
    path = str(path)
    wanted = None if indices is None else sorted({int(i) for i in indices})
    container = open_video(path)
    chosen: list[torch.Tensor] = []
    try:
        if not container.streams.video:
            raise ClipSkipped("no_frames", path, "no video stream")
        if wanted and wanted[0] < 0:
            raise ClipSkipped("too_short", path, f"frame {wanted[0]} requested")
        decoded = _collect_frames(container, container.streams.video[0], wanted, chosen, convert_now=True)
    except ClipSkipped:
        raise
    except Exception as e:  # FFmpeg errors come in many types; all mean the file cannot be used
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    finally:
        container.close()
    if wanted is None:
        if not chosen:
            raise ClipSkipped("no_frames", path, "no frames")
        return torch.stack(chosen)
    if len(chosen) < len(wanted):
        raise ClipSkipped("too_short", path, f"frame {wanted[len(chosen)]} requested, video has {decoded} frames")
    if not wanted:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    by_index = dict(zip(wanted, chosen))
    return torch.stack([by_index[int(i)] for i in indices])


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames of a video: the container's count when it has one, else by decoding every frame; 0
    without a video stream. Raises ClipSkipped "missing", "empty" or "unreadable".

    Exact, so it may decode the whole file; ``decode_clip`` estimates the length from the header instead.
    """
    path = str(path)
    container = open_video(path)
    try:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))
    except Exception as e:  # FFmpeg errors come in many types; all mean the file cannot be used
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    finally:
        container.close()


def min_real_frames(num_frames: int, min_fraction: float) -> int:
    """Real (not padded) frames a clip of ``num_frames`` needs: ceil(min_fraction * F), at least 1."""
    return max(1, math.ceil(min_fraction * num_frames))


def clip_indices(
    path: str,
    n: int,
    num_frames: int,
    step: int,
    generator: torch.Generator | None,
    *,
    train: bool,
    min_fraction: float,
) -> tuple[int, list[int]]:
    """Where a clip of F frames at ``step`` lies in a source of ``n`` frames (n <= 0: unknown length).

    If n holds the span (F-1)*step+1: start uniform over the valid starts (train, one draw from ``generator``)
    or centred (eval), F indices. Shorter: start 0 and the indices 0, step, ... below n, which must number at
    least ``min_real_frames`` (the caller pads them with the last), else ClipSkipped "too_short". Unknown
    length: start 0 and F indices (the caller pads if decoding ends earlier).

    Returns (start, ascending frame indices).
    """
    span = (num_frames - 1) * step + 1
    if n >= span:
        start = int(torch.randint(0, n - span + 1, (), generator=generator)) if train else (n - span) // 2
        return start, [start + k * step for k in range(num_frames)]
    if n <= 0:
        return 0, [k * step for k in range(num_frames)]
    wanted = [k * step for k in range(min(num_frames, math.ceil(n / step)))]
    need = min_real_frames(num_frames, min_fraction)
    if len(wanted) < need:
        raise ClipSkipped("too_short", path, f"{n} frames give {len(wanted)} at step {step}, need {need}")
    return 0, wanted


def pad_with_last(items: list[Any], length: int) -> list[Any]:
    """``items`` (non-empty) padded to ``length`` by repeating its last element: how a short clip is filled."""
    return items + [items[-1]] * (length - len(items))


def decode_clip(
    path: str,
    num_frames: int,
    fps: float | None,
    generator: torch.Generator | None = None,
    *,
    train: bool = True,
    min_fraction: float = 0.5,
) -> tuple[torch.Tensor, list[int]]:
    """Decode F frames of a video at a target fps with PyAV.

    The frame step comes from the stream's average rate (``frame_step``). With enough frames, the clip start
    is uniform over valid starts (train) or centered (eval). A shorter video gives frames 0, step, 2*step, ...
    padded by repeating its last frame, if at least ceil(min_fraction * F) real frames exist; otherwise it is
    skipped as ``too_short`` (``clip_indices``). Unlike ``decode_frames`` it seeks to the keyframe before the
    clip and indexes frames by timestamp, and a decode error late in the file keeps the frames before it.

    Returns:
        frames: uint8 [F, H, W, 3] (RGB); indices: the F source frame indices used (padding repeats the last).
    Raises:
        ClipSkipped: with reason "missing", "empty", "unreadable", "no_frames" or "too_short".
    """
    import av  # local import: PyAV is only needed by code that decodes video

    need = min_real_frames(num_frames, min_fraction)
    container = open_video(path)
    try:
        if not container.streams.video:
            raise ClipSkipped("no_frames", path, "no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = Fraction(rate) if rate else Fraction(30)
        step = frame_step(float(rate), fps)
        time_base = stream.time_base or Fraction(1, 1_000_000)
        start_pts = stream.start_time or 0
        # Frame count: the header's if it has one (mp4), else from the duration (webm/mkv often have none).
        n = int(stream.frames or 0)
        if n <= 0:
            if stream.duration:
                n = int(stream.duration * time_base * rate)
            elif container.duration:
                n = int(container.duration / av.time_base * rate)
        start, wanted = clip_indices(path, n, num_frames, step, generator, train=train, min_fraction=min_fraction)
        if start:
            # Seek to the keyframe at or before the clip start instead of decoding from the beginning.
            target = int(Fraction(start) / rate / time_base) + start_pts
            container.seek(target, stream=stream, backward=True, any_frame=False)
        chosen: list[Any] = []
        try:
            decoded = _collect_frames(container, stream, wanted, chosen, timing=(rate, time_base, start_pts),
                                      first=start)
        except Exception as e:  # a decode error mid-file: keep what we have if it is enough
            if len(chosen) < need:
                raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
            decoded = len(chosen)
        if decoded == 0:
            raise ClipSkipped("no_frames", path)
        if len(chosen) < need:
            raise ClipSkipped("too_short", path,
                              f"{len(chosen)} of {num_frames} frames at step {step}, need {need}")
        frames = pad_with_last(_to_rgb(chosen), num_frames)
        return torch.stack(frames), pad_with_last(wanted[: len(chosen)], num_frames)
    except ClipSkipped:
        raise
    except Exception as e:  # broken headers/seek tables surface as assorted FFmpeg errors: skip the file
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    finally:
        container.close()


def read_image_clip(path: str, num_frames: int) -> torch.Tensor:
    """An image as a clip: uint8 [F, H, W, 3], the image repeated ``num_frames`` times.

    Repeated to the dataset's F (not 2) so that images and videos of one mixture collate into one batch; an
    image-only pipeline can use num_frames=2, the encoder's one-tubelet image clip.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        raise ClipSkipped("missing", path)
    if os.path.getsize(path) == 0:
        raise ClipSkipped("empty", path)
    try:
        with Image.open(path) as im:
            arr = torch.from_numpy(np.array(im.convert("RGB"), dtype=np.uint8))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    if arr.numel() == 0:
        raise ClipSkipped("no_frames", path)
    return arr.unsqueeze(0).expand(num_frames, -1, -1, -1)
