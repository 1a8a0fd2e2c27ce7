"""Attentive probe on simulator episodes: the direction of the end-effector's move between two frames, read by a
probe on the sim recipe's pretrained encoder vs a random encoder of the same preset (benchmarks/RESULTS.md).

    python robot/simtools/generate.py --out data/sim_probe/episodes --episodes 200 --steps 8 --seed 7 --workers 2
    python scripts/experiments/probe_sim_direction.py data/sim_probe/episodes --out runs/probe_sim

Each transition (frame i, frame i+1) of an episode becomes a 2-frame mp4 (one tubelet); its label is the axis and
sign of the largest end-effector displacement (+x, -x, +y, -y, +z, -z), kept only when that axis moves at least
1.5x more than the second one (an unambiguous label). Episodes are split 75/25 into train/val (no episode in
both). Then `vjepa-fast probe train` runs once per encoder with the same probe, data and seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vjepa_fast.data.episode_format import find_episodes, read_episode  # noqa: E402
from vjepa_fast.data.synthetic import write_video  # noqa: E402

NAMES = ["+x", "-x", "+y", "-y", "+z", "-z"]


def write_clips(episodes: list[str], out: Path, val_fraction: float = 0.25, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(episodes))
    n_val = max(1, int(round(val_fraction * len(episodes))))
    split = {episodes[i]: ("val" if r < n_val else "train") for r, i in enumerate(order)}
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    for e, ep_path in enumerate(episodes):
        ep = read_episode(ep_path)
        xyz = ep.states[:, :3].numpy()
        frames = ep.frames(list(range(ep.num_frames))).numpy()
        for i in range(ep.num_frames - 1):
            d = xyz[i + 1] - xyz[i]
            a = np.sort(np.abs(d))
            if a[-1] < 1.5 * a[-2] or a[-1] < 1e-3:
                continue
            axis = int(np.argmax(np.abs(d)))
            label = 2 * axis + int(d[axis] < 0)
            s = split[ep_path]
            path = out / s / f"ep{e:04d}_{i:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, frames[i : i + 2], fps=4)
            rows[s].append((str(path.relative_to(out)), label))
    for s, r in rows.items():
        with open(out / f"{s}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows(r)
    return {s: len(r) for s, r in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", help="folder of generated episodes (robot/simtools/generate.py)")
    ap.add_argument("--out", default="runs/probe_sim")
    ap.add_argument("--encoder", action="append", default=None, metavar="NAME=SPEC",
                    help="default: pretrained=robot/assets/sim_demo_world_model.safetensors and random=random:tiny")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    out = Path(args.out)
    eps = find_episodes(args.episodes)
    if not eps:
        raise SystemExit(f"error: no episode under {args.episodes}")
    counts = write_clips(eps, out / "clips")
    print(f"{len(eps)} episodes -> {counts['train']} train / {counts['val']} val transitions")
    encoders = args.encoder or ["pretrained=robot/assets/sim_demo_world_model.safetensors", "random=random:tiny"]
    from vjepa_fast.probes.run import train_probe
    from vjepa_fast.probes.config import ProbeConfig

    results = {}
    for item in encoders:
        name, _, spec = item.partition("=")
        cfg = ProbeConfig.synthetic_tiny(**{
            "encoder": spec, "out_dir": str(out / name), "data.train_csv": str(out / "clips" / "train.csv"),
            "data.val_csv": str(out / "clips" / "val.csv"), "data.class_names": NAMES, "data.frames_per_clip": 2,
            "epochs": args.epochs, "progress": False})
        m = train_probe(cfg)["metrics"]
        results[name] = {"encoder": spec, "top1": m["top1"], "top5": m["top5"], "videos": m["videos"],
                         "chance_top1": m["chance_top1"]}
        print(f"{name} ({spec}): top-1 {100 * m['top1']:.1f}% on {m['videos']} held-out transitions "
              f"(majority class {100 * m['chance_top1']:.1f}%)")
    (out / "summary.json").write_text(json.dumps({"counts": counts, "results": results}, indent=1))


if __name__ == "__main__":
    main()
