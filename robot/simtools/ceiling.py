#!/usr/bin/env python3
"""Diagnostic (b), the perfect-dynamics ceiling: our CEM planner and latent energy with the SIMULATOR ITSELF as
the world model. What closed-loop success the energy allows when prediction is perfect.

    python robot/simtools/ceiling.py --goals 20 --encoder shipped=robot/assets/sim_demo_world_model.safetensors \\
        --encoder random=random:tiny --out runs/ceiling
    (the same through `vjepa-fast energy-ceiling ...`)

Each candidate action sequence of every CEM iteration is executed on the kinematic arm of robot/simtools/generate.py
(franky-sim's own IK, the controller's straight 2 mm commands, the safety layer's step bound and workspace
clamp), rendered by the sim camera's renderer (0 px from the live frame for the same joint state), encoded as
the planner encodes a camera frame, and scored with the planner's energy (mean L1 to the goal latent); then
the arm is put back. The plan's first action is executed the same way and the loop goes on, as robot/mpc.py's
MPC loop does (warm start by shifting the last plan). A move the arm cannot make (out of reach with the hand
down) leaves it where it was. Goals and starts are sim-eval's (`robot/simtools/sim_eval.py`, the same seeds), success
is the same: the end effector within 3 cm of the goal after <= 10 steps. The planner settings are sim-eval's.

If an encoder's ceiling is low, no predictor trained on its latents can do better: the energy landscape (camera
+ encoder) is the limit, not the predictor. Outputs in --out: `ceiling.md` (table), `ceiling.json`,
`ceiling.png` (distance to the goal per MPC step, per encoder), `trials.jsonl` (resumable, one line per trial).
About 8 s per MPC step on one core (64 samples x 3 iterations: ~200 renders of 37 ms); `--workers` runs
goals in parallel processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

_LOG = logging.getLogger("ceiling")


@dataclass
class CeilingTrial:
    encoder: str
    goal_index: int
    goal_xyz: list[float]
    start_xyz: list[float]
    start_distance: float
    final_distance: float
    success: bool
    steps: int
    seconds: float
    distances: list[float] = field(default_factory=list)  # after each step (the start first)
    energies: list[float] = field(default_factory=list)  # latent L1 to the goal of the frame after each step
    unreachable_candidates: int = 0


class FrameEncoder:
    """Camera frames (uint8 [H, W, 3]) -> layer-normed latents [B, N, D], exactly as the planner encodes them
    (`WorldModel.encode_image_files`: eval preprocessing, each frame a 2-frame clip, layer norm without affine)."""

    def __init__(self, encoder: Any) -> None:
        import torch

        from vjepa_fast.planning.world_model import TARGET_LN_EPS

        self.encoder = encoder.eval()
        img = encoder.config.img_size
        self.size = img if isinstance(img, int) else int(img[0])
        self.eps = TARGET_LN_EPS
        with torch.inference_mode():
            z = self(np.zeros((self.size, self.size, 3), dtype=np.uint8)[None])
        self.latent_shape = tuple(z.shape[1:])

    def __call__(self, frames: Any) -> Any:
        import torch
        import torch.nn.functional as F

        from vjepa_fast.data.transforms import preprocess_image

        with torch.inference_mode():
            batch = torch.stack([preprocess_image(np.asarray(f), self.size) for f in frames])
            z = self.encoder(batch)
            return F.layer_norm(z.float(), (z.shape[-1],), eps=self.eps)


class SimDynamics:
    """A `PlanningModel` whose rollout is the simulator: each candidate sequence is executed on the kinematic
    arm from its current joint state (through the safety layer's `safe_target`), rendered, encoded and undone."""

    def __init__(self, scene: Any, encode: FrameEncoder, safety: Any) -> None:
        self.scene, self.encode, self.safety = scene, encode, safety
        self.latent_shape = encode.latent_shape
        self.unreachable = 0

    def execute(self, action: np.ndarray) -> bool:
        """One MPC action [7] (dxyz, drot, gripper) from the commanded position; False if the arm could not
        make the move (it then stays)."""
        from robot.safety import safe_target

        target, _ = safe_target(self.scene.arm.commanded, np.r_[action[:6], 0.0], self.safety)
        return self.scene.arm.move_to(target)

    def rollout(self, z0: Any, state: Any, actions: Any) -> Any:
        import torch

        from vjepa_fast.planning.world_model import check_rollout_inputs

        check_rollout_inputs(self.latent_shape, z0, state, actions)
        if actions.shape[0] != 1:
            raise ValueError(f"the simulator plans one problem at a time, got {actions.shape[0]}")
        arm = self.scene.arm
        q0, c0 = arm.q.copy(), arm.commanded.copy()
        acts = actions[0].double().cpu().numpy()  # [S, H, 7]
        frames = []
        for seq in acts:
            for a in seq:
                if not self.execute(a):
                    self.unreachable += 1
                    break
            frames.append(self.scene.render())
            arm.q, arm.commanded = q0.copy(), c0.copy()
        return self.encode(frames).unsqueeze(0).to(torch.float32)


@dataclass(frozen=True)
class CeilingJob:
    name: str
    spec: str
    index: int
    eval_cfg: dict[str, Any]
    camera: str


def run_trial(job: CeilingJob, scene: Any = None, encoder: Any = None) -> CeilingTrial:
    """One goal with one encoder: goal frame, start, up to max_steps perfect-dynamics MPC steps."""
    import torch

    from robot.simtools.generate import SimScene
    from robot.simtools.sim_eval import EvalConfig, draw_goal, eval_safety
    from vjepa_fast.diagnostics import encoder_from_spec
    from vjepa_fast.planning import CEMPlanner, PlannerConfig, shift_plan

    cfg = EvalConfig(**job.eval_cfg)
    scene = scene or SimScene(job.camera or cfg.camera or "front_right", 256)
    enc = FrameEncoder(encoder if encoder is not None else encoder_from_spec(f"{job.name}={job.spec}")[1])
    safety = eval_safety(cfg)  # sim-eval's: the step bound, targets clamped to the evaluation box + 1 cm
    model = SimDynamics(scene, enc, safety)
    planner = CEMPlanner(model, PlannerConfig(num_samples=cfg.samples, topk=cfg.topk, iterations=cfg.iterations,
                                              horizon=cfg.horizon, max_norm=cfg.max_step, bound="ball",
                                              seed=job.index, dtype="float32"))
    arm = scene.arm
    arm.reset()
    home = arm.pose()[:3, 3].copy()
    goal, start = draw_goal(cfg, home, job.index)
    t0 = time.perf_counter()
    if not arm.move_to(goal):
        raise RuntimeError(f"goal {job.index} {np.round(goal, 3).tolist()} is out of the arm's reach")
    z_goal = enc([scene.render()])
    if not arm.move_to(start):
        raise RuntimeError(f"start of goal {job.index} {np.round(start, 3).tolist()} is out of the arm's reach")
    dist = [float(np.linalg.norm(arm.pose()[:3, 3] - goal))]
    z = enc([scene.render()])
    energies = [float((z - z_goal).abs().mean())]
    warm = None
    for _ in range(cfg.max_steps):
        state = torch.as_tensor(scene.state(), dtype=torch.float32)[None]
        res = planner.plan(z, state, z_goal, init_mean=warm)
        warm = shift_plan(res.mean)
        if not model.execute(res.actions[0, 0].double().numpy()):
            model.unreachable += 1
        z = enc([scene.render()])
        dist.append(float(np.linalg.norm(arm.pose()[:3, 3] - goal)))
        energies.append(float((z - z_goal).abs().mean()))
    return CeilingTrial(encoder=job.name, goal_index=job.index, goal_xyz=goal.tolist(), start_xyz=start.tolist(),
                        start_distance=dist[0], final_distance=dist[-1], success=dist[-1] <= cfg.success_m,
                        steps=cfg.max_steps, seconds=round(time.perf_counter() - t0, 1), distances=dist,
                        energies=energies, unreachable_candidates=model.unreachable)


_SCENE: Any = None
_ENCODERS: dict[str, Any] = {}


def _worker_init(camera: str, threads: int) -> None:
    global _SCENE
    import torch

    from robot.simtools.generate import SimScene

    torch.set_num_threads(threads)
    _SCENE = SimScene(camera, 256)


def _worker_trial(job: CeilingJob) -> dict[str, Any]:
    from vjepa_fast.diagnostics import encoder_from_spec

    if job.name not in _ENCODERS:
        _ENCODERS[job.name] = encoder_from_spec(f"{job.name}={job.spec}")[1]
    return asdict(run_trial(job, _SCENE, _ENCODERS[job.name]))


def evaluate(encoders: dict[str, str], eval_cfg: Any, out_dir: str | Path, *, workers: int = 1,
             progress: bool = True) -> list[CeilingTrial]:
    """Every (encoder, goal) trial not yet in out/trials.jsonl, over `workers` processes; returns all trials."""
    from robot.sim import DEFAULT_CAMERA

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = [CeilingTrial(**json.loads(x)) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    have = {(t.encoder, t.goal_index) for t in done}
    camera = eval_cfg.camera or DEFAULT_CAMERA
    jobs = [CeilingJob(n, s, i, asdict(eval_cfg), camera) for n, s in encoders.items()
            for i in range(eval_cfg.goals) if (n, i) not in have]
    if not jobs:
        return done
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(encoders) * eval_cfg.goals, initial=len(done), desc="ceiling", unit="trial")

    def record(t: dict[str, Any]) -> None:
        trial = CeilingTrial(**t)
        done.append(trial)
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(t) + "\n")
        _LOG.info("%s goal %d: %.3f -> %.3f m (%s)", trial.encoder, trial.goal_index, trial.start_distance,
                  trial.final_distance, "success" if trial.success else "miss")
        if bar is not None:
            bar.update(1)

    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    try:
        if workers <= 1:
            _worker_init(camera, threads)
            for job in jobs:
                record(_worker_trial(job))
        else:
            with mp.get_context("spawn").Pool(workers, _worker_init, (camera, threads)) as pool:
                for t in pool.imap_unordered(_worker_trial, jobs):
                    record(t)
    finally:
        if bar is not None:
            bar.close()
    return done


