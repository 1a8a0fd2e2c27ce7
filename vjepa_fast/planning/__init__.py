"""Latent MPC planning with V-JEPA 2-AC: world model rollouts and the batched CEM planner (SPEC section 6).

Depends on models and ops only (never on train/ or robot/): robot/ drives the planner, not the other way round.
"""

from vjepa_fast.planning.cem import (
    CEMPlanner,
    GoalSequence,
    PlannerConfig,
    PlanResult,
    SubgoalSchedule,
    l1_energy,
    shift_plan,
    to_actions,
)
from vjepa_fast.planning.world_model import PlanningModel, WorldModel

__all__ = [
    "CEMPlanner",
    "GoalSequence",
    "PlanResult",
    "PlannerConfig",
    "PlanningModel",
    "SubgoalSchedule",
    "WorldModel",
    "l1_energy",
    "shift_plan",
    "to_actions",
]
