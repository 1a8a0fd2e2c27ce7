"""Robot-side maths shared by training and planning (pure torch, batched, no robot I/O)."""

from vjepa_fast.robotics.pose import (
    ACTION_DIM,
    STATE_DIM,
    actions_from_states,
    compose_action,
    euler_xyz_to_matrix,
    matrix_to_euler_xyz,
    rollout_states,
)

__all__ = [
    "ACTION_DIM",
    "STATE_DIM",
    "actions_from_states",
    "compose_action",
    "euler_xyz_to_matrix",
    "matrix_to_euler_xyz",
    "rollout_states",
]
