"""Video/image clip dataset, weighted source mixture and a resumable sampler for pretraining.

Pieces:
- ``load_manifest(path)``: JSON or CSV list of (path, weight) sources; a source path is a video/image file, a
  folder (searched recursively for video/image files and robot episodes) or a list file (.txt/.lst: one path
  per line).
- Robot episodes (a folder with meta.json, ``vjepa_fast.data.episodes``: what robot/collect.py and
  robot/generate.py write) are videos too: one episode is one clip source, read with its own frame reader.
- ``decode_frames(path, indices)`` / ``count_frames(path)``: the PyAV frame decoder by index (frame i = the
  i-th decoded frame) that robot episodes and DROID read their MP4s with (``vjepa_fast.data.episodes``).
- ``decode_clip(...)``: PyAV decoding of F frames at a target fps -> uint8 [F, H, W, 3], on the same frame
  collection loop, with a seek to the clip and timestamp indexing.
- ``VideoClipDataset``: clip sampling + augmentation -> dict samples with ``video`` float32 [3, F, S, S].
  Bad files (missing, empty, unreadable, no frames, too short) are skipped and counted, never raised.
- ``WeightedMixtureSampler``: draws (index, epoch, draw) keys with the source weights; seeded per epoch,
  split over ranks, resumable from ``state_dict()`` or, exactly, from the last batch (``state_from_batch``).

Randomness of one sample (clip start, crop, flip, replacement file after a skip) comes from a generator seeded
by (dataset seed, epoch, draw), so a run gives the same samples for any number of DataLoader workers and
after a resume.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vjepa_fast.data.augment import AugmentConfig, ClipAugment, EvalClipTransform
from vjepa_fast.seeding import derive_seed as _derive_seed

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "SKIP_REASONS",
    "SourceSpec",
    "ClipSkipped",
    "load_manifest",
    "expand_source",
    "frame_step",
    "decode_frames",
    "count_frames",
    "decode_clip",
    "read_image_clip",
    "read_episode_clip",
    "is_episode_dir",
    "VideoClipDataset",
    "WeightedMixtureSampler",
    "count_skips",
]

_LOG = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
LIST_EXTENSIONS = frozenset({".txt", ".lst"})
# Why a file was skipped. Every sample carries a count for each reason so that default_collate can stack them.
SKIP_REASONS: tuple[str, ...] = ("missing", "empty", "unreadable", "no_frames", "too_short")

SampleKey = Union[int, tuple[int, int, int]]


@dataclass(frozen=True)
class SourceSpec:
    """One data source: ``path`` (file, folder or list file) and its mixture ``weight`` (> 0)."""

    path: str
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or str(self.path) == "":
            raise ValueError(f"path must be a non-empty path, got {self.path!r}")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r} for {self.path}")


class ClipSkipped(Exception):
    """A file gave no usable clip; ``reason`` is one of SKIP_REASONS."""

    def __init__(self, reason: str, path: str, detail: str = "") -> None:
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, path, detail


# ----------------------------------------------------------------------------------------------- manifest


def load_manifest(path: str | os.PathLike) -> list[SourceSpec]:
    """Read a source manifest. Relative source paths are resolved against the manifest's folder.

    JSON: a list of ``{"path": ..., "weight": ...}`` objects (or ``[path, weight]`` pairs), or an object with
    such a list under ``"sources"``; ``name`` is optional. CSV: rows ``path,weight[,name]``, an optional header
    row starting with ``path``; blank lines and lines starting with ``#`` are ignored.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"manifest {p} does not exist")
    base = p.parent
    rows: list[tuple[str, float, str]] = []
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, Mapping):
            data = data.get("sources")
        if not isinstance(data, list):
            raise ValueError(f"manifest {p}: expected a list of sources (or {{'sources': [...]}})")
        for entry in data:
            if isinstance(entry, Mapping):
                if "path" not in entry:
                    raise ValueError(f"manifest {p}: source entry without 'path': {entry!r}")
                rows.append((str(entry["path"]), float(entry.get("weight", 1.0)), str(entry.get("name", ""))))
            elif isinstance(entry, (list, tuple)) and len(entry) in (1, 2):
                rows.append((str(entry[0]), float(entry[1]) if len(entry) == 2 else 1.0, ""))
            else:
                raise ValueError(f"manifest {p}: cannot read source entry {entry!r}")
    elif p.suffix.lower() == ".csv":
        with p.open(newline="") as f:
            for i, row in enumerate(csv.reader(f)):
                row = [c.strip() for c in row]
                if not row or not row[0] or row[0].startswith("#"):
                    continue
                if i == 0 and row[0].lower() == "path":
                    continue
                try:
                    weight = float(row[1]) if len(row) > 1 and row[1] else 1.0
                except ValueError as e:
                    raise ValueError(f"manifest {p} line {i + 1}: bad weight {row[1]!r}") from e
                rows.append((row[0], weight, row[2] if len(row) > 2 else ""))
    else:
        raise ValueError(f"manifest {p}: expected a .json or .csv file")
    if not rows:
        raise ValueError(f"manifest {p} lists no source")
    out = []
    for src, weight, name in rows:
        sp = Path(os.path.expanduser(src))
        out.append(SourceSpec(str(sp if sp.is_absolute() else base / sp), weight, name or sp.stem))
    return out


