"""End-effector pose maths in batched torch (SPEC sections 5, 6 and 8).

Conventions (those of DROID and V-JEPA 2-AC):
- state  [..., 7] = (x, y, z in m; roll, pitch, yaw as extrinsic-xyz Euler angles in rad; gripper, 0 open .. 1 closed)
- action [..., 7] = (delta xyz; Euler angles of R_{t+1} R_t^T, extrinsic xyz; delta gripper)

Extrinsic xyz Euler (a, b, c) means: rotate about the fixed x axis by a, then fixed y by b, then fixed z by c,
so R = Rz(c) @ Ry(b) @ Rx(a) (scipy: `Rotation.from_euler("xyz", ...)`, lower case = extrinsic).

Everything broadcasts over leading dimensions, runs on any device and dtype, never syncs with the host
(no `.item()`), and is differentiable (except exactly at gimbal lock, pitch = +-pi/2, where the Euler
decomposition is not unique and the returned angles put yaw to 0).
"""

from __future__ import annotations

import torch

__all__ = [
    "STATE_DIM",
    "ACTION_DIM",
    "euler_xyz_to_matrix",
    "matrix_to_euler_xyz",
    "actions_from_states",
    "compose_action",
    "rollout_states",
]

STATE_DIM = 7
ACTION_DIM = 7

# |cos(pitch)| below this counts as gimbal lock (fp32: sqrt(eps) ~ 3.5e-4 would lose accuracy in atan2).
_GIMBAL_EPS = 1e-6


def _check_last(x: torch.Tensor, size: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must be [..., {size}], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {x.dtype}")


def euler_xyz_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """Extrinsic-xyz Euler angles [..., 3] (rad) -> rotation matrices [..., 3, 3] = Rz(c) Ry(b) Rx(a)."""
    _check_last(euler, 3, "euler")
    a, b, c = euler.unbind(-1)
    ca, sa, cb, sb, cc, sc = a.cos(), a.sin(), b.cos(), b.sin(), c.cos(), c.sin()
    rows = (
        (cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa),
        (sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa),
        (-sb, cb * sa, cb * ca),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_euler_xyz(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> extrinsic-xyz Euler angles [..., 3] (rad).

    Ranges: roll and yaw in (-pi, pi], pitch in [-pi/2, pi/2] (scipy's canonical choice). At gimbal lock
    (|cos pitch| < 1e-6) yaw is set to 0 and the whole in-plane rotation goes to roll.
    """
    if not isinstance(matrix, torch.Tensor) or matrix.dim() < 2 or tuple(matrix.shape[-2:]) != (3, 3):
        got = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"matrix must be [..., 3, 3], got {got}")
    r00, r10, r20 = matrix[..., 0, 0], matrix[..., 1, 0], matrix[..., 2, 0]
    r21, r22 = matrix[..., 2, 1], matrix[..., 2, 2]
    r11, r12 = matrix[..., 1, 1], matrix[..., 1, 2]
    cos_b = torch.sqrt(r00 * r00 + r10 * r10)
    pitch = torch.atan2(-r20, cos_b)
    locked = cos_b < _GIMBAL_EPS
    roll = torch.where(locked, torch.atan2(-r12, r11), torch.atan2(r21, r22))
    yaw = torch.where(locked, torch.zeros_like(r00), torch.atan2(r10, r00))
    return torch.stack([roll, pitch, yaw], dim=-1)


def actions_from_states(states: torch.Tensor) -> torch.Tensor:
    """Actions between consecutive states: states [..., T, 7] -> actions [..., T-1, 7].

    action_t = (xyz_{t+1} - xyz_t, euler(R_{t+1} R_t^T), g_{t+1} - g_t), the V-JEPA 2-AC DROID convention.
    """
    _check_last(states, STATE_DIM, "states")
    if states.dim() < 2 or states.shape[-2] < 2:
        raise ValueError(f"states must be [..., T, 7] with T >= 2, got shape {tuple(states.shape)}")
    rot = euler_xyz_to_matrix(states[..., 3:6])
    d_rot = rot[..., 1:, :, :] @ rot[..., :-1, :, :].transpose(-1, -2)
    return torch.cat(
        [
            states[..., 1:, :3] - states[..., :-1, :3],
            matrix_to_euler_xyz(d_rot),
            states[..., 1:, 6:7] - states[..., :-1, 6:7],
        ],
        dim=-1,
    )


def compose_action(
    state: torch.Tensor, action: torch.Tensor, *, gripper_range: tuple[float, float] | None = (0.0, 1.0)
) -> torch.Tensor:
    """The state reached by applying an action: state [..., 7], action [..., 7] (broadcast) -> [..., 7].

    xyz_new = xyz + dxyz; R_new = dR @ R; g_new = g + dg, clamped to `gripper_range` (None: no clamp).
    The inverse of `actions_from_states` up to Euler-angle wrapping (angles come back canonical).
    """
    _check_last(state, STATE_DIM, "state")
    _check_last(action, ACTION_DIM, "action")
    state, action = torch.broadcast_tensors(state, action)
    rot = euler_xyz_to_matrix(action[..., 3:6]) @ euler_xyz_to_matrix(state[..., 3:6])
    grip = state[..., 6:7] + action[..., 6:7]
    if gripper_range is not None:
        grip = grip.clamp(gripper_range[0], gripper_range[1])
    return torch.cat([state[..., :3] + action[..., :3], matrix_to_euler_xyz(rot), grip], dim=-1)


def rollout_states(
    state: torch.Tensor, actions: torch.Tensor, *, gripper_range: tuple[float, float] | None = (0.0, 1.0)
) -> torch.Tensor:
    """States visited by applying actions in order: state [..., 7], actions [..., H, 7] -> [..., H+1, 7].

    Row 0 is the start state; row h+1 = compose_action(row h, actions[..., h, :]).
    """
    _check_last(actions, ACTION_DIM, "actions")
    if actions.dim() < 2:
        raise ValueError(f"actions must be [..., H, 7], got shape {tuple(actions.shape)}")
    _check_last(state, STATE_DIM, "state")
    out = [torch.broadcast_tensors(state, actions[..., 0, :])[0]]
    for h in range(actions.shape[-2]):
        out.append(compose_action(out[-1], actions[..., h, :], gripper_range=gripper_range))
    return torch.stack(out, dim=-2)
