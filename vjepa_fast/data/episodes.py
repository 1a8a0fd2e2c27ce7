"""Robot episodes: our on-disk format (writer + reader), the in-memory `RobotEpisode` every reader returns,
frame preprocessing, and a pixel clip dataset over episodes (the on-the-fly path of V-JEPA 2-AC training).

Our episode format (version 1), one folder per episode, written by `EpisodeWriter` (robot/run_mpc.py and the
simulator log through it):

    <episode>/meta.json     {"format": "vjepa_fast.episode", "version": 1, "fps": float, "camera": str,
                             "frames": "png" | "mp4", "complete": bool, "num_steps": int (when complete),
                             "state_convention": ..., "action_convention": ..., "extra": {...}}
    <episode>/steps.jsonl   one JSON object per step, in order:
                             {"i": int, "t": float seconds, "state": [7 floats], "action": [7 floats] | null}
    <episode>/frames/000000.png ...   frame i as an RGB PNG (while recording, and for frames="png")
    <episode>/frames.mp4    all frames, frame i = step i (frames="mp4", after `close(encode_mp4=True)`)

- state (7-D, the DROID / V-JEPA 2-AC convention): end-effector xyz (m), orientation as extrinsic-xyz Euler
  angles (rad), gripper position in [0, 1] (0 open, 1 closed); observed together with frame i at time t.
- action (7-D): the command issued after observing step i, in the action convention of SPEC section 5
  (delta xyz, extrinsic-xyz Euler of R_cmd R_i^T, delta gripper); null when none was issued (e.g. last step).
  Training uses actions recomputed from consecutive states (`actions_from_states`), exactly as for DROID;
  the commanded actions are kept for analysis and available as `RobotEpisode.commanded_actions`.

Crash safety: each frame PNG is written to a temporary name and renamed, and only then is the step's line
appended to steps.jsonl and flushed. A crash therefore leaves a readable prefix: the reader keeps every
complete line whose frame exists and ignores a torn last line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vjepa_fast.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vjepa_fast.data.video import ClipSkipped, count_frames, decode_frames
from vjepa_fast.robotics.pose import ACTION_DIM, STATE_DIM, actions_from_states
from vjepa_fast.fileio import atomic_write_bytes, read_path_list

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
]

_LOG = logging.getLogger(__name__)

EPISODE_FORMAT = "vjepa_fast.episode"
EPISODE_FORMAT_VERSION = 1
STATE_CONVENTION = "xyz_m, euler_xyz_extrinsic_rad, gripper_0open_1closed"
ACTION_CONVENTION = "delta_xyz_m, euler_xyz_extrinsic_rad(R_next R^T), delta_gripper"
# Why an episode was skipped.
EPISODE_SKIP_REASONS: tuple[str, ...] = ("missing", "unreadable", "too_short", "bad_data")


class EpisodeSkipped(Exception):
    """An episode gave no usable data; `reason` is one of EPISODE_SKIP_REASONS."""

    def __init__(self, reason: str, path: str, detail: str = "") -> None:
        assert reason in EPISODE_SKIP_REASONS, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason, self.path, self.detail = reason, path, detail


# ----------------------------------------------------------------------------------------------- video


# ClipSkipped reasons of the shared decoder -> the episode reasons they were always reported as, and the
# detail said when the decoder gives none.
_EPISODE_REASON = {"missing": ("missing", "no video file"), "empty": ("unreadable", "empty file"),
                   "unreadable": ("unreadable", ""), "no_frames": ("unreadable", "no frames"),
                   "too_short": ("too_short", "")}


def _as_episode_skip(e: ClipSkipped) -> EpisodeSkipped:
    reason, detail = _EPISODE_REASON[e.reason]
    return EpisodeSkipped(reason, e.path, e.detail or detail)


def video_num_frames(path: str | os.PathLike) -> int:
    """Number of frames of a video (``vjepa_fast.data.video.count_frames``): the container's count when it has
    one, else by decoding; 0 without a video stream. Raises EpisodeSkipped("missing" / "unreadable")."""
    try:
        return count_frames(path)
    except ClipSkipped as e:
        raise _as_episode_skip(e) from e


def read_video_frames(path: str | os.PathLike, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Decode frames by index (frame i = the i-th frame in presentation order) with PyAV
    (``vjepa_fast.data.video.decode_frames``).

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


# ----------------------------------------------------------------------------------------------- episode


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


# ----------------------------------------------------------------------------------------------- preprocess


@dataclass(frozen=True)
class FramePreprocess:
    """Frames uint8 [F, H, W, 3] -> float32 [F, 3, size, size]: optional center crop to `crop_aspect` (W/H),
    bilinear (antialiased) resize to size x size (squashed, aspect not kept), /255, ImageNet normalisation.

    `droid()` is the V-JEPA 2-AC DROID preprocessing (SPEC section 8): 1280x720 -> 972x720 crop -> 256x256.
    Recorded in latent-cache headers, so a cache made with other preprocessing is refused.
    """

    size: int = 256
    crop_aspect: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"FramePreprocess.size must be a positive int, got {self.size!r}")
        if self.crop_aspect is not None and not (self.crop_aspect > 0 and math.isfinite(self.crop_aspect)):
            raise ValueError(f"FramePreprocess.crop_aspect must be None or > 0, got {self.crop_aspect!r}")

    @classmethod
    def droid(cls, size: int = 256) -> FramePreprocess:
        return cls(size=size, crop_aspect=1.35)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FramePreprocess:
        return cls(size=int(d["size"]), crop_aspect=d.get("crop_aspect"), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        if self.crop_aspect is not None:
            if w / h > self.crop_aspect:  # too wide: crop width (DROID 1280x720 -> 972x720)
                new_w = int(round(h * self.crop_aspect))
                left = (w - new_w) // 2
                x = x[..., :, left : left + new_w]
            elif w / h < self.crop_aspect:  # too tall: crop height
                new_h = int(round(w / self.crop_aspect))
                top = (h - new_h) // 2
                x = x[..., top : top + new_h, :]
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std


# ----------------------------------------------------------------------------------------------- writer


def _vector(x: Any, size: int, name: str) -> list[float] | None:
    if x is None:
        return None
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64).reshape(-1)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have {size} values, got shape {arr.shape}")
    return [float(v) for v in arr]


class EpisodeWriter:
    """Records one episode in our format, step by step; a crash leaves a readable prefix.

        with EpisodeWriter("runs/ep_0007", fps=4.0, camera="ext_left") as w:
            w.append(frame_rgb_uint8, state7, action7, timestamp=t)

    `append` writes the frame PNG atomically, then appends the step line to steps.jsonl and flushes it
    (`fsync=True` also forces it to disk: safer on power loss, slower). `close(encode_mp4=True)` packs the
    PNGs into frames.mp4 (lossy MPEG-4, ~10x smaller) and removes them.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float,
        camera: str = "",
        extra: dict[str, Any] | None = None,
        fsync: bool = False,
        overwrite: bool = False,
    ) -> None:
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self.path = Path(path)
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"episode folder {self.path} exists and is not empty (overwrite=False)")
            shutil.rmtree(self.path)
        (self.path / "frames").mkdir(parents=True, exist_ok=True)
        self.fps, self.camera, self.extra, self.fsync = float(fps), str(camera), dict(extra or {}), fsync
        self.num_steps = 0
        self._closed = False
        self._write_meta(complete=False, frames="png")
        self._steps = open(self.path / "steps.jsonl", "a", encoding="utf-8")

    def _write_meta(self, *, complete: bool, frames: str) -> None:
        meta = {
            "format": EPISODE_FORMAT,
            "version": EPISODE_FORMAT_VERSION,
            "fps": self.fps,
            "camera": self.camera,
            "frames": frames,
            "complete": complete,
            "state_convention": STATE_CONVENTION,
            "action_convention": ACTION_CONVENTION,
            "extra": self.extra,
        }
        if complete:
            meta["num_steps"] = self.num_steps
        atomic_write_bytes(self.path / "meta.json", json.dumps(meta, indent=1).encode())

    def append(
        self,
        frame: np.ndarray | torch.Tensor,
        state: Sequence[float] | np.ndarray | torch.Tensor,
        action: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        *,
        timestamp: float | None = None,
    ) -> int:
        """Add one step: frame uint8 [H, W, 3] RGB, state [7], commanded action [7] or None, time in s
        (default: step / fps). Returns the step index."""
        from PIL import Image

        if self._closed:
            raise RuntimeError(f"EpisodeWriter for {self.path} is closed")
        img = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"frame must be uint8 [H, W, 3] RGB, got {img.dtype} {img.shape}")
        line = {
            "i": self.num_steps,
            "t": float(self.num_steps / self.fps if timestamp is None else timestamp),
            "state": _vector(state, STATE_DIM, "state"),
            "action": _vector(action, ACTION_DIM, "action"),
        }
        target = self.path / "frames" / f"{self.num_steps:06d}.png"
        tmp = target.with_name(f".{target.name}.tmp")
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, target)
        self._steps.write(json.dumps(line) + "\n")
        self._steps.flush()
        if self.fsync:
            os.fsync(self._steps.fileno())
        self.num_steps += 1
        return self.num_steps - 1

    def close(self, *, encode_mp4: bool = False) -> Path:
        """Finish the episode (meta "complete": true); optionally pack the frames into frames.mp4."""
        if self._closed:
            return self.path
        self._steps.close()
        self._closed = True
        frames = "png"
        if encode_mp4 and self.num_steps:
            from PIL import Image

            from vjepa_fast.data.synthetic import write_video

            imgs = np.stack(
                [np.asarray(Image.open(self.path / "frames" / f"{i:06d}.png").convert("RGB")) for i in range(self.num_steps)]
            )
            tmp = self.path / f".frames.tmp-{os.getpid()}.mp4"
            write_video(tmp, imgs, fps=max(1, int(round(self.fps))))
            os.replace(tmp, self.path / "frames.mp4")
            frames = "mp4"
        self._write_meta(complete=True, frames=frames)
        if frames == "mp4":
            shutil.rmtree(self.path / "frames")
        return self.path

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- reader


