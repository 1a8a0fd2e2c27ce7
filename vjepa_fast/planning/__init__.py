"""Latent MPC planning with V-JEPA 2-AC: world model rollouts, the batched CEM planner (SPEC section 6), and
MPPI, iCEM, gradient and CEM + gradient planners behind the same `plan` interface (`make_planner`).

Depends on models and ops only (never on train/ or robot/): robot/ drives the planner, not the other way round.
"""

from vjepa_fast.planning.cem import CEMPlanner
from vjepa_fast.planning.goals import GoalSequence, SubgoalSchedule
from vjepa_fast.planning.planner_config import PlannerConfig
from vjepa_fast.planning.plans import PlanResult, l1_energy, shift_plan, to_actions
from vjepa_fast.planning.planners import PLANNERS, make_planner
from vjepa_fast.planning.world_model import PlanningModel, WorldModel

__all__ = [
    "CEMPlanner",
    "PLANNERS",
    "make_planner",
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