def _is_media(path: Path) -> bool:
    ext = path.suffix.lower()
    return ext in VIDEO_EXTENSIONS or ext in IMAGE_EXTENSIONS


def is_episode_dir(path: str | os.PathLike) -> bool:
    """A robot episode folder (meta.json beside its frames): read as one video by the clip dataset."""
    return (Path(path) / "meta.json").is_file()


def expand_source(path: str | os.PathLike) -> list[str]:
    """Files of one source: the file itself, a folder's video/image files and robot episode folders (recursive,
    sorted; the frames inside an episode are not listed on their own), or the lines of a list file (first
    comma/tab/space-separated field, relative to the list file's folder).

    Files are listed, not opened: broken ones are found (and skipped) when read.
    """
    p = Path(path)
    if p.is_dir():
        if is_episode_dir(p):
            return [str(p)]
        out = []
        for root, dirs, names in os.walk(p):
            if "meta.json" in names:  # an episode: one source file, its frames are not walked
                out.append(root)
                dirs.clear()
                continue
            out.extend(os.path.join(root, n) for n in names if _is_media(Path(n)))
        return sorted(out)
    if p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
        from vjepa_fast.fileio import read_path_list

        return read_path_list(p)
    if _is_media(p) or is_episode_dir(p):
        return [str(p)]  # may not exist yet; a missing file is skipped and counted when read
    raise ValueError(f"source {p} is neither a folder, a list file ({sorted(LIST_EXTENSIONS)}) nor a video/image")


# ----------------------------------------------------------------------------------------------- decoding


def frame_step(average_rate: float, fps: float | None) -> int:
    """Frames to advance per sampled frame to get ``fps`` from a stream at ``average_rate``.

    Rounded to the nearest integer (halves up), at least 1: 30 -> 4 fps gives 8 (3.75 fps), 25 -> 4 gives 6
    (4.17 fps). ``fps=None`` keeps every frame.
    """
    if fps is None or not average_rate or average_rate <= 0:
        return 1
    return max(1, int(math.floor(float(average_rate) / float(fps) + 0.5)))


def _open_video(path: str) -> Any:
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
        return torch.from_numpy(f.to_ndarray(format="rgb24")) if convert_now else f

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


