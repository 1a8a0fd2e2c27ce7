"""Several cameras of one scene planned on together: one world model per view, one energy.

A single exocentric view leaves depth ambiguous: a hand moving toward the camera and a hand moving down shift in
the image alike, so the L1 latent energy of one view can rank a step the wrong way (benchmarks/MANIP_RECIPE.md,
try 6). `MultiViewModel` holds one `WorldModel` per camera (each an encoder + AC predictor trained on that
camera's video of the same episodes). Their latents are concatenated along the tokens, so it is a
`PlanningModel` like any other: every planner runs on it unchanged, and the L1 energy is the mean over every
view's tokens (each view weighted by its token count; views of one architecture count equally).

    mv = MultiViewModel([wm_table_right, wm_wrist], cameras=["table_right", "wrist"])
    z_obs = mv.encode_views([[frame_tr], [frame_wrist]])        # [1, N1 + N2, D]
    z_goal = mv.encode_views([[goal_tr], [goal_wrist]])
    result = CEMPlanner(mv, cfg).plan(z_obs, state, z_goal)

View weights: `mv.set_weights([1.0, 0.0])` makes the energy count the first view only (e.g. while the goal is far:
a wrist camera's view of a goal 20 cm away shares nothing with its view now). The rollout's output is scaled per
view, and so must the goal be: plan toward `mv.weigh(z_goal)`; the context latent stays as encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vjepa_fast.planning.world_model import WorldModel, check_rollout_inputs

__all__ = ["MultiViewModel"]


class MultiViewModel:
    """One `WorldModel` per camera, planned on as one model (latents concatenated along the tokens).

    views: the per-camera world models, all of one latent width D. cameras: their camera names (optional; what
    callers render for each view, in order).
    """

    def __init__(self, views: Sequence[WorldModel], cameras: Sequence[str] | None = None) -> None:
        views = list(views)
        if not views:
            raise ValueError("views: give at least one world model")
        for i, v in enumerate(views):
            if not hasattr(v, "latent_shape") or not hasattr(v, "rollout"):
                raise TypeError(f"views[{i}] is a {type(v).__name__}, not a world model (latent_shape, rollout)")
        widths = {int(v.latent_shape[1]) for v in views}
        if len(widths) != 1:
            raise ValueError(f"views must share one latent width, got {[tuple(v.latent_shape) for v in views]}")
        if cameras is not None:
            cameras = [str(c) for c in cameras]
            if len(cameras) != len(views):
                raise ValueError(f"cameras: {len(cameras)} names for {len(views)} views")
            if len(set(cameras)) != len(cameras):
                raise ValueError(f"cameras must differ, got {cameras}")
        self.views, self.cameras = views, cameras
        self.splits = [int(v.latent_shape[0]) for v in views]
        self.latent_shape = (sum(self.splits), widths.pop())
        self.weights = [1.0] * len(views)

    def set_weights(self, weights: Sequence[float]) -> None:
        """Per-view weights of the energy (>= 0, not all 0): the rollout's view v is scaled by weights[v], so the
        L1 energy against `weigh(z_goal)` counts view v that much."""
        w = [float(x) for x in weights]
        if len(w) != len(self.views) or any(not x >= 0 for x in w) or not any(w):
            raise ValueError(f"weights: one value >= 0 per view ({len(self.views)}), not all 0; got {list(weights)}")
        self.weights[:] = w  # in place: a with_dtype copy shares the list

    def weigh(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [..., N, D] with each view scaled by its weight (what a goal must be for the weighted energy)."""
        if all(x == 1.0 for x in self.weights):
            return z
        return torch.cat([p * w for p, w in zip(self.split(z), self.weights)], dim=-2)

    @property
    def max_horizon(self) -> int:
        return min(int(getattr(v, "max_horizon", 1 << 30)) for v in self.views)

    def with_dtype(self, dtype: torch.dtype | str) -> MultiViewModel:
        """Every view's `WorldModel.with_dtype` (the coarse model of `PlannerConfig.coarse_iterations`), sharing
        this model's weights."""
        out = MultiViewModel([v.with_dtype(dtype) for v in self.views], self.cameras)
        out.weights = self.weights  # shared: set_weights on either applies to both
        return out

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[..., N1 + N2 + ..., D] -> the views' latents [..., Nv, D]."""
        if z.shape[-2] != self.latent_shape[0]:
            raise ValueError(f"latents have {z.shape[-2]} tokens, the views {self.splits} (sum "
                             f"{self.latent_shape[0]})")
        return list(torch.split(z, self.splits, dim=-2))

    @torch.inference_mode()
    def encode_views(self, images: Sequence[Sequence[Any]]) -> torch.Tensor:
        """images[v]: view v's images (paths, PIL images or HWC uint8 arrays), the same count per view ->
        [B, N1 + N2 + ..., D] fp32 latents, each view encoded by its own encoder."""
        if len(images) != len(self.views):
            raise ValueError(f"images: {len(images)} views given, the model has {len(self.views)}")
        counts = {len(x) for x in images}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"every view needs the same number (>= 1) of images, got {[len(x) for x in images]}")
        return torch.cat([v.encode_image_files(list(x)) for v, x in zip(self.views, images)], dim=-2)

    def rollout(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor, *,
                return_all: bool = False) -> torch.Tensor:
        """Each view's rollout of the same actions, concatenated: [B, S, N1 + N2 + ..., D] float32 (or with
        return_all [B, S, H, N, D])."""
        check_rollout_inputs(self.latent_shape, z0, state, actions)
        return self._joined([v.rollout(z, state, actions, return_all=return_all) if w else
                             self._zeros(z, actions, return_all)
                             for v, z, w in zip(self.views, self.split(z0), self.weights)])

    def rollout_differentiable(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        check_rollout_inputs(self.latent_shape, z0, state, actions)
        return self._joined([v.rollout_differentiable(z, state, actions) if w else self._zeros(z, actions, False)
                             for v, z, w in zip(self.views, self.split(z0), self.weights)])

    @staticmethod
    def _zeros(z: torch.Tensor, actions: torch.Tensor, return_all: bool) -> torch.Tensor:
        """A view weighted 0 is not rolled out: zeros in its place (its goal is weighed to zeros too)."""
        lead = actions.shape[:3] if return_all else actions.shape[:2]
        return z.new_zeros(*lead, *z.shape[1:], dtype=torch.float32)

    def _joined(self, outs: list[torch.Tensor]) -> torch.Tensor:
        if any(w != 1.0 for w in self.weights):
            outs = [o * w for o, w in zip(outs, self.weights)]
        return torch.cat(outs, dim=-2)
