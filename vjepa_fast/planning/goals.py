"""Sub-goals: `GoalSequence` (batched, on the device, no host sync) and `SubgoalSchedule` (a host-side rule
between MPC steps)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["GoalSequence", "SubgoalSchedule"]


class GoalSequence:
    """Sub-goals per problem: latents [B, G, N, D]; `current()` is the goal each problem plans towards.

    `advance(mask)` moves the problems where mask [B] is True to their next sub-goal (the last one stays);
    `advance_if_reached(energy, threshold)` does so where the plan's energy is below the threshold. Both are
    tensor ops: no host sync.
    """

    def __init__(self, goals: torch.Tensor) -> None:
        if not isinstance(goals, torch.Tensor) or goals.dim() != 4 or goals.shape[1] < 1:
            got = tuple(goals.shape) if isinstance(goals, torch.Tensor) else type(goals).__name__
            raise ValueError(f"goals must be [B, G, N, D] with G >= 1 sub-goals, got {got}")
        self.goals = goals
        self.index = torch.zeros(goals.shape[0], dtype=torch.long, device=goals.device)

    @property
    def num_goals(self) -> int:
        return self.goals.shape[1]

    def current(self) -> torch.Tensor:
        """[B, N, D] the current sub-goal of each problem."""
        b = torch.arange(self.goals.shape[0], device=self.goals.device)
        return self.goals[b, self.index]

    def at_last(self) -> torch.Tensor:
        """[B] bool: the problem is at its last sub-goal."""
        return self.index == self.num_goals - 1

    def advance(self, mask: torch.Tensor | None = None) -> None:
        step = torch.ones_like(self.index) if mask is None else mask.to(self.index.device, torch.long)
        self.index = (self.index + step).clamp_max(self.num_goals - 1)

    def advance_if_reached(self, energy: torch.Tensor, threshold: float) -> None:
        self.advance(energy.to(self.index.device) < threshold)


class SubgoalSchedule:
    """When to move on to the next sub-goal image, for one episode (a host-side rule, used between MPC steps).

    The current sub-goal advances after `budgets[k]` steps on it (a step budget per sub-goal), or earlier when the
    observed latent distance to it has not improved by `min_gain` (relative) on its best so far for `patience`
    steps in a row (a plateau: planning toward it no longer helps); never past the last sub-goal.

        schedule = SubgoalSchedule((6, 2, 4))
        k = schedule.update(latent_distance_to_goal[schedule.index])  # before planning each step
    """

    def __init__(self, budgets: Sequence[int], min_gain: float = 0.02, patience: int = 2) -> None:
        if not budgets or any(int(b) < 1 for b in budgets):
            raise ValueError(f"budgets must be >= 1 step per sub-goal, got {list(budgets)}")
        if not 0 <= min_gain < 1 or patience < 1:
            raise ValueError(f"need 0 <= min_gain < 1 and patience >= 1, got {min_gain}, {patience}")
        self.budgets, self.min_gain, self.patience = tuple(int(b) for b in budgets), float(min_gain), int(patience)
        self.index, self.on_goal, self.best, self.stale = 0, 0, float("inf"), 0

    def update(self, distance: float) -> int:
        """Records this step's latent distance to the current sub-goal; returns the sub-goal to plan toward."""
        if distance < self.best * (1.0 - self.min_gain):
            self.best, self.stale = distance, 0
        else:
            self.stale += 1
        last = len(self.budgets) - 1
        if self.index < last and (self.on_goal >= self.budgets[self.index] or self.stale >= self.patience):
            self.index, self.on_goal, self.best, self.stale = self.index + 1, 0, float("inf"), 0
        self.on_goal += 1
        return self.index
