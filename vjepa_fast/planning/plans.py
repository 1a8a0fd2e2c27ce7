"""What a planner returns (`PlanResult`) and the helpers every planner shares: the L1 energy, the searched dims
as robot actions, given normals, the warm start of the next step and the checks of a plan call's inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from vjepa_fast.planning.planner_config import PlannerConfig
from vjepa_fast.robotics.pose import ACTION_DIM, STATE_DIM

__all__ = ["Normals", "PlanResult", "check_problem", "check_problem_values", "given_normals", "l1_energy",
           "returned_actions", "shift_plan", "to_actions"]

# Given standard normals for a plan: [iterations, B, N, H, A], or iteration -> [B, N, H, A].
Normals = torch.Tensor | Callable[[int], torch.Tensor]


@dataclass
class PlanResult:
    """What `CEMPlanner.plan` returns (tensors stay on the planner's device; `.cpu()` to read them).

    mean: [B, H, A] the plan in the searched dims (feed `shift_plan(mean)` as the next warm start).
    actions: [B, H, 7] the plan as robot actions (rotation deltas 0; gripper through the config's
    gripper_deadband). energy: [B] energy of `actions`.
    std: [B, H, A] the final spread. stats: per-iteration [B, iterations] tensors: "best" (lowest sample
    energy), "elite_mean" (mean elite energy), "std" (mean std after the refit); and "model_evals", a 0-d tensor:
    sequences rolled out for this plan (all planners of `planning.planners` report it).
    """

    mean: torch.Tensor
    actions: torch.Tensor
    energy: torch.Tensor
    std: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)

    def cpu(self) -> PlanResult:
        return PlanResult(self.mean.cpu(), self.actions.cpu(), self.energy.cpu(), self.std.cpu(),
                          {k: v.cpu() for k, v in self.stats.items()})


def l1_energy(z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """mean |z - goal| over the last two dims: z [B, S, N, D], goal [B, N, D] -> [B, S] (fp32)."""
    return (z.float() - goal.float()[:, None]).abs().mean(dim=(-2, -1))


def to_actions(mean: torch.Tensor) -> torch.Tensor:
    """Searched dims [..., A] (A = 3 or 4) -> 7-D actions [..., 7]: xyz, zero rotation, gripper (0 if A = 3)."""
    if mean.shape[-1] not in (3, 4):
        raise ValueError(f"expected [..., 3] or [..., 4] searched dims, got shape {tuple(mean.shape)}")
    out = mean.new_zeros((*mean.shape[:-1], ACTION_DIM))
    out[..., :3] = mean[..., :3]
    if mean.shape[-1] == 4:
        out[..., 6] = mean[..., 3]
    return out


def returned_actions(mean: torch.Tensor, config: PlannerConfig) -> torch.Tensor:
    """The robot actions of a plan: `to_actions(mean)` [..., 7], the gripper set to 0 wherever its magnitude is
    below config.gripper_deadband (Meta's planner: 0.25; ours: 0, off)."""
    actions = to_actions(mean)
    if config.gripper_deadband > 0 and mean.shape[-1] == 4:
        g = actions[..., 6]
        actions[..., 6] = torch.where(g.abs() < config.gripper_deadband, torch.zeros_like(g), g)
    return actions


def given_normals(
    normals: Normals | None, shape: tuple[int, int, int, int, int], device: torch.device
) -> Callable[[int], torch.Tensor] | None:
    """Checks a plan's given normals against shape = (iterations, B, S, H, A) and returns iteration ->
    [B, S, H, A] float32 on `device` (None when none are given). ValueError / TypeError name `normals`."""
    if normals is None:
        return None
    it_shape = list(shape[1:])
    if isinstance(normals, torch.Tensor):
        if not normals.is_floating_point() or tuple(normals.shape) != tuple(shape):
            raise ValueError(f"normals must be a float tensor [iterations, B, S, H, A] = {list(shape)}, got "
                             f"{normals.dtype} {list(normals.shape)}")
        z_all = normals.to(device, torch.float32)
        return lambda it: z_all[it]
    if not callable(normals):
        raise TypeError(f"normals must be a tensor [iterations, B, S, H, A] or a callable iteration -> [B, S, H, A], "
                        f"got {type(normals).__name__}")

    def at(it: int) -> torch.Tensor:
        z = normals(it)
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or list(z.shape) != it_shape:
            got = f"{z.dtype} {list(z.shape)}" if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"normals({it}) must return a float tensor [B, S, H, A] = {it_shape}, got {got}")
        return z.to(device, torch.float32)

    return at


def shift_plan(mean: torch.Tensor) -> torch.Tensor:
    """Warm start for the next control step: [B, H, A] -> the plan advanced by one step, 0 appended."""
    return torch.cat([mean[:, 1:], torch.zeros_like(mean[:, :1])], dim=1)


def resolve_seed(seed: int | None, default: int) -> int:
    """`seed`, or the config's `default` when None: an int in [0, 2^63) (a Philox key)."""
    seed = default if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2^63), got {seed!r}")
    return seed


def check_problem(latent_shape: tuple[int, int], z_obs: Any, state: Any, z_goal: Any) -> int:
    """Checks one plan call's tensors against the model's latents [N, D]: z_obs, z_goal [B, N, D], state [B, 7].
    Returns B."""
    n, d = latent_shape
    for name, t in (("z_obs", z_obs), ("state", state), ("z_goal", z_goal)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got {t.dtype}")
    if z_obs.dim() != 3 or tuple(z_obs.shape[1:]) != (n, d):
        raise ValueError(f"z_obs must be [B, N, D] = [B, {n}, {d}] (the world model's latents), got "
                         f"{tuple(z_obs.shape)}")
    b = z_obs.shape[0]
    if tuple(z_goal.shape) != (b, n, d):
        raise ValueError(f"z_goal must have the shape of z_obs, [B, N, D] = {(b, n, d)}, got {tuple(z_goal.shape)}")
    if tuple(state.shape) != (b, STATE_DIM):
        raise ValueError(f"state must be [B, {STATE_DIM}] = [{b}, {STATE_DIM}], got {tuple(state.shape)}")
    return b


def check_problem_values(z_obs: torch.Tensor, state: torch.Tensor, z_goal: torch.Tensor,
                         init_mean: torch.Tensor | None) -> None:
    """ValueError when an input holds NaN or inf (one host sync)."""
    for name, t in (("z_obs", z_obs), ("state", state), ("z_goal", z_goal), ("init_mean", init_mean)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds NaN or inf values")
