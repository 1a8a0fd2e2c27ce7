"""Diagnostic (a): the energy-quality measure ranks a latent that encodes the position, and not a random one."""

from __future__ import annotations

import json

import pytest
import torch

from vjepa_fast.diagnostics import energy_quality, latent_l1_matrix, layer_norm_latents, write_energy_report


def _positions(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) - 0.5) * 0.3


def test_a_latent_that_encodes_the_position_ranks_it():
    xyz = _positions(120)
    # 16 tokens x 8 channels, each a smooth function of the position (official_cem.pt's toy latent)
    g = torch.Generator().manual_seed(1)
    w, b = 4 * torch.randn(3, 16 * 8, generator=g), torch.randn(16 * 8, generator=g)
    good = layer_norm_latents(torch.tanh(xyz @ w + b).view(-1, 16, 8))
    noise = layer_norm_latents(torch.randn(120, 16, 8, generator=torch.Generator().manual_seed(2)))
    q_good = energy_quality(good, xyz, name="good")
    q_noise = energy_quality(noise, xyz, name="noise")
    assert q_good.spearman_all > 0.8 and q_good.spearman_near > 0.5
    assert abs(q_noise.spearman_all) < 0.1
    assert q_good.pairs == 120 * 119 // 2 and q_good.frames == 120
    assert all(a <= b <= c for a, b, c in zip(q_good.q25, q_good.median, q_good.q75))


def test_latent_l1_matrix_is_the_planner_energy():
    z = torch.randn(4, 5, 6)
    m = latent_l1_matrix(z)
    assert torch.allclose(m[1, 3], (z[1] - z[3]).abs().mean(), atol=1e-6)
    assert torch.allclose(m.diagonal(), torch.zeros(4))


def test_report_files(tmp_path):
    xyz = _positions(40)
    z = layer_norm_latents(torch.randn(40, 4, 8))
    res = energy_quality(z, xyz, name="random", max_frames=30)
    assert res.frames == 30
    files = write_energy_report([res], tmp_path)
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    assert "| random |" in files["table"].read_text()
    assert json.loads(files["json"].read_text())[0]["frames"] == 30


def test_bad_inputs():
    with pytest.raises(ValueError, match="latents must be"):
        energy_quality(torch.zeros(5, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 3"):
        energy_quality(torch.zeros(2, 1, 4), torch.zeros(2, 3))
