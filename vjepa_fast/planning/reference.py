"""Plain-PyTorch twin of Meta's V-JEPA 2-AC planner (notebook world-model wrapper + CEM), to compare against.

What it does as the reference does: fp32; for every horizon step the predictor is run on the WHOLE frame
history of every sample (the context frame repeated per sample, then every predicted frame), no KV cache;
the next latent is the last frame's output, layer-normed; the pose of each sample is advanced one sample at
a time; elites by torch.topk, mean/std blended with momentum; the plan is the final mean.
Differences, all of which make it faster than Meta's code, not slower: the predictor is our parity module
(`ActionConditionedPredictor`, block-causal attention without materialising the mask, RoPE tables once per
call); the per-sample pose update uses `robotics.pose.compose_action` on one row instead of scipy; the random
numbers are Philox from `reference.cem` (the same stream as `ops.cem_sample`, so both planners start from the
same samples under the same seed).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor
from vjepa_fast.planning.cem import PlannerConfig, PlanResult, to_actions
from vjepa_fast.planning.world_model import TARGET_LN_EPS
from vjepa_fast.reference.cem import philox_normals, project_ball
from vjepa_fast.robotics.pose import compose_action

__all__ = ["ReferencePlanner"]


class ReferencePlanner:
    """Meta-style CEM planner over an `ActionConditionedPredictor` (fp32 copy, full recompute per step)."""

    def __init__(self, predictor: ActionConditionedPredictor, config: PlannerConfig) -> None:
        if not config.is_reference_algorithm:
            raise ValueError("ReferencePlanner runs the reference algorithm only: keep_elites, return_best and "
                             "coarse_iterations must be off in its PlannerConfig")
        # An fp32 copy when needed: `.float()` on the caller's module would convert it in place.
        fp32 = all(p.dtype == torch.float32 for p in predictor.parameters())
        self.predictor = (predictor if fp32 else copy.deepcopy(predictor).float()).eval()
        self.config = config
        self.latent_shape = (predictor.config.tokens_per_frame, predictor.config.embed_dim)

    @torch.no_grad()
    def rollout(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z0: [N, D], state: [7], actions: [S, H, 7] -> final latents [S, N, D] (one problem)."""
        s, h, _ = actions.shape
        n, d = self.latent_shape
        frames = z0[None, None].repeat(s, 1, 1, 1)  # [S, 1, N, D]: the context, per sample
        poses = state[None, None].repeat(s, 1, 1)  # [S, 1, 7]
        for t in range(h):
            out = self.predictor(frames.flatten(1, 2), actions[:, : t + 1], poses)[:, -n:]
            nxt = F.layer_norm(out, (d,), eps=TARGET_LN_EPS)
            frames = torch.cat([frames, nxt[:, None]], dim=1)
            new_pose = torch.stack([compose_action(poses[i, -1], actions[i, t]) for i in range(s)])
            poses = torch.cat([poses, new_pose[:, None]], dim=1)
        return frames[:, -1]

    @torch.no_grad()
    def plan(self, z_obs: torch.Tensor, state: torch.Tensor, z_goal: torch.Tensor, *, seed: int | None = None
             ) -> PlanResult:
        """Same inputs and result as `CEMPlanner.plan` (no warm start), one problem after the other."""
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        b = z_obs.shape[0]
        h, a = cfg.horizon, cfg.action_dims
        hi = torch.tensor([cfg.max_norm] * 3 + ([cfg.gripper_step] if a == 4 else []))
        results = []
        for p in range(b):
            mean = torch.zeros(h, a)
            std = hi.clone() if cfg.init_std is None else torch.cat([torch.full((3,), cfg.init_std), hi[3:]])
            std = std.expand(h, a).clone()
            m = torch.tensor([cfg.momentum_pos] * 3 + [cfg.momentum_grip] * (a - 3))
            best, elite_mean, std_mean = [], [], []
            for it in range(cfg.iterations):
                z = philox_normals(seed, it, b, cfg.num_samples * h * a)[p].view(cfg.num_samples, h, a)
                x = torch.minimum(torch.maximum(mean + std * z, -hi), hi)
                if cfg.bound == "ball":
                    x = torch.cat([project_ball(x[..., :3], cfg.max_norm, 2), x[..., 3:]], dim=-1)
                zf = self.rollout(z_obs[p].float(), state[p].float(), to_actions(x))
                energies = (zf - z_goal[p].float()).abs().mean(dim=(-2, -1))
                vals, idx = torch.topk(energies, cfg.topk, largest=False)
                elites = x[idx]
                mean = m * mean + (1 - m) * elites.mean(0)
                std = (m * std + (1 - m) * elites.std(0, correction=0)).clamp_min(cfg.min_std)
                best.append(vals[0])
                elite_mean.append(vals.mean())
                std_mean.append(std.mean())
            actions = to_actions(mean)
            zf = self.rollout(z_obs[p].float(), state[p].float(), actions[None])
            energy = (zf[0] - z_goal[p].float()).abs().mean()
            results.append((mean, actions, energy, std, torch.stack(best), torch.stack(elite_mean),
                            torch.stack(std_mean)))
        cols = list(zip(*results))
        return PlanResult(
            mean=torch.stack(cols[0]), actions=torch.stack(cols[1]), energy=torch.stack(cols[2]),
            std=torch.stack(cols[3]),
            stats={"best": torch.stack(cols[4]), "elite_mean": torch.stack(cols[5]), "std": torch.stack(cols[6])},
        )
