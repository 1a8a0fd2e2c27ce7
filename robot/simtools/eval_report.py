"""The reports of the simulator evaluations: summary rows and sim_eval.md / .json / .png of a reach evaluation
(robot/simtools/sim_eval.py: `summarise`, `write_report`) and of a manipulation one (robot/simtools/task_eval.py:
`summarise_tasks`, `write_task_report`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np


if TYPE_CHECKING:
    from robot.simtools.sim_eval import EvalConfig, Trial
    from robot.simtools.task_eval import TaskEvalConfig, TaskTrial

__all__ = ["summarise", "write_report", "summarise_tasks", "write_task_report", "run_and_report"]


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(trials: list[Trial], methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    for m in methods:
        ts = [t for t in trials if t.method == m]
        if not ts:
            continue
        final = np.array([t.final_distance if t.final_distance is not None else np.nan for t in ts])
        rows.append({"method": m, "trials": len(ts), "success": int(sum(t.success for t in ts)),
                     "success_rate": float(np.mean([t.success for t in ts])),
                     "start_mean_m": float(np.mean([t.start_distance for t in ts])),
                     "final_median_m": float(np.nanmedian(final)), "final_q25_m": float(np.nanquantile(final, 0.25)),
                     "final_q75_m": float(np.nanquantile(final, 0.75)), "final_max_m": float(np.nanmax(final)),
                     "plan_s_per_step": float(np.mean([t.plan_seconds_per_step for t in ts])),
                     "model_evals_per_step": _mean_or_none([t.model_evals_per_step for t in ts]),
                     "failed_runs": int(sum(not t.ok for t in ts))})
    return rows


def write_report(trials: list[Trial], methods: list[str], cfg: EvalConfig, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarise(trials, methods)
    lines = [f"success = measured end-effector distance <= {100 * cfg.success_m:.0f} cm after <= {cfg.max_steps} "
             f"MPC steps; starts {100 * cfg.start_min:.0f}-{100 * cfg.start_max:.0f} cm from the goal",
             f"planner: {cfg.planner}" + (f" {dict(cfg.planner_options)}" if cfg.planner_options else ""),
             "", "| method | success | final distance median [q25, q75] (cm) | worst (cm) | planning s/step | "
             "model evaluations/step |", "|---|---|---|---|---|---|"]
    for r in rows:
        evals = "-" if r["model_evals_per_step"] is None else f"{r['model_evals_per_step']:.0f}"
        lines.append(f"| {r['method']} | {r['success']}/{r['trials']} ({100 * r['success_rate']:.0f}%) | "
                     f"{100 * r['final_median_m']:.1f} [{100 * r['final_q25_m']:.1f}, {100 * r['final_q75_m']:.1f}] | "
                     f"{100 * r['final_max_m']:.1f} | {r['plan_s_per_step']:.2f} | {evals} |")
    (out / "sim_eval.md").write_text("\n".join(lines) + "\n")
    (out / "sim_eval.json").write_text(json.dumps({"config": asdict(cfg), "summary": rows}, indent=1))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    data = [[100 * t.final_distance for t in trials if t.method == r["method"] and t.final_distance is not None]
            for r in rows]
    ax0.boxplot(data, tick_labels=[r["method"] for r in rows], showfliers=True)
    for i, d in enumerate(data, 1):
        ax0.scatter(np.full(len(d), i) + np.random.default_rng(i).uniform(-0.12, 0.12, len(d)), d, s=10, alpha=0.6)
    ax0.axhline(100 * cfg.success_m, color="green", ls="--", lw=1, label="success")
    ax0.axhline(100 * np.mean([t.start_distance for t in trials]), color="gray", ls=":", lw=1, label="mean start")
    ax0.set_ylabel("final end-effector distance to goal (cm)")
    ax0.tick_params(axis="x", labelrotation=20)
    ax1.tick_params(axis="x", labelrotation=20)
    ax0.legend(fontsize=8)
    ax1.bar([r["method"] for r in rows], [100 * r["success_rate"] for r in rows], color="tab:blue")
    ax1.set_ylabel(f"success rate (%), <= {100 * cfg.success_m:.0f} cm")
    ax1.set_ylim(0, 100)
    fig.suptitle(f"closed-loop reaching on the simulator, {cfg.goals} unseen goals")
    fig.tight_layout()
    png = out / "sim_eval.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return {"table": out / "sim_eval.md", "json": out / "sim_eval.json", "png": png}


def summarise_tasks(trials: list[TaskTrial], methods: list[str]) -> list[dict[str, Any]]:
    """One row per method of a manipulation evaluation (robot/simtools/task_eval.py)."""
    rows = []
    for m in methods:
        ts = [t for t in trials if t.method == m]
        if not ts:
            continue
        rows.append({"method": m, "task": ts[0].task, "trials": len(ts), "success": int(sum(t.success for t in ts)),
                     "success_rate": float(np.mean([t.success for t in ts])),
                     "plan_s_per_step": float(np.nanmean([t.plan_seconds_per_step for t in ts])),
                     "steps_mean": float(np.mean([t.steps for t in ts])),
                     "model_evals_per_step": _mean_or_none([t.model_evals_per_step for t in ts]),
                     "oracle_layout_success": int(sum(t.oracle_success for t in ts))})
    return rows


def write_task_report(trials: list[TaskTrial], methods: list[str], cfg: TaskEvalConfig, out: Path) -> dict[str, Path]:
    """sim_eval.md / .json / .png of a manipulation evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarise_tasks(trials, methods)
    lines = [f"task {cfg.task}: {cfg.goals} unseen layouts (seeds {cfg.seed}..{cfg.seed + cfg.goals - 1}), "
             f"<= {cfg.steps} steps, sub-goals {', '.join(cfg.phases)} (budgets {cfg.budgets}); "
             f"planner {cfg.planner}" + (f" {dict(cfg.planner_options)}" if cfg.planner_options else ""), "",
             "| method | success | mean steps | planning s/step | model evaluations/step |", "|---|---|---|---|---|"]
    for r in rows:
        evals = "-" if r.get("model_evals_per_step") is None else f"{r['model_evals_per_step']:.0f}"
        lines.append(f"| {r['method']} | {r['success']}/{r['trials']} ({100 * r['success_rate']:.0f}%) | "
                     f"{r['steps_mean']:.1f} | {r['plan_s_per_step']:.3f} | {evals} |")
    (out / "sim_eval.md").write_text("\n".join(lines) + "\n")
    (out / "sim_eval.json").write_text(json.dumps({"config": asdict(cfg), "summary": rows}, indent=1))
    fig, ax = plt.subplots(figsize=(1.6 * max(3, len(rows)) + 1, 3.6))
    ax.bar([r["method"] for r in rows], [100 * r["success_rate"] for r in rows], color="tab:blue")
    for j, r in enumerate(rows):
        ax.text(j, 100 * r["success_rate"] + 2, f"{r['success']}/{r['trials']}", ha="center", fontsize=9)
    ax.set_ylim(0, 110)
    ax.set_ylabel("success rate (%)")
    ax.set_title(f"{cfg.task}: closed loop on {cfg.goals} unseen layouts")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    png = out / "sim_eval.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return {"table": out / "sim_eval.md", "json": out / "sim_eval.json", "png": png}


def run_and_report(evaluate: Any, report: Any, methods: dict[str, Any], cfg: Any, out: Path, *,
                   prog: str = "sim-eval", **evaluate_kwargs: Any) -> int:
    """The last step of sim-eval (reach or a task) and energy-ceiling: run the trials not done yet
    (`evaluate(methods, cfg, out, **evaluate_kwargs)`), write and print the report; 130 on Ctrl-C, the finished
    trials kept for a resume. `prog` names the command in what it prints."""
    import sys

    try:
        trials = evaluate(methods, cfg, out, **evaluate_kwargs)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted: finished trials are in {out / 'trials.jsonl'}; run again to resume",
              file=sys.stderr)
        return 130
    files = report(trials, list(methods), cfg, out)
    print(files["table"].read_text())
    print(f"{prog}: {files['png']}")
    return 0