def write_report(trials: list[CeilingTrial], names: list[str], eval_cfg: Any, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for n in names:
        ts = sorted((t for t in trials if t.encoder == n), key=lambda t: t.goal_index)
        if not ts:
            continue
        final = np.array([t.final_distance for t in ts])
        rows.append({"encoder": n, "trials": len(ts), "success": int(sum(t.success for t in ts)),
                     "success_rate": float(np.mean([t.success for t in ts])),
                     "final_median_m": float(np.median(final)), "final_q25_m": float(np.quantile(final, 0.25)),
                     "final_q75_m": float(np.quantile(final, 0.75)), "final_max_m": float(final.max()),
                     "failed_goals": [t.goal_index for t in ts if not t.success]})
    lines = [f"perfect-dynamics ceiling: CEM ({eval_cfg.samples} samples x {eval_cfg.iterations} iterations, horizon "
             f"{eval_cfg.horizon}) with the simulator as the model; success = end effector <= "
             f"{100 * eval_cfg.success_m:.0f} cm from the goal after {eval_cfg.max_steps} steps", "",
             "| encoder (energy) | success | final distance median [q25, q75] (cm) | worst (cm) | missed goals |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['encoder']} | {r['success']}/{r['trials']} ({100 * r['success_rate']:.0f}%) | "
                     f"{100 * r['final_median_m']:.1f} [{100 * r['final_q25_m']:.1f}, {100 * r['final_q75_m']:.1f}] | "
                     f"{100 * r['final_max_m']:.1f} | {r['failed_goals']} |")
    (out / "ceiling.md").write_text("\n".join(lines) + "\n")
    (out / "ceiling.json").write_text(json.dumps({"config": asdict(eval_cfg), "summary": rows}, indent=1))
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.8), squeeze=False)
    for ax, r in zip(axes[0], rows):
        for t in (t for t in trials if t.encoder == r["encoder"]):
            ax.plot(100 * np.asarray(t.distances), color="tab:green" if t.success else "tab:red", alpha=0.6, lw=1)
        ax.axhline(100 * eval_cfg.success_m, color="k", ls="--", lw=1)
        ax.set_title(f"{r['encoder']}: {r['success']}/{r['trials']}")
        ax.set_xlabel("MPC step")
        ax.set_ylabel("end-effector distance to goal (cm)")
    fig.suptitle("perfect-dynamics ceiling (simulator as the model, latent L1 energy)")
    fig.tight_layout()
    png = out / "ceiling.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return {"table": out / "ceiling.md", "json": out / "ceiling.json", "png": png}