def _read_pngs(folder: Path, indices: Sequence[int]) -> torch.Tensor:
    from PIL import Image

    out = []
    for i in indices:
        p = folder / f"{int(i):06d}.png"
        try:
            with Image.open(p) as im:
                out.append(torch.from_numpy(np.array(im.convert("RGB"), dtype=np.uint8)))
        except (OSError, ValueError) as e:
            raise EpisodeSkipped("unreadable", str(p), f"{type(e).__name__}: {e}") from e
    return torch.stack(out)


def read_episode(path: str | os.PathLike) -> RobotEpisode:
    """Read one episode folder of our format (complete, or the readable prefix of an interrupted one).

    Raises EpisodeSkipped: "missing" (no meta.json/steps.jsonl), "unreadable" (bad JSON, wrong format or
    version, frames missing), "bad_data" (states not 7-D finite), "too_short" (no step).
    """
    root = Path(path)
    key = str(root)
    meta_path, steps_path = root / "meta.json", root / "steps.jsonl"
    if not meta_path.is_file() or not steps_path.is_file():
        raise EpisodeSkipped("missing", key, "no meta.json or steps.jsonl")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise EpisodeSkipped("unreadable", key, f"meta.json: {e}") from e
    if meta.get("format") != EPISODE_FORMAT or meta.get("version") != EPISODE_FORMAT_VERSION:
        raise EpisodeSkipped(
            "unreadable", key, f"format {meta.get('format')!r} v{meta.get('version')!r}, expected {EPISODE_FORMAT} v1"
        )
    lines = steps_path.read_text(encoding="utf-8").split("\n")
    rows: list[dict[str, Any]] = []
    for n, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            rows.append(json.loads(text))
        except ValueError as e:
            if n >= len(lines) - 2:  # a torn last line from a crash mid-write: keep the prefix
                break
            raise EpisodeSkipped("unreadable", key, f"steps.jsonl line {n + 1}: {e}") from e
    mode = meta.get("frames", "png")
    video = root / "frames.mp4"
    if mode == "mp4":
        if not video.is_file():
            raise EpisodeSkipped("missing", key, "meta says frames.mp4 but it is missing")
        num_video = video_num_frames(video)
        rows = rows[:num_video]

        def reader(indices: Sequence[int]) -> torch.Tensor:
            return read_video_frames(video, indices)
    else:
        frames_dir = root / "frames"
        keep = 0
        for r in rows:  # a step counts only once its frame file exists (it is written first)
            if not (frames_dir / f"{int(r['i']):06d}.png").is_file():
                break
            keep += 1
        rows = rows[:keep]

        def reader(indices: Sequence[int]) -> torch.Tensor:
            return _read_pngs(frames_dir, indices)
    if not rows:
        raise EpisodeSkipped("too_short", key, "no complete step")
    if [int(r.get("i", -1)) for r in rows] != list(range(len(rows))):
        raise EpisodeSkipped("unreadable", key, "step indices are not 0, 1, 2, ...")
    try:
        states = check_states([r["state"] for r in rows], key)
        commanded = torch.tensor(
            [r["action"] if r.get("action") is not None else [math.nan] * ACTION_DIM for r in rows], dtype=torch.float64
        )
        times = torch.tensor([float(r["t"]) for r in rows], dtype=torch.float64)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, EpisodeSkipped):
            raise
        raise EpisodeSkipped("bad_data", key, f"{type(e).__name__}: {e}") from e
    if commanded.shape != (len(rows), ACTION_DIM):
        raise EpisodeSkipped("bad_data", key, f"actions must be {ACTION_DIM}-D")
    return RobotEpisode(
        key=key, states=states, frame_reader=reader, fps=float(meta.get("fps", 0.0)),
        commanded_actions=commanded, timestamps=times, source="episode",
    )


