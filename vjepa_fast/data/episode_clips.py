"""Pixel clips over robot episodes (the on-the-fly path of V-JEPA 2-AC training): `load_episodes` reads them,
skipping and counting bad ones, `EpisodeClipDataset` serves every window of every episode."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vjepa_fast.data.preprocess import FramePreprocess
from vjepa_fast.data.robot_episode import EpisodeSkipped, RobotEpisode

__all__ = ["EpisodeClipDataset", "clip_starts", "load_episodes"]

_LOG = logging.getLogger(__name__)


def load_episodes(
    paths: Iterable[str], reader: Callable[[str], RobotEpisode], *, min_frames: int = 1
) -> tuple[list[RobotEpisode], Counter]:
    """Read episodes, skipping (and counting, by reason) the ones that fail or have < min_frames frames."""
    episodes, skipped = [], Counter()
    for p in paths:
        try:
            ep = reader(p)
            if ep.num_frames < min_frames:
                raise EpisodeSkipped("too_short", str(p), f"{ep.num_frames} frames < {min_frames}")
            episodes.append(ep)
        except EpisodeSkipped as e:
            skipped[e.reason] += 1
            _LOG.warning("skipping episode %s", e)
    return episodes, skipped


def clip_starts(num_frames: int, frames_per_clip: int, frame_step: int) -> int:
    """How many clip windows (start positions) an episode of `num_frames` holds."""
    return max(0, num_frames - (frames_per_clip - 1) * frame_step)


class EpisodeClipDataset(Dataset):
    """Pixel clips of `frames_per_clip` frames at `frame_step` from every window of every episode.

    Index i is one (episode, start) window; the sampler's shuffling makes the window random (the reference
    draws a random window per episode; enumerating all windows covers the same distribution, weighted by
    episode length, and makes resume exact). Sample: {"frames": float32 [F, 3, S, S] (preprocessed, or
    uint8 [F, H, W, 3] when preprocess is None), "states": float32 [F, 7], "actions": float32 [F-1, 7],
    "episode": int, "start": int}.
    """

    def __init__(
        self,
        episodes: Sequence[RobotEpisode],
        *,
        frames_per_clip: int = 8,
        frame_step: int = 4,
        preprocess: FramePreprocess | None = None,
    ) -> None:
        if frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2 (one action), got {frames_per_clip}")
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.episodes = list(episodes)
        self.frames_per_clip, self.frame_step, self.preprocess = frames_per_clip, frame_step, preprocess
        counts = [clip_starts(e.num_frames, frames_per_clip, frame_step) for e in self.episodes]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            raise ValueError(
                f"no episode has the {(frames_per_clip - 1) * frame_step + 1} frames a clip of {frames_per_clip} "
                f"at step {frame_step} needs"
            )

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def window(self, index: int) -> tuple[int, int]:
        """(episode index, start frame) of window `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)}")
        ep = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return ep, int(index - self._offsets[ep])

    def frame_indices(self, start: int) -> list[int]:
        return [start + k * self.frame_step for k in range(self.frames_per_clip)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        ep_i, start = self.window(int(index))
        ep = self.episodes[ep_i]
        idx = self.frame_indices(start)
        frames = ep.frames(idx)
        if self.preprocess is not None:
            frames = self.preprocess(frames)
        return {
            "frames": frames,
            "states": ep.states[idx].float(),
            "actions": ep.actions(idx).float(),
            "episode": ep_i,
            "start": start,
        }
