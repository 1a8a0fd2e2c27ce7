"""An amortised policy distilled from the planner's own decisions (DAgger-style, in the world model's latents).

    vjepa-fast distill --world-model runs/manip/world_model.safetensors --cache runs/manip/ac/latent_cache \\
        --out runs/manip/distill --planner cem --samples 64 --iterations 4

Problems are drawn from a latent cache of the world model's encoder (`train-ac` builds one): the latent and state
of frame t, and the latent of frame t + k (k in 1..max_goal_offset) as the goal. Round 0 labels them with the
planner's first action (one batched `plan` call per chunk: many problems at once) and fits the policy head to it.
Each DAgger round then lets the current policy act on fresh problems for `rollout_steps` steps inside the world
model (next latent = the AC predictor's prediction after the policy's action, next state = the state composed
with it), labels every latent the policy visited with the planner, adds them to the data and fits again: the
policy learns what the planner would do in the situations the policy itself gets into.

The head is the behaviour-cloning head (`train.bc.GoalBCHead`: current latent, goal latent, state -> dxyz and
gripper change), saved in the same file format, so the result runs wherever a BC policy does: alone, one
forward per decision (`sim-eval --task T --method NAME=bc:OUT/policy.safetensors`), or as CEM's initial mean
(`PolicyWarmStart`). `metrics.json` records, on held-out problems, how far the policy's actions are from the
planner's, the world model's energy of each (policy vs planner vs doing nothing), and the seconds per decision of
each at batch 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vjepa_fast.train.bc import XYZ_SCALE, BCConfig, GoalBCHead, _batch, save_bc_policy

_LOG = logging.getLogger(__name__)


def _problems(cache: Any, episodes: list[int], rng: np.random.Generator, n: int, max_goal_offset: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n (z_obs [n, N, D], z_goal [n, N, D], state [n, 7]) from the cache: frame t and a frame 1..k later
    (behaviour cloning's sampler, train.bc, without its action targets)."""
    return _batch(cache, episodes, rng, n, max_goal_offset)[:3]


def head_to_actions(out: torch.Tensor, max_norm: float, gripper_step: float) -> torch.Tensor:
    """Head outputs [B, 4] (dxyz / XYZ_SCALE, gripper change) -> 7-D actions [B, 7] inside the planner's box."""
    a = out.new_zeros(out.shape[0], 7)
    a[:, :3] = (out[:, :3] * XYZ_SCALE).clamp(-max_norm, max_norm)
    a[:, 6] = out[:, 3].clamp(-gripper_step, gripper_step)
    return a


def actions_to_targets(actions: torch.Tensor) -> torch.Tensor:
    """7-D actions [B, 7] -> head targets [B, 4]."""
    return torch.cat([actions[:, :3] / XYZ_SCALE, actions[:, 6:7]], 1).float()


@torch.inference_mode()
def label(planner: Any, zo: torch.Tensor, st: torch.Tensor, zg: torch.Tensor, chunk: int, seed: int) -> torch.Tensor:
    """The planner's first action [n, 7] for each problem, `chunk` problems per `plan` call."""
    out = []
    for i in range(0, zo.shape[0], chunk):
        res = planner.plan(zo[i : i + chunk], st[i : i + chunk], zg[i : i + chunk], seed=seed + i)
        out.append(res.actions[:, 0].float())
    return torch.cat(out)


