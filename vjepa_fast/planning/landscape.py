"""Energy landscape of a world model: the planner's energy over a grid of one-step xyz deltas (a debugging
view: a good model has one basin at the delta that reaches the goal)."""

from __future__ import annotations

from pathlib import Path

import torch

from vjepa_fast.planning.plans import l1_energy
from vjepa_fast.planning.world_model import PlanningModel

__all__ = ["energy_landscape", "save_landscape_png"]

_AXES = {"x": 0, "y": 1, "z": 2}


@torch.inference_mode()
def energy_landscape(
    model: PlanningModel,
    z_obs: torch.Tensor,
    state: torch.Tensor,
    z_goal: torch.Tensor,
    *,
    steps: int = 21,
    extent: float = 0.075,
    plane: str = "xy",
    fixed: float = 0.0,
) -> tuple[torch.Tensor, list[float], list[float]]:
    """Energy of every one-step action on a grid (rotation and gripper deltas 0).

    z_obs, z_goal: [1, N, D]; state: [1, 7]. plane: the two axes varied ("xy", "xz" or "yz") over
    [-extent, extent] in `steps` values each; the third axis delta is `fixed`.
    Returns (grid [steps, steps] fp32 on the CPU, rows = second axis, columns = first axis; xs; ys).
    """
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if len(plane) != 2 or plane[0] not in _AXES or plane[1] not in _AXES or plane[0] == plane[1]:
        raise ValueError(f"plane must be two distinct axes of 'xyz' (e.g. 'xy'), got {plane!r}")
    if z_obs.dim() != 3 or z_obs.shape[0] != 1:
        raise ValueError(f"z_obs must be [1, N, D] (one problem), got shape {tuple(z_obs.shape)}")
    vals = torch.linspace(-extent, extent, steps)
    gy, gx = torch.meshgrid(vals, vals, indexing="ij")
    actions = torch.zeros(steps * steps, 7)
    third = ({0, 1, 2} - {_AXES[plane[0]], _AXES[plane[1]]}).pop()
    actions[:, _AXES[plane[0]]] = gx.flatten()
    actions[:, _AXES[plane[1]]] = gy.flatten()
    actions[:, third] = fixed
    actions = actions.to(z_obs.device)[None, :, None]  # [1, S, 1, 7]
    energy = l1_energy(model.rollout(z_obs, state, actions), z_goal)[0]
    return energy.view(steps, steps).float().cpu(), vals.tolist(), vals.tolist()


def save_landscape_png(
    grid: torch.Tensor, xs: list[float], ys: list[float], path: str | Path, *, title: str = "", plane: str = "xy"
) -> Path:
    """Heatmap of `energy_landscape`'s grid with its minimum marked; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    g = grid.numpy()
    im = ax.imshow(g, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis", aspect="auto")
    iy, ix = divmod(int(g.argmin()), g.shape[1])
    ax.plot(xs[ix], ys[iy], "r*", markersize=12, label=f"min {g.min():.4g}")
    ax.set_xlabel(f"delta {plane[0]} (m)")
    ax.set_ylabel(f"delta {plane[1]} (m)")
    ax.set_title(title or "energy (L1 to goal latent)")
    ax.legend(loc="upper right")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
