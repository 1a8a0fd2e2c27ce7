#!/usr/bin/env python3
"""Planner shootout: every planner (and, on the manipulation tasks, a distilled policy) on the same unseen goals
through `vjepa-fast sim-eval`, one folder per planner (resumable), then one table and one PNG.

    .venv/bin/python scripts/planner_shootout.py --task reach --goals 10 --out runs/shootout_reach \\
        --model robot/assets/sim_demo_world_model.safetensors
    .venv/bin/python scripts/planner_shootout.py --task grasp --goals 5 --out runs/shootout_grasp \\
        --model runs/manip/world_model.safetensors --policy runs/manip/distill/policy.safetensors

Writes OUT/shootout.md (success, final distance where the task has one, planning s/step, model evaluations per
decision) and OUT/shootout.png. Extra arguments after `--` go to every sim-eval call (e.g. `-- --max-steps 8`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjepa_fast.planning.planners import PLANNERS  # noqa: E402


def run(task: str, model: str, planner: str, goals: int, seed: int, out: Path, extra: list[str]) -> dict:
    from vjepa_fast.cli import main

    argv = ["sim-eval", "--task", task, "--goals", str(goals), "--seed", str(seed), "--out", str(out),
            "--method", f"{planner}={model}", "--planner", planner, *extra]
    if main(argv) != 0:
        raise SystemExit(f"shootout: sim-eval failed for {planner}: {' '.join(argv)}")
    return json.loads((out / "sim_eval.json").read_text())["summary"][0]


def policy_row(task: str, policy: str, goals: int, seed: int, out: Path, extra: list[str]) -> dict:
    from vjepa_fast.cli import main

    argv = ["sim-eval", "--task", task, "--goals", str(goals), "--seed", str(seed), "--out", str(out),
            "--method", f"policy=bc:{policy}", *extra]
    if main(argv) != 0:
        raise SystemExit(f"shootout: sim-eval failed for the policy: {' '.join(argv)}")
    return json.loads((out / "sim_eval.json").read_text())["summary"][0]


def report(rows: list[dict], task: str, goals: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist = task == "reach"
    head = "| planner | success | " + ("final distance median (cm) | " if dist else "") + \
        "planning s/step | model evaluations/step |"
    lines = [f"{task}: {goals} unseen goals, the same for every planner", "", head,
             "|" + "---|" * (5 if dist else 4)]
    for r in rows:
        evals = "-" if r.get("model_evals_per_step") is None else f"{r['model_evals_per_step']:.0f}"
        cells = [r["method"], f"{r['success']}/{r['trials']} ({100 * r['success_rate']:.0f}%)"]
        if dist:
            cells.append(f"{100 * r['final_median_m']:.1f}")
        cells += [f"{r['plan_s_per_step']:.3f}", evals]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "shootout.md").write_text("\n".join(lines) + "\n")
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [r["method"] for r in rows]
    a0.bar(names, [100 * r["success_rate"] for r in rows], color="tab:blue")
    a0.set_ylabel("success rate (%)")
    a0.set_ylim(0, 105)
    a1.bar(names, [r["plan_s_per_step"] for r in rows], color="tab:orange")
    a1.set_ylabel("planning s/step (incl. frame encoding)" if task != "reach" else "planning s/step")
    a1.set_yscale("log")
    for ax in (a0, a1):
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(f"planner shootout, {task}, {goals} unseen goals")
    fig.tight_layout()
    fig.savefig(out / "shootout.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", choices=("reach", "grasp", "push", "pick_place"))
    p.add_argument("--model", required=True, help="world model file (encoder + AC predictor)")
    p.add_argument("--planners", nargs="+", default=list(PLANNERS), choices=PLANNERS)
    p.add_argument("--policy", default="", help="a distilled policy file (manipulation tasks only)")
    p.add_argument("--goals", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.policy and a.task == "reach":
        p.error("--policy runs on the manipulation tasks only (sim-eval's bc: methods)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run(a.task, a.model, name, a.goals, a.seed, out / name, extra) for name in a.planners]
    if a.policy:
        rows.append(policy_row(a.task, a.policy, a.goals, a.seed, out / "policy", extra))
    report(rows, a.task, a.goals, out)
    print((out / "shootout.md").read_text())
    print(f"shootout: {out / 'shootout.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
