"""Pose maths (vjepa_fast.robotics.pose) against known rotations and scipy's Rotation as an oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vjepa_fast.robotics import (
    actions_from_states,
    compose_action,
    euler_xyz_to_matrix,
    matrix_to_euler_xyz,
    rollout_states,
)

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

torch.set_default_dtype(torch.float32)


def _random_euler(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    e = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    e[:, 1] *= 0.5  # pitch in [-pi/2, pi/2]: the canonical range, so the round trip is the identity
    return e


def test_known_rotations():
    half = math.pi / 2
    # 90 deg about x maps y -> z; about y maps z -> x; about z maps x -> y.
    rx = euler_xyz_to_matrix(torch.tensor([half, 0.0, 0.0]))
    ry = euler_xyz_to_matrix(torch.tensor([0.0, half, 0.0]))
    rz = euler_xyz_to_matrix(torch.tensor([0.0, 0.0, half]))
    e = torch.eye(3)
    torch.testing.assert_close(rx @ e[1], e[2], atol=1e-6, rtol=0)
    torch.testing.assert_close(ry @ e[2], e[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(rz @ e[0], e[1], atol=1e-6, rtol=0)
    # Extrinsic xyz: x first, then z (both about fixed axes) = Rz @ Rx.
    rxz = euler_xyz_to_matrix(torch.tensor([half, 0.0, half]))
    torch.testing.assert_close(rxz, rz @ rx, atol=1e-6, rtol=0)
    torch.testing.assert_close(euler_xyz_to_matrix(torch.zeros(3)), e)


def test_matches_scipy_both_ways():
    e = _random_euler(500, 0)
    ours = euler_xyz_to_matrix(e)
    ref = torch.from_numpy(Rotation.from_euler("xyz", e.numpy()).as_matrix())
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    back = matrix_to_euler_xyz(ref)
    torch.testing.assert_close(back, torch.from_numpy(Rotation.from_matrix(ref.numpy()).as_euler("xyz")),
                               atol=1e-9, rtol=0)
    torch.testing.assert_close(back, e, atol=1e-9, rtol=0)


def test_batched_leading_dims_and_float32():
    e = _random_euler(24, 1).float().view(2, 3, 4, 3)
    m = euler_xyz_to_matrix(e)
    assert m.shape == (2, 3, 4, 3, 3) and m.dtype == torch.float32
    torch.testing.assert_close(matrix_to_euler_xyz(m), e, atol=2e-5, rtol=0)


def test_gimbal_lock_gives_same_rotation():
    for pitch in (math.pi / 2, -math.pi / 2):
        e = torch.tensor([[0.3, pitch, -0.4]], dtype=torch.float64)
        m = euler_xyz_to_matrix(e)
        back = matrix_to_euler_xyz(m)
        assert torch.isfinite(back).all()
        assert back[0, 2] == 0
        torch.testing.assert_close(euler_xyz_to_matrix(back), m, atol=1e-9, rtol=0)


def _scipy_actions(states: np.ndarray) -> np.ndarray:
    rot = Rotation.from_euler("xyz", states[:, 3:6])
    d = (rot[1:] * rot[:-1].inv()).as_euler("xyz")  # R_{t+1} R_t^T
    return np.concatenate([states[1:, :3] - states[:-1, :3], d, states[1:, 6:] - states[:-1, 6:]], axis=1)


def test_actions_from_states_matches_scipy():
    g = torch.Generator().manual_seed(2)
    states = torch.cat([torch.randn(10, 3, generator=g, dtype=torch.float64), _random_euler(10, 3),
                        torch.rand(10, 1, generator=g, dtype=torch.float64)], dim=1)
    ours = actions_from_states(states)
    torch.testing.assert_close(ours, torch.from_numpy(_scipy_actions(states.numpy())), atol=1e-9, rtol=0)
    # Batched over a leading dim: each row equals the unbatched result.
    batched = actions_from_states(torch.stack([states, states.flip(0)]))
    torch.testing.assert_close(batched[0], ours)
    torch.testing.assert_close(batched[1], actions_from_states(states.flip(0)))


def test_hand_computed_action():
    # Rotate 0.1 rad about z while moving 2 cm in x and closing the gripper by 0.5.
    s0 = torch.tensor([0.5, 0.0, 0.3, math.pi, 0.0, 0.0, 0.0], dtype=torch.float64)
    s1 = torch.tensor([0.52, 0.0, 0.3, math.pi, 0.0, 0.1, 0.5], dtype=torch.float64)
    a = actions_from_states(torch.stack([s0, s1]))[0]
    torch.testing.assert_close(a, torch.tensor([0.02, 0.0, 0.0, 0.0, 0.0, 0.1, 0.5], dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_compose_inverts_actions_and_rollout():
    g = torch.Generator().manual_seed(4)
    states = torch.cat([torch.randn(6, 3, generator=g, dtype=torch.float64), _random_euler(6, 5),
                        torch.rand(6, 1, generator=g, dtype=torch.float64)], dim=1)
    actions = actions_from_states(states)
    nxt = compose_action(states[:-1], actions)
    torch.testing.assert_close(nxt, states[1:], atol=1e-9, rtol=0)
    traj = rollout_states(states[0], actions)
    torch.testing.assert_close(traj, states, atol=1e-9, rtol=0)
    # One state, many candidate action sequences (what the planner does): broadcast.
    many = rollout_states(states[0], actions.expand(5, -1, -1))
    assert many.shape == (5, 6, 7)
    # Gripper stays in [0, 1].
    out = compose_action(states[0], torch.tensor([0, 0, 0, 0, 0, 0, 5.0], dtype=torch.float64))
    assert out[6] == 1.0


def test_differentiable():
    e = torch.tensor([[0.2, -0.3, 0.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: matrix_to_euler_xyz(euler_xyz_to_matrix(x)), (e,))
    s = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.5], dtype=torch.float64)
    a = torch.tensor([0.01, 0.0, 0.0, 0.05, 0.0, -0.02, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: compose_action(s, x), (a,))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        euler_xyz_to_matrix(torch.zeros(4))
    with pytest.raises(ValueError, match="T >= 2"):
        actions_from_states(torch.zeros(1, 7))
    with pytest.raises(ValueError, match="3, 3"):
        matrix_to_euler_xyz(torch.zeros(2, 3))
