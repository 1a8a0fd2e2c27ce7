"""The simulator demo world model recipe: identity init, planner-matched preprocessing, the shipped file."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor
from vjepa_fast.train.ac import ac_forward
from vjepa_fast.train.sim_demo import PlannerPreprocess, identity_init


def test_identity_init_starts_at_the_copy_baseline() -> None:
    cfg = ACPredictorConfig.tiny(img_size=64, num_frames=16, depth=3, predictor_embed_dim=128)
    model = identity_init(ActionConditionedPredictor(cfg))
    n = cfg.tokens_per_frame
    z = F.layer_norm(torch.randn(2, 4 * n, 96), (96,), eps=1e-5)
    tf, ar = ac_forward(model, z, torch.randn(2, 3, 7), torch.randn(2, 4, 7), rollout_steps=2)
    torch.testing.assert_close(tf, z[:, :-n], atol=1e-4, rtol=0)  # frame t predicted as frame t
    torch.testing.assert_close(ar, z[:, :n].repeat(1, 2, 1), atol=1e-4, rtol=0)


def test_cache_preprocessing_is_the_planners() -> None:
    from vjepa_fast.data.transforms import preprocess_image

    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8))
    ours = PlannerPreprocess(size=64)(frames)
    planner = torch.stack([preprocess_image(f.numpy(), 64) for f in frames])
    assert ours.shape == (3, 3, 64, 64)
    torch.testing.assert_close(ours, planner)
    assert PlannerPreprocess(size=64).to_dict()["kind"] == "eval_resize_center_crop"


def test_run_mpc_defaults_to_the_shipped_sim_model() -> None:
    import pytest

    from robot.run_mpc import SIM_DEMO_MODEL, build_world_model, parse_args

    if not SIM_DEMO_MODEL.is_file():
        pytest.skip("robot/assets/sim_demo_world_model.safetensors not present")
    assert SIM_DEMO_MODEL.stat().st_size < 15e6
    wm = build_world_model(parse_args(["--sim", "--goal-offset", "0", "0", "0"]))
    assert wm.latent_shape == (16, 96) and wm.image_size == 64
    assert wm.predictor.predictor_blocks[0].attn.proj.weight.abs().sum() > 0  # trained, not the identity init
    # --random-model still forces random weights (the tiny preset: same shapes, different weights).
    rnd = build_world_model(parse_args(["--sim", "--goal-offset", "0", "0", "0", "--random-model", "tiny"]))
    assert not torch.equal(rnd.predictor.predictor_proj.weight, wm.predictor.predictor_proj.weight)