def build_parser() -> argparse.ArgumentParser:
    from robot.simtools.sim_eval import EvalConfig

    d = EvalConfig()
    p = argparse.ArgumentParser(prog="energy-ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", action="append", default=[], metavar="NAME=SPEC",
                   help="the energy's encoder: NAME=FILE (.safetensors with an encoder, or Meta .pt) or "
                        "NAME=random:PRESET[@IMG]; repeatable")
    p.add_argument("--out", default="runs/ceiling", help="output folder (resumes the trials already in it)")
    p.add_argument("--goals", type=int, default=d.goals)
    p.add_argument("--seed", type=int, default=d.seed, help="goal i is drawn from (seed, i), as in sim-eval")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--samples", type=int, default=d.samples)
    p.add_argument("--iterations", type=int, default=d.iterations)
    p.add_argument("--horizon", type=int, default=d.horizon)
    p.add_argument("--sim-camera", default="", metavar="NAME", help="scene camera (default robot.sim.DEFAULT_CAMERA)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (goals)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from robot.simtools.sim_eval import EvalConfig

    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _LOG.setLevel(logging.INFO)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        if not a.encoder:
            raise ValueError("give at least one --encoder NAME=SPEC")
        encoders: dict[str, str] = {}
        for item in a.encoder:
            from vjepa_fast.diagnostics import encoder_from_spec

            name, _, spec = item.partition("=")
            encoder_from_spec(item)  # fails here, with the argument named, rather than in a worker
            if name in encoders:
                raise ValueError(f"--encoder {name} given twice")
            encoders[name] = spec
        if a.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {a.workers}")
        cfg = EvalConfig(goals=a.goals, seed=a.seed, max_steps=a.max_steps, samples=a.samples,
                         iterations=a.iterations, horizon=a.horizon, camera=a.sim_camera)
        if cfg.camera:
            from robot.sim import check_camera

            check_camera(cfg.camera)
    except ValueError as exc:
        print(f"energy-ceiling: error: {exc}", file=sys.stderr)
        return 2
    from robot.simtools.eval_report import run_and_report

    return run_and_report(evaluate, write_report, encoders, cfg, Path(a.out), prog="energy-ceiling",
                          workers=a.workers)


if __name__ == "__main__":
    sys.exit(main())
