"""Latent MPC planner: the Cross-Entropy Method over end-effector deltas (SPEC section 6) on the CEM ops.

One `CEMPlanner.plan` call solves B independent problems (robots or goals) at once: per iteration it draws
S candidate sequences per problem with `ops.cem_sample` (counter-based RNG: no generator state, no host
sync), rolls them out with the world model, scores them by energy = mean |z_pred - z_goal| over tokens and
channels, and refits the Gaussians to the top-k with `ops.cem_refit`. Nothing inside the iterations reads a
value back to the host; per-iteration statistics stay tensors until the caller converts them.

Action space: the planner searches A = 3 (xyz deltas; gripper held) or A = 4 (xyz + gripper delta) dims;
rotation deltas are fixed to 0 as in Meta's planner. `to_actions` expands a plan to 7-D robot actions.

The default `PlannerConfig` is our CEM variant, not Meta's: population std of the elites, one momentum for
mean and std, the gripper's std starting at its clip bound, no dead band on the returned gripper.
`PlannerConfig.meta()` is Meta's algorithm (`notebooks/utils/mpc_utils.cem` of V-JEPA 2): given the normals
Meta's `torch.randn` drew (`plan(..., normals=...)`), it returns Meta's actions to 1e-6 on every case of the
`official_cem.pt` fixture (tests/test_meta_cem.py).

The configuration lives in `planning.planner_config`, the result type and shared helpers in `planning.plans`,
the sub-goal helpers in `planning.goals`; their names are re-exported here.
"""

from __future__ import annotations

from typing import Any

import torch

from vjepa_fast.ops import cem_refit, cem_sample
from vjepa_fast.planning.goals import GoalSequence, SubgoalSchedule
from vjepa_fast.planning.planner_config import BOUNDS, GRIPPER_MODES, META_CEM_NAMES, PlannerConfig
from vjepa_fast.planning.plans import (
    Normals,
    PlanResult,
    check_problem,
    check_problem_values,
    given_normals,
    l1_energy,
    resolve_seed,
    returned_actions,
    shift_plan,
    to_actions,
)
from vjepa_fast.planning.world_model import PlanningModel

__all__ = ["PlannerConfig", "PlanResult", "CEMPlanner", "GoalSequence", "SubgoalSchedule", "to_actions", "shift_plan",
           "l1_energy", "META_CEM_NAMES", "Normals", "returned_actions", "given_normals", "BOUNDS", "GRIPPER_MODES"]

