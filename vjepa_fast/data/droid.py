"""Raw DROID reader (SPEC section 8): trajectory folders with trajectory.h5 and the MP4 of each camera.

V-JEPA 2-AC uses the left exterior camera (`left_mp4_path` of the metadata JSON), every 4th row of the 15 Hz
control log (3.75 Hz, by index: MP4 frame i = h5 row i, the fps in MP4 headers is unreliable), 8-frame clips,
7-D states = cartesian_position (xyz + extrinsic-xyz Euler) ++ gripper_position, and 7-D actions computed
between consecutive clip states (`vjepa_fast.robotics.actions_from_states`). Frames: center crop to aspect
1.35 (1280x720 -> 972x720), bilinear resize to 256x256 (squashed), ImageNet normalisation, no flip
(`FramePreprocess.droid()`).

    episodes, skipped = load_droid("droid_list.txt")          # skipped: Counter of reasons
    ds = EpisodeClipDataset(episodes, frames_per_clip=8, frame_step=4, preprocess=FramePreprocess.droid())
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from vjepa_fast.data.episode_clips import EpisodeClipDataset, load_episodes
from vjepa_fast.data.preprocess import FramePreprocess
from vjepa_fast.data.robot_episode import (
    EpisodeSkipped, RobotEpisode, check_states, read_video_frames, video_num_frames
)
from vjepa_fast.fileio import read_path_list

__all__ = [
    "DROID_FPS",
    "DROID_FRAME_STEP",
    "read_droid_list",
    "droid_left_mp4",
    "read_droid_episode",
    "load_droid",
    "droid_clip_dataset",
]

DROID_FPS = 15.0
DROID_FRAME_STEP = 4  # 15 Hz rows -> 3.75 Hz clips, as the reference ends up sampling
CARTESIAN = "observation/robot_state/cartesian_position"
GRIPPER = "observation/robot_state/gripper_position"


def read_droid_list(path: str | os.PathLike) -> list[str]:
    """Trajectory folders named by a list file: the first space-separated column of each non-empty line
    (lines starting with # are comments); relative paths are taken from the list file's folder."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DROID list file not found: {p}")
    return read_path_list(p)


def droid_left_mp4(folder: str | os.PathLike) -> Path:
    """The left exterior camera's MP4 of a trajectory folder, from `metadata_*.json`'s `left_mp4_path`
    (only its file name is used: the stored path is the recording machine's)."""
    root = Path(folder)
    metas = sorted(root.glob("metadata_*.json"))
    if not metas:
        raise EpisodeSkipped("missing", str(root), "no metadata_*.json")
    try:
        meta = json.loads(metas[0].read_text())
    except (OSError, ValueError) as e:
        raise EpisodeSkipped("unreadable", str(root), f"{metas[0].name}: {e}") from e
    left = meta.get("left_mp4_path")
    if not left:
        raise EpisodeSkipped("missing", str(root), f"{metas[0].name} has no left_mp4_path")
    mp4 = root / "recordings" / "MP4" / Path(str(left).replace("\\", "/")).name
    if not mp4.is_file():
        raise EpisodeSkipped("missing", str(root), f"no {mp4.relative_to(root)}")
    return mp4


def read_droid_episode(folder: str | os.PathLike) -> RobotEpisode:
    """One raw DROID trajectory: states [T, 7] (float64) with T = min(video frames, h5 rows), frames from
    the left exterior MP4 (decoded lazily, by index). Raises EpisodeSkipped with the reason."""
    import h5py

    root = Path(folder)
    key = str(root)
    h5_path = root / "trajectory.h5"
    if not h5_path.is_file():
        raise EpisodeSkipped("missing", key, "no trajectory.h5")
    mp4 = droid_left_mp4(root)
    try:
        with h5py.File(h5_path, "r") as f:
            cart = np.asarray(f[CARTESIAN][()], dtype=np.float64)
            grip = np.asarray(f[GRIPPER][()], dtype=np.float64)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise EpisodeSkipped("unreadable", key, f"trajectory.h5: {type(e).__name__}: {e}") from e
    if cart.ndim != 2 or cart.shape[1] != 6 or grip.reshape(len(grip), -1).shape != (len(cart), 1):
        raise EpisodeSkipped("bad_data", key, f"cartesian_position {cart.shape}, gripper_position {grip.shape}")
    states = check_states(np.concatenate([cart, grip.reshape(-1, 1)], axis=1), key)
    n_video = video_num_frames(mp4)  # FFmpeg errors: EpisodeSkipped("unreadable")
    t = min(n_video, states.shape[0])
    if t < 1:
        raise EpisodeSkipped("too_short", key, f"{n_video} video frames, {states.shape[0]} h5 rows")

    def reader(indices):
        return read_video_frames(mp4, indices)

    return RobotEpisode(key=key, states=states[:t], frame_reader=reader, fps=DROID_FPS, source="droid")


def load_droid(
    list_or_folders: str | os.PathLike | list[str], *, min_frames: int = 1
) -> tuple[list[RobotEpisode], Counter]:
    """Read every trajectory of a list file (or a list of folders); unreadable ones are skipped and counted.

    Returns (episodes, skipped) with skipped a Counter {reason: count} (EPISODE_SKIP_REASONS).
    """
    folders = list_or_folders if isinstance(list_or_folders, list) else read_droid_list(list_or_folders)
    return load_episodes(folders, read_droid_episode, min_frames=min_frames)


def droid_clip_dataset(
    list_or_folders: str | os.PathLike | list[str],
    *,
    frames_per_clip: int = 8,
    frame_step: int = DROID_FRAME_STEP,
    size: int = 256,
) -> tuple[EpisodeClipDataset, Counter]:
    """The reference's DROID clips (8 frames every 4th row, 256 px): (dataset, skipped-episode counts)."""
    span = (frames_per_clip - 1) * frame_step + 1
    episodes, skipped = load_droid(list_or_folders, min_frames=span)
    ds = EpisodeClipDataset(
        episodes, frames_per_clip=frames_per_clip, frame_step=frame_step, preprocess=FramePreprocess.droid(size)
    )
    return ds, skipped