def find_episodes(root: str | os.PathLike) -> list[str]:
    """Episode folders (holding meta.json) under `root`, sorted; `root` itself if it is one; or the lines
    of a list file (first space-separated column, blank lines and # comments ignored)."""
    p = Path(root)
    if p.is_file():
        return read_path_list(p)
    if (p / "meta.json").is_file():
        return [str(p)]
    if not p.is_dir():
        raise FileNotFoundError(f"no episode folder or list file at {p}")
    return sorted(str(m.parent) for m in p.rglob("meta.json"))


# ----------------------------------------------------------------------------------------------- dataset


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


# ----------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class PlannerPreprocess(FramePreprocess):
    """The run-time (planner) preprocessing, `transforms.preprocess_image`: short side -> size*256/224, centre
    crop, ImageNet normalisation. A FramePreprocess so a latent cache records it (and refuses a mismatch):
    a predictor trained on latents made this way sees at training time what the planner feeds it."""

    crop_aspect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": "eval_resize_center_crop"}

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        from vjepa_fast.data.transforms import preprocess_frames

        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        return preprocess_frames(frames, self.size).permute(1, 0, 2, 3).contiguous()  # [F, 3, s, s]


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
        from vjepa_fast.data.droid import read_droid_episode

        return read_droid_episode(path)
    return read_episode(path)


def episode_fingerprint(paths: Sequence[str]) -> str:
    """sha256 of the episode paths, in order, with the size and modification time of the files that hold
    their states (meta.json + steps.jsonl, or trajectory.h5): a re-recorded or added episode changes it."""
    import hashlib

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
    box_hi, as robot/collect.py and robot/generate.py record it; the union over episodes), or None."""
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