def clip_gripper_range(samples: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """samples [B, S, H, 4] with each gripper change (last dim) clipped so the gripper, from state[:, 6], stays
    in [0, 1] after every step of the horizon (PlannerConfig.gripper_range)."""
    out = samples.clone()
    g = state[:, 6, None].to(samples.dtype).expand(-1, samples.shape[1])  # [B, S]
    for h in range(samples.shape[2]):
        nxt = (g + samples[:, :, h, 3]).clamp(0.0, 1.0)
        out[:, :, h, 3] = nxt - g
        g = nxt
    return out


class CEMPlanner:
    """CEM planner over any `PlanningModel` (`WorldModel`, or a model with the same `rollout`).

    Use: `planner.plan(z_obs [B, N, D], state [B, 7], z_goal [B, N, D])` -> `PlanResult`; with images,
    `planner.plan_images(obs, state, goal)` (needs a model with `encode_image_files`).
    """

    def __init__(
        self, model: PlanningModel, config: PlannerConfig | None = None, *, coarse_model: PlanningModel | None = None
    ) -> None:
        if not isinstance(model, PlanningModel):
            raise TypeError(f"model must implement PlanningModel (latent_shape, rollout), got {type(model).__name__}")
        self.model = model
        self.config = config or PlannerConfig()
        if not isinstance(self.config, PlannerConfig):
            raise TypeError(f"config must be a PlannerConfig, got {type(self.config).__name__}")
        max_h = getattr(model, "max_horizon", None)
        if max_h is not None and self.config.horizon > max_h:
            raise ValueError(f"PlannerConfig.horizon {self.config.horizon} exceeds the model's {max_h} time steps")
        self.coarse_model = self._coarse(coarse_model)

    def _coarse(self, coarse_model: PlanningModel | None) -> PlanningModel | None:
        """The model of the first `coarse_iterations` (None when there are none)."""
        cfg = self.config
        if cfg.coarse_iterations == 0:
            return None
        if coarse_model is not None:
            if not isinstance(coarse_model, PlanningModel):
                raise TypeError(f"coarse_model must implement PlanningModel, got {type(coarse_model).__name__}")
            if tuple(coarse_model.latent_shape) != tuple(self.model.latent_shape):
                raise ValueError(f"coarse_model latents {tuple(coarse_model.latent_shape)} != the model's "
                                 f"{tuple(self.model.latent_shape)}")
            return coarse_model
        with_dtype = getattr(self.model, "with_dtype", None)
        if with_dtype is None:
            raise ValueError(f"PlannerConfig.coarse_iterations = {cfg.coarse_iterations} needs a coarse_model, or "
                             "a model with with_dtype (a WorldModel) to make one in coarse_dtype")
        return with_dtype(cfg.coarse_dtype)

    def bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper) [A] of the searched dims."""
        cfg = self.config
        hi = [cfg.max_norm] * 3 + ([cfg.gripper_step] if cfg.gripper == "plan" else [])
        upper = torch.tensor(hi, dtype=torch.float32, device=device)
        return -upper, upper

    def initial(self, b: int, device: torch.device, init_mean: torch.Tensor | None = None):
        """(mean, std) [B, H, A] at the start of a plan: zeros (or init_mean) and the max step sizes."""
        cfg = self.config
        h, a = cfg.horizon, cfg.action_dims
        if init_mean is None:
            mean = torch.zeros(b, h, a, device=device)
        else:
            if not isinstance(init_mean, torch.Tensor) or tuple(init_mean.shape) != (b, h, a):
                got = tuple(init_mean.shape) if isinstance(init_mean, torch.Tensor) else type(init_mean).__name__
                raise ValueError(f"init_mean must be [B, H, A] = {(b, h, a)} (the searched dims), got {got}")
            lower, upper = self.bounds(device)
            mean = torch.minimum(torch.maximum(init_mean.to(device, torch.float32), lower), upper)
        std0 = [cfg.max_norm if cfg.init_std is None else cfg.init_std] * 3
        if a == 4:
            std0.append(cfg.gripper_std0)
        std = torch.tensor(std0, dtype=torch.float32, device=device).expand(b, h, a).contiguous()
        return mean.contiguous(), std

    @torch.inference_mode()
    def plan(
        self,
        z_obs: torch.Tensor,
        state: torch.Tensor,
        z_goal: torch.Tensor,
        *,
        init_mean: torch.Tensor | None = None,
        seed: int | None = None,
        normals: Normals | None = None,
    ) -> PlanResult:
        """Plan B problems at once.

        z_obs: [B, N, D] latents of the current observations; state: [B, 7] end-effector states;
        z_goal: [B, N, D] goal latents (e.g. `GoalSequence.current()`); init_mean: [B, H, A] warm start
        (e.g. `shift_plan(previous.mean)`); seed: overrides the config's.
        normals: given standard normals instead of Philox's (seed unused): a float tensor [iterations, B, S, H, A]
            (S = num_samples) or a callable iteration -> [B, S, H, A]; iteration i samples
            clamp(mean + std * normals_i) (then the ball, if any), e.g. to replay another planner's draws.
        """
        cfg = self.config
        b = check_problem(self.model.latent_shape, z_obs, state, z_goal)
        seed = resolve_seed(seed, cfg.seed)
        dev = z_obs.device
        normals_at = given_normals(normals, (cfg.iterations, b, cfg.num_samples, cfg.horizon, cfg.action_dims), dev)
        validate = dev.type == "cpu" if cfg.validate is None else cfg.validate
        if validate:
            check_problem_values(z_obs, state, z_goal, init_mean)
        state = state.to(dev, torch.float32)
        z_goal = z_goal.to(dev, torch.float32)
        mean, std = self.initial(b, dev, init_mean)
        lower, upper = self.bounds(dev)
        ball = cfg.max_norm if cfg.bound == "ball" else None
        grip_dims = 1 if cfg.gripper == "plan" else 0
        clip = bool(cfg.gripper_range and grip_dims)
        # gripper_range_fit "raw": the changes are clipped to the hand's range to be scored, but the Gaussian is
        # refit on the drawn ones, so a gripper without signal in the energy keeps a mean near 0 (clipped, the
        # elites pile up at the reachable bound and the mean leans toward toggling, about +-0.4)
        raw_fit = clip and cfg.gripper_range_fit == "raw"

        def feasible(x: torch.Tensor) -> torch.Tensor:
            return clip_gripper_range(x, state) if clip else x

        std_m = cfg.std_momenta
        best, elite_mean, std_mean = [], [], []
        h, a = cfg.horizon, cfg.action_dims
        kept = None  # (elite samples [B, k, H, A], their energies [B, k], the model that scored them)
        evals = 0  # sequences rolled out, for stats["model_evals"]
        for it in range(cfg.iterations):
            model = self.coarse_model if it < cfg.coarse_iterations else self.model
            if normals_at is None:
                samples = cem_sample(mean, std, lower, upper, cfg.num_samples, seed=seed, offset=it,
                                     ball_radius=ball, ball_dims=3, validate=False)
            else:
                samples = cem_sample(mean, std, lower, upper, cfg.num_samples, ball_radius=ball, ball_dims=3,
                                     normals=normals_at(it), validate=validate)
            scored = feasible(samples)
            if not raw_fit:
                samples = scored
            energies = l1_energy(model.rollout(z_obs, state, to_actions(scored)), z_goal)
            evals += cfg.num_samples
            if kept is not None:
                kept_samples, kept_energies, scorer = kept
                if scorer is not model:  # coarse -> main model: energies on one scale
                    kept_energies = l1_energy(model.rollout(z_obs, state, to_actions(feasible(kept_samples))),
                                              z_goal)
                    evals += kept_samples.shape[1]
                samples = torch.cat([samples, kept_samples], 1)
                energies = torch.cat([energies, kept_energies], 1)
            mean, std, idx = cem_refit(samples, energies, mean, std, cfg.topk, momentum_pos=cfg.momentum_pos,
                                       momentum_grip=cfg.momentum_grip, grip_dims=grip_dims, min_std=cfg.min_std,
                                       momentum_std_pos=std_m[0], momentum_std_grip=std_m[1],
                                       correction=cfg.std_correction)
            elite_e = energies.gather(1, idx)
            if cfg.keep_elites or (cfg.return_best and it == cfg.iterations - 1):
                kept = (samples.gather(1, idx[:, :, None, None].expand(-1, -1, h, a)), elite_e, model)
            best.append(elite_e[:, 0])
            elite_mean.append(elite_e.mean(1))
            std_mean.append(std.mean(dim=(1, 2)))
        if cfg.return_best:
            # One 2-sample rollout by the main model: the final mean and the best elite; keep the lower energy.
            cand = torch.stack([mean, kept[0][:, 0]], 1)  # [B, 2, H, A]
            e2 = l1_energy(self.model.rollout(z_obs, state, returned_actions(feasible(cand), cfg)), z_goal)
            pick = e2[:, 1] < e2[:, 0]
            mean = torch.where(pick[:, None, None], cand[:, 1], cand[:, 0])
            energy = torch.where(pick, e2[:, 1], e2[:, 0])
            actions = returned_actions(feasible(mean[:, None])[:, 0], cfg)
        else:
            actions = returned_actions(feasible(mean[:, None])[:, 0] if raw_fit else mean, cfg)
            energy = l1_energy(self.model.rollout(z_obs, state, actions[:, None]), z_goal)[:, 0]
        evals += 2 if cfg.return_best else 1
        stats = {"best": torch.stack(best, 1), "elite_mean": torch.stack(elite_mean, 1),
                 "std": torch.stack(std_mean, 1), "model_evals": torch.tensor(evals)}
        return PlanResult(mean=mean, actions=actions, energy=energy, std=std, stats=stats)

    def plan_images(
        self, obs: Any, state: torch.Tensor, goal: Any, **kwargs: Any
    ) -> PlanResult:
        """`plan` from images (paths, PIL images or HWC uint8 arrays; one or a list each) and states [B, 7]."""
        encode = getattr(self.model, "encode_image_files", None)
        if encode is None:
            raise TypeError("plan_images needs a model with encode_image_files (a WorldModel with an encoder)")
        obs_list = obs if isinstance(obs, (list, tuple)) else [obs]
        goal_list = goal if isinstance(goal, (list, tuple)) else [goal]
        if len(obs_list) != len(goal_list):
            raise ValueError(f"{len(obs_list)} observation images but {len(goal_list)} goal images")
        state = state if state.dim() == 2 else state[None]
        return self.plan(encode(list(obs_list)), state, encode(list(goal_list)), **kwargs)
