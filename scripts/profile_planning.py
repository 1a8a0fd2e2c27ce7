#!/usr/bin/env python3
"""Where a plan's time goes: torch.profiler over one cpu-small plan of Meta's CEM (the Meta-style reference
planner) and of ours, self CPU time grouped by kind of op, as a markdown table.

    .venv/bin/python scripts/profile_planning.py                        # the planners of bench_planning.py
    VJEPA_FAST_CPU_FALLBACK=1 .venv/bin/python scripts/profile_planning.py --out runs/profile_fallback.md

The problem and the planners are bench_planning.py's (`_problem`, `_planner`): Meta's `cem` at cpu-small sizes
(200 samples x 5 iterations, horizon 2, top-10) run the Meta way, and ours on the same problem. Each planner
plans once untimed (warm-up), then once under the profiler.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Op name -> kind, first match wins (aten op names as the profiler reports them).
KINDS = (
    ("linear (matmul + bias)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear",
                                "mkldnn", "onednn", "aten::_addmm_activation")),
    ("attention", ("scaled_dot_product", "flash_attention", "aten::_softmax", "aten::softmax", "aten::baddbmm")),
    ("layer norm", ("layer_norm",)),
    ("GELU / SiLU", ("gelu", "silu")),
    ("copies, cat, index", ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::index",
                            "aten::gather", "aten::repeat", "aten::stack", "aten::to", "aten::_to_copy",
                            "aten::empty", "aten::fill_", "aten::zero_", "aten::slice", "aten::select")),
    ("pose update (per sample in Meta's)", ("compose", "aten::linalg", "aten::cross", "aten::atan2", "aten::sin",
                                            "aten::cos", "aten::acos", "aten::asin", "aten::sqrt")),
    ("CEM (sample, top-k, refit)", ("vjepa_fast::cem", "aten::topk", "aten::sort", "aten::std", "aten::var",
                                    "aten::normal", "aten::randn", "philox")),
    ("element-wise (add, mul, ...)", ("aten::add", "aten::mul", "aten::sub", "aten::div", "aten::addcmul",
                                      "aten::abs", "aten::mean", "aten::sum", "aten::clamp", "aten::maximum",
                                      "aten::minimum", "aten::where", "aten::neg", "aten::pow", "aten::rsqrt")),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k.lower() in low for k in keys):
            return kind
    return "other"


def profile(impl: str, prob) -> tuple[float, dict[str, float], list[tuple[str, float]]]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from bench_planning import _planner

    pred, judge, z_obs, state, goal = prob
    planner = _planner(impl, pred, seed=3)
    planner.plan(z_obs, state, goal)  # warm-up
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        planner.plan(z_obs, state, goal)
        wall = time.perf_counter() - t0
    kinds: dict[str, float] = {}
    ops = []
    for ev in prof.key_averages():
        s = ev.self_cpu_time_total / 1e6
        kinds[kind_of(ev.key)] = kinds.get(kind_of(ev.key), 0.0) + s
        ops.append((ev.key, s))
    ops.sort(key=lambda kv: -kv[1])
    return wall, kinds, ops[:8]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", action="append", default=None,
                    help="bench_planning.py planner(s) to profile (repeatable; default: reference and "
                         "ours_efficient)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = ap.parse_args(argv)

    import torch

    from bench_planning import cpu_small_problem
    from vjepa_fast.precision import cpu_summary

    impls = args.impl or ["reference", "ours_efficient"]
    prob = cpu_small_problem()
    res = {impl: profile(impl, prob) for impl in impls}
    all_kinds = [k for k, _ in KINDS] + ["other"]
    info = ", ".join(f"{k} {v}" for k, v in cpu_summary().items())
    lines = [f"CPU: {info}, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| kind of op (self CPU time) | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
    for k in all_kinds:
        cells = []
        for impl in impls:
            wall, kinds, _ = res[impl]
            s = kinds.get(k, 0.0)
            total = sum(kinds.values())
            cells.append(f"{s:.2f} s ({100 * s / total:.0f}%)" if s else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    walls = " | ".join(f"**{res[i][0]:.2f} s**" for i in impls)
    lines.append(f"| **wall time of the plan (profiled)** | {walls} |")
    lines.append("")
    for impl in impls:
        lines.append(f"{impl}, top ops: " + ", ".join(f"{n} {s:.2f} s" for n, s in res[impl][2]))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
