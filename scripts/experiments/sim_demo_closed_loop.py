#!/usr/bin/env python3
"""Closed-loop reaching on the embedded simulator: end-effector distance to the goal pose before and after
`--max-steps` MPC steps of `robot/run_mpc.py --sim --goal-offset ...`, for several world models.

    python scripts/experiments/sim_demo_closed_loop.py --trials 5 --max-steps 8 \\
        --model trained=robot/assets/sim_demo_world_model.safetensors --model random=random \\
        --out runs/closed_loop --markdown runs/closed_loop/table.md

Each trial is one fresh run_mpc process (its own simulator); goal offsets are drawn once from --seed
(uniform per axis in +-`--offset-max` m, at least `--offset-min` m long) and shared by all models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def offsets(n: int, seed: int, lo: float, hi: float) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        o = rng.uniform(-hi, hi, 3)
        if np.linalg.norm(o) >= lo:
            out.append(np.round(o, 3).tolist())
    return out


def run_trial(model: str, offset: list[float], log_dir: Path, max_steps: int, extra: list[str]) -> dict:
    args = [sys.executable, "robot/run_mpc.py", "--sim", "--goal-offset", *map(str, offset), "--max-steps",
            str(max_steps), "--log-dir", str(log_dir), *extra]
    if model == "random":
        args += ["--random-model", "tiny"]
    else:
        args += ["--predictor", model]
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    summary = json.loads((log_dir / "summary.json").read_text()) if (log_dir / "summary.json").is_file() else {}
    plans = [json.loads(x) for x in (log_dir / "mpc_log.jsonl").read_text().splitlines()
             if '"plan_seconds"' in x] if (log_dir / "mpc_log.jsonl").is_file() else []
    return {"rc": proc.returncode, "ok": summary.get("ok", False), "reason": summary.get("reason", proc.stderr[-300:]),
            "start": summary.get("start_ee_distance_to_goal"), "end": summary.get("final_ee_distance_to_goal"),
            "per_step": [p["ee_distance_to_goal"] for p in plans],
            "plan_s": float(np.mean([p["plan_seconds"] for p in plans])) if plans else None, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=FILE|random")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offset-min", type=float, default=0.06)
    p.add_argument("--offset-max", type=float, default=0.08)
    p.add_argument("--out", default="runs/closed_loop")
    p.add_argument("--markdown", default=None)
    p.add_argument("extra", nargs="*", help="after --: more run_mpc.py options (e.g. -- --samples 128)")
    a = p.parse_args(argv)
    models = [m.split("=", 1) for m in a.model]
    goals = offsets(a.trials, a.seed, a.offset_min, a.offset_max)
    out = Path(a.out)
    results: dict[str, list[dict]] = {}
    for name, model in models:
        results[name] = []
        for i, off in enumerate(goals):
            r = run_trial(model, off, out / f"{name}_{i}", a.max_steps, a.extra)
            r["offset"] = off
            results[name].append(r)
            print(f"{name} trial {i} offset {off}: {r['start']} -> {r['end']} (rc {r['rc']}, "
                  f"plan {r['plan_s']} s/step, {r['wall_s']:.0f} s)", flush=True)
    (out / "results.json").write_text(json.dumps({"offsets": goals, "max_steps": a.max_steps, "extra": a.extra,
                                                   "results": results}, indent=1))
    lines = ["| trial | goal offset (m) | " + " | ".join(f"{n}: start -> end (m)" for n, _ in models) + " |",
             "|---|---|" + "---|" * len(models)]
    for i, off in enumerate(goals):
        cells = []
        for n, _ in models:
            r = results[n][i]
            cells.append("FAILED: " + str(r["reason"])[:60] if r["end"] is None else
                         f"{r['start']:.3f} -> {r['end']:.3f}")
        lines.append(f"| {i} | {off} | " + " | ".join(cells) + " |")
    summ = []
    for n, _ in models:
        rs = [r for r in results[n] if r["end"] is not None]
        if rs:
            ratio = [r["end"] / r["start"] for r in rs]
            summ.append(f"- **{n}**: {sum(r['end'] < r['start'] for r in rs)}/{len(results[n])} trials closer at the "
                        f"end; mean distance {np.mean([r['start'] for r in rs]):.3f} -> "
                        f"{np.mean([r['end'] for r in rs]):.3f} m; median end/start {np.median(ratio):.2f}; "
                        f"{sum(r['end'] < 0.02 for r in rs)} within 2 cm; planning "
                        f"{np.mean([r['plan_s'] for r in rs]):.2f} s/step")
    text = "\n".join(lines + [""] + summ) + "\n"
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
