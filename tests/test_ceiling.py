"""robot/simtools/ceiling.py, diagnostic (b): the simulator as the planner's world model, on the real scene."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("franky_sim")
pytest.importorskip("mujoco")
os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

from robot.simtools.ceiling import CeilingJob, FrameEncoder, SimDynamics, main, run_trial, write_report  # noqa: E402
from robot.simtools.generate import SimScene  # noqa: E402
from robot.safety import SafetyConfig  # noqa: E402
from robot.simtools.sim_eval import EvalConfig  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "robot" / "assets" / "sim_demo_world_model.safetensors"


@pytest.fixture(scope="module")
def scene():
    s = SimScene("front_right", 256)
    yield s
    s.close()


def _encoder():
    from vjepa_fast.diagnostics import encoder_from_spec

    return FrameEncoder(encoder_from_spec("random=random:tiny")[1])


def test_sim_dynamics_rollout_is_the_simulator(scene):
    enc = _encoder()
    model = SimDynamics(scene, enc, SafetyConfig(max_step=0.05))
    scene.arm.reset()
    q0 = scene.arm.q.copy()
    z_now = enc([scene.render()])
    state = torch.as_tensor(scene.state(), dtype=torch.float32)[None]
    acts = torch.zeros(1, 3, 2, 7)
    acts[0, 1, :, 0] = 0.02  # 2 x 2 cm along x
    acts[0, 2, 0, 2] = -0.03  # 3 cm down, then stay
    z = model.rollout(z_now, state, acts)
    assert z.shape == (1, 3, *enc.latent_shape) and z.dtype == torch.float32
    # No move: the same frame, so the same latent up to fp32 rounding of a batch of 3 vs a batch of 1 (the
    # frames themselves are equal bit for bit); a 4 cm move changes it ~100x more than that rounding.
    rounding = float((z[0, 0] - z_now[0]).abs().max())
    assert rounding < 1e-3
    assert float((z[0, 1] - z_now[0]).abs().mean()) > 100 * rounding
    assert np.array_equal(scene.arm.q, q0)  # every candidate was undone
    # the candidate's latent is the latent of the frame the arm shows after executing that sequence
    assert scene.arm.move_to(scene.arm.commanded + np.array([0.0, 0.0, -0.03]))
    assert float((z[0, 2] - enc([scene.render()])[0]).abs().max()) < 1e-3
    scene.arm.reset()


def test_a_short_ceiling_trial_gets_closer(scene, tmp_path):
    from vjepa_fast.diagnostics import encoder_from_spec

    cfg = EvalConfig(goals=1, max_steps=2, samples=16, iterations=2, seed=1000)
    job = CeilingJob("shipped", str(SHIPPED), 0, asdict(cfg), "front_right")
    t = run_trial(job, scene, encoder_from_spec(f"shipped={SHIPPED}")[1])
    assert len(t.distances) == 3 and len(t.energies) == 3
    assert cfg.start_min - 1e-3 <= t.start_distance <= cfg.start_max + 1e-3
    # perfect dynamics and the shipped energy: each step the arm gets closer (measured 8.7 -> 4.1 cm)
    assert t.distances[1] < t.distances[0] and t.final_distance < t.start_distance
    assert t.energies[-1] < t.energies[0]
    files = write_report([t], ["shipped"], cfg, tmp_path)
    assert files["png"].stat().st_size > 0
    assert json.loads(files["json"].read_text())["summary"][0]["trials"] == 1


def test_cli_errors(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 2
    assert "--encoder" in capsys.readouterr().err
    assert main(["--encoder", "x=random:nope", "--out", str(tmp_path)]) == 2
    assert "unknown EncoderConfig preset" in capsys.readouterr().err
    assert main(["--encoder", "x=random:tiny", "--sim-camera", "moon", "--out", str(tmp_path)]) == 2
