"""Our on-disk robot episode format: `EpisodeWriter`, `read_episode` and `find_episodes`.

Version 1, one folder per episode, written by `EpisodeWriter` (robot/run_mpc.py and the simulator log through
it):

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
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa_fast.data.robot_episode import (
    EpisodeSkipped, RobotEpisode, check_states, read_video_frames, video_num_frames
)
from vjepa_fast.fileio import atomic_write_bytes, read_path_list
from vjepa_fast.robotics.pose import ACTION_DIM, STATE_DIM

__all__ = [
    "ACTION_CONVENTION",
    "EPISODE_FORMAT",
    "EPISODE_FORMAT_VERSION",
    "STATE_CONVENTION",
    "EpisodeWriter",
    "find_episodes",
    "read_episode",
]

EPISODE_FORMAT = "vjepa_fast.episode"
EPISODE_FORMAT_VERSION = 1
STATE_CONVENTION = "xyz_m, euler_xyz_extrinsic_rad, gripper_0open_1closed"
ACTION_CONVENTION = "delta_xyz_m, euler_xyz_extrinsic_rad(R_next R^T), delta_gripper"


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
