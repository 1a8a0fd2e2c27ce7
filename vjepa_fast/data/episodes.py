"""Robot episodes as training sources: which episodes a source names (our folders, raw DROID trajectories,
folders of them, list files), reading either format, and what a set of episodes shares (fingerprint, cameras,
box).

The pieces of the episode path live in their own modules and are re-exported here: `RobotEpisode` and
`EpisodeSkipped` (`data.robot_episode`), our on-disk format (`data.episode_format`), frame preprocessing
(`data.preprocess`) and the pixel clip dataset (`data.episode_clips`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vjepa_fast.data.droid import read_droid_episode
from vjepa_fast.data.episode_clips import EpisodeClipDataset, clip_starts, load_episodes
from vjepa_fast.data.episode_format import (
    ACTION_CONVENTION,
    EPISODE_FORMAT,
    EPISODE_FORMAT_VERSION,
    STATE_CONVENTION,
    EpisodeWriter,
    find_episodes,
    read_episode,
)
from vjepa_fast.data.preprocess import FramePreprocess, PlannerPreprocess
from vjepa_fast.data.robot_episode import (
    EPISODE_SKIP_REASONS, EpisodeSkipped, RobotEpisode, check_states, read_video_frames, video_num_frames
)
from vjepa_fast.fileio import read_path_list

__all__ = [
    "EPISODE_FORMAT",
    "EPISODE_FORMAT_VERSION",
    "EPISODE_SKIP_REASONS",
    "EpisodeSkipped",
    "RobotEpisode",
    "FramePreprocess",
    "EpisodeWriter",
    "read_episode",
    "find_episodes",
    "read_video_frames",
    "video_num_frames",
    "EpisodeClipDataset",
    "PlannerPreprocess",
    "is_droid_dir",
    "expand_episode_source",
    "read_robot_episode",
    "episode_fingerprint",
    "episode_cameras",
    "episode_box",
    "ACTION_CONVENTION",
    "STATE_CONVENTION",
    "check_states",
    "clip_starts",
    "load_episodes",
]


def is_droid_dir(path: str | os.PathLike) -> bool:
    """A raw DROID trajectory folder (it holds trajectory.h5)."""
    return (Path(path) / "trajectory.h5").is_file()


def expand_episode_source(source: str | os.PathLike) -> list[str]:
    """The episodes a training source names, in a stable order: an episode folder of ours (meta.json) or a
    raw DROID trajectory folder (trajectory.h5) -> itself; a folder -> every such folder under it, sorted;
    a list file -> the first column of each line (relative to the file; # comments), each expanded."""
    p = Path(source)
    if p.is_file():
        return [e for q in read_path_list(p) for e in expand_episode_source(q)]
    if (p / "meta.json").is_file() or is_droid_dir(p):
        return [str(p)]
    if not p.is_dir():
        raise FileNotFoundError(f"data source {p}: no episode folder, DROID trajectory folder, folder of them or "
                                "list file there")
    found = {m.parent for m in p.rglob("meta.json")} | {m.parent for m in p.rglob("trajectory.h5")}
    return sorted(str(f) for f in found)


def read_robot_episode(path: str | os.PathLike) -> RobotEpisode:
    """One episode in either format: a raw DROID trajectory folder, else an episode folder of ours."""
    if is_droid_dir(path):
        return read_droid_episode(path)
    return read_episode(path)


def episode_fingerprint(paths: Sequence[str]) -> str:
    """sha256 of the episode paths, in order, with the size and modification time of the files that hold
    their states (meta.json + steps.jsonl, or trajectory.h5): a re-recorded or added episode changes it."""
    h = hashlib.sha256()
    for e in paths:
        root = Path(e)
        files = [root / "trajectory.h5"] if is_droid_dir(root) else [root / "meta.json", root / "steps.jsonl"]
        h.update(str(root).encode())
        for f in files:
            st = f.stat() if f.is_file() else None
            h.update(f"|{f.name}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
        h.update(b"\n")
    return h.hexdigest()


def episode_cameras(episodes: Sequence[str]) -> list[str]:
    """The distinct cameras our episodes were recorded with (meta.json "camera"), sorted ("" when absent,
    e.g. DROID)."""
    cams = set()
    for e in episodes:
        meta = Path(e) / "meta.json"
        cams.add(str(json.loads(meta.read_text()).get("camera", "")) if meta.is_file() else "")
    return sorted(cams)


def episode_box(episodes: Sequence[str]) -> list[list[float]] | None:
    """[[x, y, z] low, [x, y, z] high]: the box the episodes' moves stayed in (their meta extra box_lo /
    box_hi, as robot/collect.py and robot/simtools/generate.py record it; the union over episodes), or None."""
    lo, hi = None, None
    for e in episodes:
        meta = Path(e) / "meta.json"
        extra = json.loads(meta.read_text()).get("extra", {}) if meta.is_file() else {}
        if "box_lo" not in extra or "box_hi" not in extra:
            return None
        a, b = np.asarray(extra["box_lo"], dtype=np.float64), np.asarray(extra["box_hi"], dtype=np.float64)
        lo = a if lo is None else np.minimum(lo, a)
        hi = b if hi is None else np.maximum(hi, b)
    return None if lo is None else [lo.tolist(), hi.tolist()]