def _to_rgb(frames: Sequence[Any]) -> list[torch.Tensor]:
    """uint8 [H, W, 3] RGB of each PyAV frame; a frame listed several times is converted once (shared tensor)."""
    converted: dict[int, torch.Tensor] = {}
    out = []
    for f in frames:
        if id(f) not in converted:
            converted[id(f)] = torch.from_numpy(f.to_ndarray(format="rgb24"))
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
    container = _open_video(path)
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
    container = _open_video(path)
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


def _min_real_frames(num_frames: int, min_fraction: float) -> int:
    """Real (not padded) frames a clip of ``num_frames`` needs: ceil(min_fraction * F), at least 1."""
    return max(1, math.ceil(min_fraction * num_frames))


def _clip_indices(
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
    least ``_min_real_frames`` (the caller pads them with the last), else ClipSkipped "too_short". Unknown
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
    need = _min_real_frames(num_frames, min_fraction)
    if len(wanted) < need:
        raise ClipSkipped("too_short", path, f"{n} frames give {len(wanted)} at step {step}, need {need}")
    return 0, wanted


def _pad_with_last(items: list[Any], length: int) -> list[Any]:
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
    skipped as ``too_short`` (``_clip_indices``). Unlike ``decode_frames`` it seeks to the keyframe before the
    clip and indexes frames by timestamp, and a decode error late in the file keeps the frames before it.

    Returns:
        frames: uint8 [F, H, W, 3] (RGB); indices: the F source frame indices used (padding repeats the last).
    Raises:
        ClipSkipped: with reason "missing", "empty", "unreadable", "no_frames" or "too_short".
    """
    import av  # local import: PyAV is only needed by code that decodes video

    need = _min_real_frames(num_frames, min_fraction)
    container = _open_video(path)
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
        start, wanted = _clip_indices(path, n, num_frames, step, generator, train=train, min_fraction=min_fraction)
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
        frames = _pad_with_last(_to_rgb(chosen), num_frames)
        return torch.stack(frames), _pad_with_last(wanted[: len(chosen)], num_frames)
    except ClipSkipped:
        raise
    except Exception as e:  # broken headers/seek tables surface as assorted FFmpeg errors: skip the file
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    finally:
        container.close()


def read_episode_clip(
    path: str,
    num_frames: int,
    fps: float | None,
    generator: torch.Generator | None = None,
    *,
    train: bool = True,
    min_fraction: float = 0.5,
) -> torch.Tensor:
    """F frames of a robot episode at a target fps, sampled as ``decode_clip`` samples a video (the frame step
    from the episode's recorded rate, the clip rules of ``_clip_indices``, padding a short episode with its
    last frame): uint8 [F, H, W, 3]. Raises ClipSkipped as decode_clip does."""
    from vjepa_fast.data.episodes import read_episode  # local: episodes imports the decoding helpers

    if not os.path.isdir(path):
        raise ClipSkipped("missing", path)
    try:
        ep = read_episode(path)
    except Exception as e:  # a torn or foreign folder: skipped and counted like a broken video
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e
    n = ep.num_frames
    if n == 0:
        raise ClipSkipped("no_frames", path)
    step = frame_step(ep.fps, fps)  # 1 when the episode has no recorded rate
    _, wanted = _clip_indices(path, n, num_frames, step, generator, train=train, min_fraction=min_fraction)
    try:
        return ep.frames(_pad_with_last(wanted, num_frames))
    except Exception as e:
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e


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


# ----------------------------------------------------------------------------------------------- dataset


def _as_sources(sources: Any) -> list[SourceSpec]:
    if isinstance(sources, (str, os.PathLike)):
        p = Path(sources)
        if p.suffix.lower() in (".json", ".csv") and p.is_file():
            return load_manifest(p)
        return [SourceSpec(str(p), 1.0, p.stem)]
    if isinstance(sources, Sequence) and len(sources) > 0:
        out = []
        for s in sources:
            if isinstance(s, SourceSpec):
                out.append(s)
            elif isinstance(s, (str, os.PathLike)):
                out.append(SourceSpec(str(s), 1.0, Path(s).stem))
            elif isinstance(s, (tuple, list)) and len(s) == 2:
                out.append(SourceSpec(str(s[0]), float(s[1]), Path(s[0]).stem))
            else:
                raise TypeError(f"manifest_or_sources entries must be SourceSpec, path or (path, weight), got {s!r}")
        return out
    raise TypeError(
        "manifest_or_sources must be a manifest/source path or a non-empty list of sources, "
        f"got {type(sources).__name__}"
    )


class VideoClipDataset(Dataset):
    """Clips from a weighted mixture of video/image sources.

    Args:
        manifest_or_sources: a manifest path (.json/.csv, see ``load_manifest``), a single source path, or a list
            of ``SourceSpec`` / paths / (path, weight) pairs.
        num_frames: F, frames per clip.
        fps: target sampling rate (frame step from each stream's average rate); None keeps every frame.
        crop_size: output side S.
        train: random clip start + ``ClipAugment`` (SPEC augmentation); False: centered clip + eval transform.
        augment: augmentation config for train (default ``AugmentConfig.vjepa2(crop_size)``).
        min_fraction: a video shorter than the clip span is padded with its last frame if it gives at least
            ceil(min_fraction * F) real frames, else skipped as too short.
        max_retries: replacement files tried after a bad one before giving up with RuntimeError (a dataset
            where that many files in a row fail is broken, and silently looping would hide it).
        seed: base seed of all per-sample randomness.

    Indexing: ``ds[key]`` with key = (index, epoch, draw) from ``WeightedMixtureSampler`` (or a plain int
    index, read as (index, 0, index)). A bad file is replaced by a random file of the same source (so the
    mixture weights hold), in the second half of the retries by any file. Returns a dict:
        "video": float32 [3, F, S, S] normalised; "index": int, the file actually used; "source": int;
        "epoch", "draw": ints from the key; "skipped": {reason: int} skip events on the way to this sample.
    ``self.skipped`` (a Counter by reason) counts skip events in this process; with DataLoader workers read
    the per-batch counts instead (``count_skips(batch)``). A warning names each bad file the first time a
    process meets it; known-bad files are not reopened.
    """

    def __init__(
        self,
        manifest_or_sources: Any,
        num_frames: int = 16,
        fps: float | None = 4.0,
        crop_size: int = 256,
        train: bool = True,
        *,
        augment: AugmentConfig | None = None,
        min_fraction: float = 0.5,
        max_retries: int = 20,
        seed: int = 0,
    ) -> None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"fps must be > 0 or None, got {fps!r}")
        if not (0.0 < min_fraction <= 1.0):
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        if max_retries < 1:
            raise ValueError(f"max_retries must be >= 1, got {max_retries}")
        self.sources = _as_sources(manifest_or_sources)
        self.files: list[str] = []
        offsets = [0]
        for src in self.sources:
            files = expand_source(src.path)
            if not files:
                raise ValueError(f"source {src.path} holds no video, image or robot episode")
            self.files.extend(files)
            offsets.append(len(self.files))
        self.source_offsets: list[int] = offsets
        self.num_frames, self.fps, self.crop_size, self.train = num_frames, fps, crop_size, train
        self.min_fraction, self.max_retries, self.seed = min_fraction, max_retries, int(seed)
        if train:
            cfg = augment if augment is not None else AugmentConfig.vjepa2(crop_size)
            if cfg.crop_size != crop_size:
                raise ValueError(f"augment.crop_size {cfg.crop_size} differs from crop_size {crop_size}")
            self.transform: Any = ClipAugment(cfg)
        else:
            self.transform = EvalClipTransform(crop_size)
        self.skipped: Counter[str] = Counter()
        self._bad: dict[str, str] = {}

    @property
    def source_sizes(self) -> list[int]:
        return [b - a for a, b in zip(self.source_offsets[:-1], self.source_offsets[1:])]

    @property
    def weights(self) -> list[float]:
        return [s.weight for s in self.sources]

    def __len__(self) -> int:
        return len(self.files)

    def source_of(self, index: int) -> int:
        for s in range(len(self.sources)):
            if index < self.source_offsets[s + 1]:
                return s
        raise IndexError(f"index {index} out of range for {len(self.files)} files")

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor:
        path = self.files[index]
        if path in self._bad:
            raise ClipSkipped(self._bad[path], path, "known bad")
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
            frames = read_image_clip(path, self.num_frames)
        elif is_episode_dir(path):
            frames = read_episode_clip(path, self.num_frames, self.fps, generator, train=self.train,
                                       min_fraction=self.min_fraction)
        else:
            frames, _ = decode_clip(
                path, self.num_frames, self.fps, generator, train=self.train, min_fraction=self.min_fraction
            )
        return self.transform(frames, generator)

    def _replacement(self, index: int, attempt: int, generator: torch.Generator) -> int:
        """The file to try after ``index`` failed: for the first half of the retries a random file of the same
        source (keeps the mixture weights), then a random file of any source.

        The choice depends only on the generator, never on which files this process already knows to be bad,
        so a sample is the same for any worker count and after a resume (known-bad files are just not reopened).
        """
        s = self.source_of(index)
        lo, hi = self.source_offsets[s], self.source_offsets[s + 1]
        if attempt > self.max_retries // 2 or hi - lo == 1:
            lo, hi = 0, len(self.files)
        return int(torch.randint(lo, hi, (), generator=generator))

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            index, epoch, draw = (int(k) for k in key)
        else:
            index, epoch, draw = int(key), 0, int(key)
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} files")
        g = torch.Generator().manual_seed(_derive_seed(self.seed, epoch, draw))
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for attempt in range(self.max_retries + 1):
            if attempt:
                index = self._replacement(index, attempt, g)
            try:
                video = self._load(index, g)
                return {
                    "video": video,
                    "index": index,
                    "source": self.source_of(index),
                    "epoch": epoch,
                    "draw": draw,
                    "skipped": skipped,
                }
            except ClipSkipped as e:
                skipped[e.reason] += 1
                self.skipped[e.reason] += 1
                if e.path not in self._bad:
                    self._bad[e.path] = e.reason
                    _LOG.warning("skipping %s (%s)", e.path, str(e).split(": ", 1)[-1])
        raise RuntimeError(
            f"{self.max_retries + 1} files in a row gave no clip (last: {self.files[index]}); skipped so far in "
            f"this process: {dict(self.skipped)}"
        )


def count_skips(batch: Mapping[str, Any]) -> dict[str, int]:
    """Sum a collated batch's per-sample skip counts: {reason: int}."""
    return {r: int(torch.as_tensor(v).sum()) for r, v in batch["skipped"].items()}


# ----------------------------------------------------------------------------------------------- sampler


class WeightedMixtureSampler(Sampler):
    """Draws sample keys (index, epoch, draw) from sources with the given weights.

    Per epoch, ``num_samples`` global draws: the source of each draw is i.i.d. with probabilities weights /
    sum(weights); inside a source, files come from a fresh permutation each time the source is used up (no
    repeats before every file was seen). All of it is a pure function of (seed, epoch). Rank r of W takes
    draws r, r + W, r + 2W, ... of the first floor(num_samples / W) * W, so ranks never share a draw.
    ``draw`` is the global draw position; the dataset seeds the sample's randomness with it.

    Resume: ``state_dict()`` -> {"epoch", "index", ...} where index counts keys handed out in this epoch on
    this rank. A DataLoader takes keys ahead of the training loop (workers x prefetch_factor batches), so to
    resume exactly save ``state_from_batch(last_batch)`` instead; ``load_state_dict`` accepts either. After an
    epoch's last key the sampler moves to the next epoch by itself (``set_epoch`` also works).
    """

    def __init__(
        self,
        source_sizes: Sequence[int],
        weights: Sequence[float],
        num_samples: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(source_sizes) == 0 or len(source_sizes) != len(weights):
            raise ValueError(
                f"source_sizes and weights must be non-empty and of equal length, got {len(source_sizes)} "
                f"and {len(weights)}"
            )
        if any(int(n) < 1 for n in source_sizes):
            raise ValueError(f"source_sizes must all be >= 1, got {list(source_sizes)}")
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"weights must all be finite and > 0, got {list(weights)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if num_samples < world_size:
            raise ValueError(f"num_samples must be >= world_size ({world_size}), got {num_samples}")
        self.source_sizes = [int(n) for n in source_sizes]
        self.weights = [float(w) for w in weights]
        self.num_samples = int(num_samples)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.index = 0
        self._plan: tuple[int, torch.Tensor] | None = None

    @classmethod
    def for_dataset(
        cls, dataset: VideoClipDataset, num_samples: int | None = None, **kwargs: Any
    ) -> WeightedMixtureSampler:
        """Sampler over ``dataset``'s sources and weights; num_samples defaults to len(dataset)."""
        return cls(dataset.source_sizes, dataset.weights, num_samples or len(dataset), **kwargs)

    def __len__(self) -> int:
        """Keys per epoch on this rank (a resumed epoch yields ``len - index`` of them)."""
        return self.num_samples // self.world_size

    def _epoch_indices(self, epoch: int) -> torch.Tensor:
        """LongTensor [num_samples]: the dataset index of every global draw of ``epoch``."""
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        g = torch.Generator().manual_seed(_derive_seed(self.seed, epoch))
        w = torch.tensor(self.weights, dtype=torch.float64)
        choice = torch.multinomial(w, self.num_samples, replacement=True, generator=g)
        out = torch.empty(self.num_samples, dtype=torch.long)
        offset = 0
        for s, size in enumerate(self.source_sizes):
            where = torch.nonzero(choice == s).flatten()  # draws of source s, in draw order
            k = where.numel()
            if k:
                gs = torch.Generator().manual_seed(_derive_seed(self.seed, epoch, s))
                perms = [torch.randperm(size, generator=gs) for _ in range(math.ceil(k / size))]
                out[where] = offset + torch.cat(perms)[:k]
            offset += size
        self._plan = (epoch, out)
        return out

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, start = self.epoch, self.index
        indices = self._epoch_indices(epoch)
        per_rank = len(self)
        for k in range(start, per_rank):
            draw = self.rank + k * self.world_size
            self.index = k + 1
            yield int(indices[draw]), epoch, draw
        self.epoch, self.index = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.index = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "index": self.index,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "world_size": self.world_size,
        }

    def state_from_batch(self, batch: Mapping[str, Any]) -> dict[str, int]:
        """State that resumes right after ``batch`` (a collated batch of this sampler's keys)."""
        draws = torch.as_tensor(batch["draw"]).flatten()
        epochs = torch.as_tensor(batch["epoch"]).flatten()
        last = int(torch.argmax(epochs * (self.num_samples + 1) + draws))
        epoch, draw = int(epochs[last]), int(draws[last])
        index = (draw - self.rank) // self.world_size + 1
        if index >= len(self):
            epoch, index = epoch + 1, 0
        return {**self.state_dict(), "epoch": epoch, "index": index}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        for key in ("seed", "num_samples", "world_size"):
            if key in state and int(state[key]) != getattr(self, key):
                raise ValueError(
                    f"state {key}={state[key]} differs from this sampler's {getattr(self, key)}: the draw order "
                    "would not continue the saved run"
                )
        index = int(state["index"])
        if not 0 <= index <= len(self):
            raise ValueError(f"state index must be in [0, {len(self)}], got {index}")
        self.epoch, self.index = int(state["epoch"]), index