@torch.inference_mode()
def imagine(wm: Any, head: GoalBCHead, zo: torch.Tensor, zg: torch.Tensor, st: torch.Tensor, steps: int,
            max_norm: float, gripper_step: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lets the policy act `steps` times inside the world model; returns every visited (z, goal, state)."""
    from vjepa_fast.robotics.pose import compose_action

    visited = ([], [], [])
    for _ in range(steps):
        a = head_to_actions(head(zo, zg, st), max_norm, gripper_step)
        zo = wm.rollout(zo, st, a[:, None, None])[:, 0]
        st = compose_action(st, a, gripper_range=wm.gripper_range)
        for bucket, t in zip(visited, (zo, zg, st)):
            bucket.append(t.clone())
    return tuple(torch.cat(b) for b in visited)


def _fit(head: GoalBCHead, data: tuple[torch.Tensor, ...], steps: int, batch_size: int, lr: float,
         gen: torch.Generator, bar: Any) -> float:
    zo, zg, st, y = data
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    head.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        i = torch.randint(zo.shape[0], (batch_size,), generator=gen)
        loss = F.smooth_l1_loss(head(zo[i], zg[i], st[i]), y[i], beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", data=zo.shape[0])
    head.eval()
    return float(loss.item())


def _energy(wm: Any, zo: torch.Tensor, st: torch.Tensor, zg: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        z = wm.rollout(zo, st, actions[:, None, None])[:, 0]
        return (z - zg).abs().mean(dim=(-2, -1))


def _seconds_per_decision(fn: Any, repeats: int = 5) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def distill(world_model_file: str | Path, cache_dir: str | Path, out_dir: str | Path, *, planner: str = "cem",
            planner_config: Any = None, planner_options: dict[str, Any] | None = None, problems: int = 512,
            rounds: int = 2, dagger_problems: int = 256, rollout_steps: int = 3, fit_steps: int = 1000,
            batch_size: int = 64, lr: float = 1e-3, max_goal_offset: int = 6, chunk: int = 32,
            val_problems: int = 128, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Distils `planner` on the world model into a policy head; writes out_dir/policy.safetensors (the BC format)
    and out_dir/metrics.json; returns the metrics."""
    from vjepa_fast.checkpoints import load_safetensors
    from vjepa_fast.data.latent_cache import LatentCache
    from vjepa_fast.planning import PlannerConfig, WorldModel
    from vjepa_fast.planning.planners import make_planner

    for name, v in (("problems", problems), ("fit_steps", fit_steps), ("batch_size", batch_size),
                    ("rollout_steps", rollout_steps), ("chunk", chunk), ("val_problems", val_problems),
                    ("max_goal_offset", max_goal_offset)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if rounds < 0 or (rounds and dagger_problems < 1):
        raise ValueError(f"rounds must be >= 0 (and dagger_problems >= 1 with rounds), got {rounds}, {dagger_problems}")
    loaded = load_safetensors(world_model_file)
    if loaded.encoder is None or loaded.predictor is None or loaded.kind != "ac":
        raise ValueError(f"{world_model_file} must hold an encoder and an action-conditioned predictor "
                         "(a world_model.safetensors of train-ac)")
    wm = WorldModel(loaded.encoder, loaded.predictor, dtype="float32")
    cache = LatentCache(cache_dir, encoder=loaded.encoder)
    if (cache.tokens, cache.dim) != tuple(wm.latent_shape):
        raise ValueError(f"the cache's latents {(cache.tokens, cache.dim)} do not match the world model's "
                         f"{tuple(wm.latent_shape)}: build it with this model's encoder")
    cfg = planner_config or PlannerConfig(num_samples=64, topk=8, iterations=4, horizon=1, max_norm=XYZ_SCALE,
                                          bound="box", gripper="plan", gripper_step=1.0)
    if cfg.horizon != 1:
        raise ValueError(f"the policy decides one action: distil a horizon-1 planner, got horizon {cfg.horizon}")
    plan = make_planner(planner, wm, cfg, **(planner_options or {}))
    train_eps, val_eps = cache.split(0.1, seed=seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = GoalBCHead(BCConfig(tokens=cache.tokens, dim=cache.dim))
    total = fit_steps * (rounds + 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="distill", unit="step")
    t0 = time.time()
    zo, zg, st = _problems(cache, train_eps, rng, problems, max_goal_offset)
    data = [zo, zg, st, actions_to_targets(label(plan, zo, st, zg, chunk, seed))]
    log = []
    for r in range(rounds + 1):
        loss = _fit(head, tuple(data), fit_steps, batch_size, lr, gen, bar)
        log.append({"round": r, "data": int(data[0].shape[0]), "train_loss": loss})
        if r == rounds:
            break
        zo, zg, st = _problems(cache, train_eps, rng, dagger_problems, max_goal_offset)
        vz, vg, vs = imagine(wm, head, zo, zg, st, rollout_steps, cfg.max_norm, cfg.gripper_step)
        y = actions_to_targets(label(plan, vz, vs, vg, chunk, seed + 100_000 * (r + 1)))
        for i, t in enumerate((vz, vg, vs, y)):
            data[i] = torch.cat([data[i], t])
    if bar is not None:
        bar.close()
    # Held-out problems: the policy beside the planner, by the world model's own energy and per decision time.
    vz, vg, vs = _problems(cache, val_eps, np.random.default_rng(seed + 1), val_problems, max_goal_offset)
    with torch.inference_mode():
        a_pol = head_to_actions(head(vz, vg, vs), cfg.max_norm, cfg.gripper_step)
    a_plan = label(plan, vz, vs, vg, chunk, seed + 999_983)
    e_pol, e_plan = _energy(wm, vz, vs, vg, a_pol), _energy(wm, vz, vs, vg, a_plan)
    e_none = _energy(wm, vz, vs, vg, torch.zeros_like(a_pol))
    one = (vz[:1], vg[:1], vs[:1])
    with torch.inference_mode():
        s_pol = _seconds_per_decision(lambda: head(*one))
        s_plan = _seconds_per_decision(lambda: plan.plan(one[0], one[2], one[1]), repeats=3)
    val = {"problems": val_problems, "xyz_l1_cm": 100 * float((a_pol[:, :3] - a_plan[:, :3]).abs().mean()),
           "gripper_sign_agreement": float(((a_pol[:, 6] > 0.1) == (a_plan[:, 6] > 0.1)).float().mean()),
           "energy_policy": float(e_pol.mean()), "energy_planner": float(e_plan.mean()),
           "energy_no_action": float(e_none.mean()), "seconds_per_decision_policy": s_pol,
           "seconds_per_decision_planner": s_plan, "speedup": s_plan / s_pol}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"distilled_from": planner, "planner_options": planner_options or {}, "world_model": str(world_model_file),
            "cache": str(cache_dir), "problems": problems, "rounds": rounds, "dagger_problems": dagger_problems,
            "rollout_steps": rollout_steps, "fit_steps": fit_steps, "samples": cfg.num_samples,
            "iterations": cfg.iterations, "max_norm": cfg.max_norm}
    save_bc_policy(out / "policy.safetensors", head, loaded.encoder, info)
    metrics = {"log": log, "validation": val, "seconds": time.time() - t0, **info}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


class PolicyWarmStart:
    """A distilled (or BC) policy as CEM's initial mean: `init_mean(z_obs, state, z_goal)` -> [B, 1, A] in the
    planner's searched dims (A = 4 with the gripper planned, else 3)."""

    def __init__(self, head: GoalBCHead, max_norm: float, gripper_step: float, action_dims: int) -> None:
        self.head, self.max_norm, self.gripper_step, self.action_dims = head.eval(), max_norm, gripper_step, action_dims

    @torch.inference_mode()
    def init_mean(self, z_obs: torch.Tensor, state: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        a = head_to_actions(self.head(z_obs, z_goal, state), self.max_norm, self.gripper_step)
        searched = torch.cat([a[:, :3], a[:, 6:7]], 1) if self.action_dims == 4 else a[:, :3]
        return searched[:, None]


def main(argv: list[str] | None = None) -> int:
    from vjepa_fast.planning.planners import add_planner_arguments, parse_planner_options, planner_options

    p = argparse.ArgumentParser(prog="vjepa-fast distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-model", required=True, help="world_model.safetensors (encoder + AC predictor)")
    p.add_argument("--cache", required=True, help="latent cache of that encoder (train-ac's OUT_DIR/latent_cache)")
    p.add_argument("--out", required=True, help="output folder (policy.safetensors, metrics.json)")
    add_planner_arguments(p)
    p.add_argument("--samples", type=int, default=64, help="planner samples per iteration")
    p.add_argument("--topk", type=int, default=8, help="planner elites")
    p.add_argument("--iterations", type=int, default=4, help="planner iterations")
    p.add_argument("--max-step", type=float, default=XYZ_SCALE, help="largest xyz step, m (<= 0.05)")
    p.add_argument("--gripper-range", action=argparse.BooleanOptionalAction, default=True,
                   help="the planner scores only gripper changes the hand can make from its state (as sim-eval's "
                        "task planner does: PlannerConfig.gripper_range)")
    p.add_argument("--problems", type=int, default=512, help="problems labelled by the planner in round 0")
    p.add_argument("--rounds", type=int, default=2, help="DAgger rounds after round 0")
    p.add_argument("--dagger-problems", type=int, default=256, help="fresh problems per DAgger round")
    p.add_argument("--rollout-steps", type=int, default=3, help="policy steps inside the world model per problem")
    p.add_argument("--fit-steps", type=int, default=1000, help="optimiser steps per round")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-goal-offset", type=int, default=6, help="goals are frames 1..this many steps ahead")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        from vjepa_fast.planning import PlannerConfig

        if not 0 < a.max_step <= XYZ_SCALE:
            raise ValueError(f"--max-step must be in (0, {XYZ_SCALE}] (the policy head's scale), got {a.max_step}")
        opts = parse_planner_options(a.planner_option)
        planner_options(a.planner, **opts)
        cfg = PlannerConfig(num_samples=a.samples, topk=a.topk, iterations=a.iterations, horizon=1,
                            max_norm=a.max_step, bound="box", gripper="plan", gripper_step=1.0, seed=a.seed,
                            gripper_range=a.gripper_range)
        m = distill(a.world_model, a.cache, a.out, planner=a.planner, planner_config=cfg, planner_options=opts,
                    problems=a.problems, rounds=a.rounds, dagger_problems=a.dagger_problems,
                    rollout_steps=a.rollout_steps, fit_steps=a.fit_steps, batch_size=a.batch_size, lr=a.lr,
                    max_goal_offset=a.max_goal_offset, seed=a.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"distill: error: {exc}", file=sys.stderr)
        return 2
    v = m["validation"]
    print(f"distill: {Path(a.out) / 'policy.safetensors'}; held-out energy policy {v['energy_policy']:.4f} vs "
          f"planner {v['energy_planner']:.4f} vs no action {v['energy_no_action']:.4f}; xyz off by "
          f"{v['xyz_l1_cm']:.2f} cm; {v['speedup']:.0f}x faster per decision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
