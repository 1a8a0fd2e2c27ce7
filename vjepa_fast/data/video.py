"""Video/image clip dataset, weighted source mixture and a resumable sampler for pretraining.

Pieces:
- ``load_manifest(path)``: JSON or CSV list of (path, weight) sources; a source path is a video/image file, a
  folder (searched recursively for video/image files and robot episodes) or a list file (.txt/.lst: one path
  per line).
- Robot episodes (a folder with meta.json, ``vjepa_fast.data.episode_format``: what robot/collect.py and
  robot/simtools/generate.py write) are videos too: one episode is one clip source, read with its own frame reader.
- ``decode_frames``, ``count_frames``, ``decode_clip``: PyAV decoding (``vjepa_fast.data.decode``); the manifest
  and source expansion live in ``vjepa_fast.data.sources``. Both are re-exported here.
- ``VideoClipDataset``: clip sampling + augmentation -> dict samples with ``video`` float32 [3, F, S, S].
  Bad files (missing, empty, unreadable, no frames, too short) are skipped and counted, never raised.
- ``WeightedMixtureSampler``: draws (index, epoch, draw) keys with the source weights; seeded per epoch,
  split over ranks, resumable from ``state_dict()`` or, exactly, from the last batch (``state_from_batch``).

Randomness of one sample (clip start, crop, flip, replacement file after a skip) comes from a generator seeded
by (dataset seed, epoch, draw), so a run gives the same samples for any number of DataLoader workers and
after a resume.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch.utils.data import Dataset, Sampler

from vjepa_fast.data.augment import AugmentConfig, ClipAugment, EvalClipTransform
from vjepa_fast.data.decode import (
    SKIP_REASONS,
    ClipSkipped,
    clip_indices,
    count_frames,
    decode_clip,
    decode_frames,
    frame_step,
    pad_with_last,
    read_image_clip,
)
from vjepa_fast.data.episode_format import read_episode
from vjepa_fast.data.sources import (
    IMAGE_EXTENSIONS,
    LIST_EXTENSIONS,
    VIDEO_EXTENSIONS,
    SourceSpec,
    as_sources,
    expand_source,
    is_episode_dir,
    load_manifest,
)
from vjepa_fast.seeding import derive_seed as _derive_seed

__all__ = [
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "LIST_EXTENSIONS",
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

SampleKey = Union[int, tuple[int, int, int]]


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
    from the episode's recorded rate, the clip rules of ``clip_indices``, padding a short episode with its
    last frame): uint8 [F, H, W, 3]. Raises ClipSkipped as decode_clip does."""
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
    _, wanted = clip_indices(path, n, num_frames, step, generator, train=train, min_fraction=min_fraction)
    try:
        return ep.frames(pad_with_last(wanted, num_frames))
    except Exception as e:
        raise ClipSkipped("unreadable", path, f"{type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------------------------- dataset


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
        self.sources = as_sources(manifest_or_sources)
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
