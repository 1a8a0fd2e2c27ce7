"""Plain-PyTorch twin of Meta's V-JEPA 2-AC planner (notebook world-model wrapper + CEM), to compare against.

What it does as Meta's code does: fp32; for every horizon step the predictor is run on the WHOLE frame
history of every sample (the context frame repeated per sample, then every predicted frame), no KV cache;
the next latent is the last frame's output, layer-normed; the pose of each sample is advanced one sample at
a time; elites by torch.topk, mean and std blended with momentum in fp32 as `mpc_utils.cem` writes it; the
plan is the final mean. Which CEM it runs is the config's: with `PlannerConfig.meta()` and Meta's recorded
normals it returns Meta's actions on the official_cem.pt fixture (tests/test_meta_cem.py); with our default
config it is our CEM variant (population std, one momentum, no gripper dead band), done Meta's way.
Differences, all of which make it faster than Meta's code, not slower: the predictor is our parity module
(`ActionConditionedPredictor`, block-causal attention without materialising the mask, RoPE tables once per
call); the per-sample pose update uses `robotics.pose.compose_action` on one row instead of scipy; the random
numbers are Philox from `reference.cem` (the same stream as `ops.cem_sample`, so both planners start from the
same samples under the same seed) unless normals are given. Any `PlanningModel` (e.g. a toy with known
dynamics) can stand in for the predictor; its own `rollout` is then used, per problem.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor
from vjepa_fast.planning.planner_config import PlannerConfig
from vjepa_fast.planning.plans import Normals, PlanResult, given_normals, returned_actions, to_actions
from vjepa_fast.planning.world_model import TARGET_LN_EPS, PlanningModel
from vjepa_fast.reference.cem import philox_normals, project_ball
from vjepa_fast.robotics.pose import compose_action

__all__ = ["ReferencePlanner"]


class ReferencePlanner:
    """Meta-style CEM planner over an `ActionConditionedPredictor` (fp32 copy, full recompute per step) or any
    `PlanningModel` (its rollout), one problem after the other."""

    def __init__(self, model: ActionConditionedPredictor | PlanningModel, config: PlannerConfig) -> None:
        if not isinstance(config, PlannerConfig):
            raise TypeError(f"config must be a PlannerConfig, got {type(config).__name__}")
        if not config.is_reference_algorithm:
            raise ValueError("ReferencePlanner runs plain CEM only (the reference algorithm of its config): "
                             "keep_elites, return_best and coarse_iterations must be off in its PlannerConfig")
        if isinstance(model, ActionConditionedPredictor):
            # An fp32 copy when needed: `.float()` on the caller's module would convert it in place.
            fp32 = all(p.dtype == torch.float32 for p in model.parameters())
            self.predictor = (model if fp32 else copy.deepcopy(model).float()).eval()
            self.model = None
            self.latent_shape = (model.config.tokens_per_frame, model.config.embed_dim)
        elif isinstance(model, PlanningModel):
            self.predictor = None
            self.model = model
            self.latent_shape = tuple(model.latent_shape)
        else:
            raise TypeError(f"model must be an ActionConditionedPredictor or a PlanningModel, got "
                            f"{type(model).__name__}")
        self.config = config

    @torch.no_grad()
    def rollout(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z0: [N, D], state: [7], actions: [S, H, 7] -> final latents [S, N, D] (one problem)."""
        if self.model is not None:
            return self.model.rollout(z0[None], state[None], actions[None])[0].float()
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
    def plan(self, z_obs: torch.Tensor, state: torch.Tensor, z_goal: torch.Tensor, *, seed: int | None = None,
             normals: Normals | None = None) -> PlanResult:
        """Same inputs and result as `CEMPlanner.plan` (no warm start), one problem after the other.

        normals: given standard normals instead of Philox's, as in `CEMPlanner.plan`: [iterations, B, S, H, A]
        or a callable iteration -> [B, S, H, A].
        """
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        b = z_obs.shape[0]
        h, a = cfg.horizon, cfg.action_dims
        normals_at = given_normals(normals, (cfg.iterations, b, cfg.num_samples, h, a), torch.device("cpu"))
        grip = a == 4
        hi = torch.tensor([cfg.max_norm] * 3 + ([cfg.gripper_step] if grip else []))
        xyz_std0 = cfg.max_norm if cfg.init_std is None else cfg.init_std
        std0 = torch.tensor([xyz_std0] * 3 + ([cfg.gripper_std0] if grip else []))
        (m_pos, m_grip), (ms_pos, ms_grip) = (cfg.momentum_pos, cfg.momentum_grip), cfg.std_momenta

        def blend(elite: torch.Tensor, old: torch.Tensor, pos: float, grip_m: float) -> torch.Tensor:
            # Meta's expression, group by group: elite * (1 - m) + old * m (Python-float momenta, fp32 tensors).
            out = [elite[..., :3] * (1.0 - pos) + old[..., :3] * pos]
            if grip:
                out.append(elite[..., 3:] * (1.0 - grip_m) + old[..., 3:] * grip_m)
            return torch.cat(out, dim=-1)

        results = []
        for p in range(b):
            mean = torch.zeros(h, a)
            std = std0.expand(h, a).clone()
            best, elite_mean, std_mean = [], [], []
            for it in range(cfg.iterations):
                if normals_at is None:
                    z = philox_normals(seed, it, b, cfg.num_samples * h * a)[p].view(cfg.num_samples, h, a)
                else:
                    z = normals_at(it)[p]
                x = torch.minimum(torch.maximum(mean + std * z, -hi), hi)
                if cfg.bound == "ball":
                    x = torch.cat([project_ball(x[..., :3], cfg.max_norm, 2), x[..., 3:]], dim=-1)
                zf = self.rollout(z_obs[p].float(), state[p].float(), to_actions(x))
                energies = (zf - z_goal[p].float()).abs().mean(dim=(-2, -1))
                vals, idx = torch.topk(energies, cfg.topk, largest=False)
                elites = x[idx]
                mean = blend(elites.mean(0), mean, m_pos, m_grip)
                std = blend(elites.std(0, correction=cfg.std_correction), std, ms_pos, ms_grip).clamp_min(cfg.min_std)
                best.append(vals[0])
                elite_mean.append(vals.mean())
                std_mean.append(std.mean())
            actions = returned_actions(mean, cfg)
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
