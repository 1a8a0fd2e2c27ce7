"""`RobotEpisode`, the in-memory episode every reader returns (our format, DROID), why an episode was skipped
(`EpisodeSkipped`), and the episode readers' video access on top of the shared PyAV decoder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vjepa_fast.data.decode import ClipSkipped, count_frames, decode_frames
from vjepa_fast.robotics.pose import STATE_DIM, actions_from_states

__all__ = [
    "EPISODE_SKIP_REASONS",
    "EpisodeSkipped",
    "RobotEpisode",
    "check_states",
    "read_video_frames",
    "video_num_frames",
]

# Why an episode was skipped.
EPISODE_SKIP_REASONS: tuple[str, ...] = ("missing", "unreadable", "too_short", "bad_data")


class EpisodeSkipped(Exception):
    """An episode gave no usable data; `reason` is one of EPISODE_SKIP_REASONS."""

    def __init__(self, reason: str, path: str, detail: str = "") -> None:
        assert reason in EPISODE_SKIP_REASONS, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, path, detail


@dataclass
class RobotEpisode:
    """One robot episode in memory, whatever its on-disk format.

    key: a stable identity (the folder path), used as the latent-cache key.
    states: float64 [T, 7]; commanded_actions: float64 [T, 7] (NaN where none) or None; timestamps: [T] s or None.
    fps: the recording rate (informative: clips are sampled by index).
    frame_reader: indices -> uint8 [len, H, W, 3]; frames beyond T are never requested.
    """

    key: str
    states: torch.Tensor
    frame_reader: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)
    fps: float = 0.0
    commanded_actions: torch.Tensor | None = None
    timestamps: torch.Tensor | None = None
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.states.shape[0])

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 [len(indices), H, W, 3] of the given frame indices (each < num_frames)."""
        bad = [i for i in indices if not 0 <= int(i) < self.num_frames]
        if bad:
            raise IndexError(f"frame index {bad[0]} out of range for {self.num_frames} frames of {self.key}")
        return self.frame_reader(list(indices))

    def actions(self, indices: Sequence[int]) -> torch.Tensor:
        """Actions between the states at consecutive `indices` (actions_from_states): [len-1, 7]."""
        return actions_from_states(self.states[list(indices)])


def check_states(states: np.ndarray | torch.Tensor, path: str) -> torch.Tensor:
    """float64 [T, 7] with finite values, else EpisodeSkipped("bad_data")."""
    s = torch.as_tensor(np.asarray(states, dtype=np.float64))
    if s.dim() != 2 or s.shape[1] != STATE_DIM:
        raise EpisodeSkipped("bad_data", path, f"states must be [T, {STATE_DIM}], got {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise EpisodeSkipped("bad_data", path, "non-finite states")
    return s


# ClipSkipped reasons of the shared decoder -> the episode reasons they were always reported as, and the
# detail said when the decoder gives none.
_EPISODE_REASON = {"missing": ("missing", "no video file"), "empty": ("unreadable", "empty file"),
                   "unreadable": ("unreadable", ""), "no_frames": ("unreadable", "no frames"),
                   "too_short": ("too_short", "")}


def _as_episode_skip(e: ClipSkipped) -> EpisodeSkipped:
    reason, detail = _EPISODE_REASON[e.reason]
    return EpisodeSkipped(reason, e.path, e.detail or detail)


def video_num_frames(path: str | os.PathLike) -> int:
    """Number of frames of a video (``vjepa_fast.data.decode.count_frames``): the container's count when it has
    one, else by decoding; 0 without a video stream. Raises EpisodeSkipped("missing" / "unreadable")."""
    try:
        return count_frames(path)
    except ClipSkipped as e:
        raise _as_episode_skip(e) from e


def read_video_frames(path: str | os.PathLike, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Decode frames by index (frame i = the i-th frame in presentation order) with PyAV
    (``vjepa_fast.data.decode.decode_frames``).

    Sampling is by index, not by timestamp: DROID's MP4 headers carry unreliable fps (SPEC section 8).
    indices: ascending or not, repeats allowed; None = every frame. Decoding stops after the largest index.
    Returns uint8 [len(indices), H, W, 3] (RGB). Raises EpisodeSkipped("missing" / "unreadable" / "too_short").
    """
    if not os.path.isfile(path):
        raise EpisodeSkipped("missing", str(path), "no video file")
    try:
        return decode_frames(path, indices)
    except ClipSkipped as e:
        raise _as_episode_skip(e) from e
