"""A labelled synthetic video set for probes: a bright square moving in one of 4 directions (the label) over a
smooth random background, written as real MPEG-4 files + `train.csv` / `val.csv` (`path,label`).

Unlike `vjepa_fast.data.synthetic` (squares that bounce off the borders, so a clip can show both directions),
the start is drawn so the square stays inside the frame for the whole video: the label is the motion of every
frame pair. `python -m vjepa_fast.probes.synthetic OUT` writes the set `configs/probe_synthetic_tiny.toml` reads.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from vjepa_fast.data.synthetic import write_video

__all__ = ["DIRECTION_NAMES", "write_direction_videos", "write_direction_set"]

DIRECTION_NAMES = ("right", "left", "down", "up")
_STEP = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx) per direction


def write_direction_videos(folder: str | Path, num_videos: int, *, num_frames: int = 8, size: int = 64,
                           square: int = 12, speed: int = 3, seed: int = 0) -> list[tuple[str, int]]:
    """Writes `num_videos` mp4 files into `folder` (labels balanced: video i has direction i % 4); returns
    [(path, label)]."""
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    travel = speed * (num_frames - 1)
    if travel + square > size:
        raise ValueError(f"a square of {square} px moving {travel} px does not fit in {size} px")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = []
    for i in range(num_videos):
        label = i % 4
        dy, dx = _STEP[label]
        phase = rng.uniform(0, 2 * math.pi, 3)
        bg = np.stack([70 + 35 * np.sin(xx / 6 + phase[c]) * np.cos(yy / 8 + phase[c]) for c in range(3)], -1)
        color = rng.integers(170, 256, 3)
        # Start so that start + d * travel stays in [0, size - square] on the moving axis.
        lo = [travel if d < 0 else 0 for d in (dy, dx)]
        hi = [size - square - (travel if d > 0 else 0) for d in (dy, dx)]
        y0, x0 = (int(rng.integers(a, b + 1)) for a, b in zip(lo, hi))
        frames = np.repeat(bg[None].astype(np.uint8), num_frames, axis=0)
        for t in range(num_frames):
            y, x = y0 + dy * speed * t, x0 + dx * speed * t
            frames[t, y : y + square, x : x + square] = color
        path = folder / f"video_{i:04d}.mp4"
        write_video(path, frames, fps=8)
        out.append((str(path), label))
    return out


def write_direction_set(root: str | Path, num_train: int = 192, num_val: int = 96, **kwargs) -> tuple[Path, Path]:
    """`root/train.csv` + `root/val.csv` (paths relative to root) over videos in root/train, root/val; the two
    splits use different seeds. Returns the two CSV paths."""
    root = Path(root)
    csvs = []
    base = kwargs.pop("seed", 0)
    for split, n, seed in (("train", num_train, 0), ("val", num_val, 1)):
        rows = write_direction_videos(root / split, n, seed=seed + 1000 * base, **kwargs)
        path = root / f"{split}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows((str(Path(p).relative_to(root)), label) for p, label in rows)
        csvs.append(path)
    return csvs[0], csvs[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="data/probe_synthetic", help="folder (default data/probe_synthetic)")
    ap.add_argument("--train", type=int, default=192, help="training videos (default 192)")
    ap.add_argument("--val", type=int, default=96, help="validation videos (default 96)")
    args = ap.parse_args()
    train, val = write_direction_set(args.out, args.train, args.val)
    print(f"wrote {train} and {val}")


if __name__ == "__main__":
    main()
