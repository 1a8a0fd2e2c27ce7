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


def test_episode_latents_are_the_planners(tmp_path):
    """Frames of a recorded episode encode exactly as WorldModel.encode_image_files does at plan time."""
    import numpy as np

    from vjepa_fast.data.episode_format import EpisodeWriter
    from vjepa_fast.diagnostics import episode_latents
    from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor, EncoderConfig, VideoEncoder
    from vjepa_fast.planning import WorldModel

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (72, 80, 3), dtype=np.uint8) for _ in range(5)]
    w = EpisodeWriter(tmp_path / "ep", fps=4.0, camera="test")
    for i, f in enumerate(frames):
        w.append(f, np.r_[0.5 + 0.01 * i, 0.0, 0.4, 0, 0, 0, 0], None if i == 4 else np.zeros(7), timestamp=0.25 * i)
    w.close()
    torch.manual_seed(0)
    enc = VideoEncoder(EncoderConfig.tiny()).eval()
    z, xyz = episode_latents(enc, [tmp_path / "ep"], max_frames=None, batch_size=2)
    wm = WorldModel(enc, ActionConditionedPredictor(ACPredictorConfig.tiny()), dtype="float32")
    torch.testing.assert_close(z, wm.encode_image_files(frames), atol=1e-5, rtol=1e-5)
    assert torch.allclose(xyz[:, 0], torch.tensor([0.5, 0.51, 0.52, 0.53, 0.54], dtype=torch.float64))
    z3, _ = episode_latents(enc, [tmp_path / "ep"], max_frames=3)
    assert z3.shape[0] == 3


def test_energy_quality_command(tmp_path, capsys):
    import numpy as np

    from vjepa_fast.cli import main
    from vjepa_fast.data.episode_format import EpisodeWriter

    rng = np.random.default_rng(1)
    w = EpisodeWriter(tmp_path / "eps" / "ep0", fps=4.0, camera="test")
    for i in range(6):
        w.append(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), np.r_[0.5, 0.02 * i, 0.4, 0, 0, 0, 0],
                 None if i == 5 else np.zeros(7), timestamp=0.25 * i)
    w.close()
    assert main(["energy-quality", "--episodes", str(tmp_path / "eps"), "--encoder", "a=random:tiny",
                 "--encoder", "b=random:tiny@32", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| a |" in out and "| b |" in out and (tmp_path / "out" / "energy_quality.png").is_file()
    with pytest.raises(SystemExit, match="unknown EncoderConfig preset"):
        main(["energy-quality", "--episodes", str(tmp_path / "eps"), "--encoder", "a=random:huge9"])


def test_position_probe_reads_a_linear_code_and_not_noise():
    from vjepa_fast.diagnostics import position_probe

    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(200, 3, generator=g, dtype=torch.float64) * 0.2
    mix = torch.randn(3, 4 * 8, generator=g, dtype=torch.float64)
    coded = (xyz @ mix).view(200, 4, 8) + 1e-4 * torch.randn(200, 4, 8, generator=g, dtype=torch.float64)
    noise = torch.randn(200, 4, 8, generator=g, dtype=torch.float64)
    spread = float((xyz - xyz.mean(0)).pow(2).sum(1).mean().sqrt())  # what the mean position alone scores
    assert position_probe(coded, xyz) < 0.1 * spread
    assert position_probe(noise, xyz) > 0.8 * spread
    with pytest.raises(ValueError, match="at least 8"):
        position_probe(coded[:5], xyz[:5])
