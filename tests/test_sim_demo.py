"""The simulator world-model recipe (train-ac, preset sim_tiny): identity init, planner-matched preprocessing,
the export's camera and data box, the shipped file, and what the removed vjepa_fast.train.sim_demo says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor
from vjepa_fast.data.preprocess import PlannerPreprocess
from vjepa_fast.train.ac import ac_forward, identity_init


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


def _episodes(root, n: int = 4, steps: int = 6) -> None:
    from vjepa_fast.data.episode_format import EpisodeWriter

    rng = np.random.default_rng(0)
    for e in range(n):
        w = EpisodeWriter(root / f"ep_{e:06d}", fps=4.0, camera="sim:side_right",
                          extra={"box_lo": [0.4, -0.1 - 0.01 * e, 0.4], "box_hi": [0.7, 0.1, 0.6 + 0.01 * e]})
        xyz = np.array([0.55, 0.0, 0.5])
        for t in range(steps + 1):
            frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            act = np.r_[rng.uniform(-0.02, 0.02, 3), 0, 0, 0, 0] if t < steps else None
            w.append(frame, np.r_[xyz, np.pi, 0.0, 0.0, 0.0], act)
            if act is not None:
                xyz = xyz + act[:3]
        w.close()


def test_train_ac_from_an_encoder_file_records_camera_and_box_and_resumes(tmp_path) -> None:
    """The sim_tiny recipe end to end on small synthetic episodes: an encoder FILE (as pretraining writes), the
    export records the camera and the data box, and a second run reuses the fresh cache and the finished
    training (same exported weights, files untouched)."""
    from vjepa_fast.checkpoints import load_safetensors, safetensors_info, save_safetensors
    from vjepa_fast.data.episodes import episode_box
    from vjepa_fast.models import EncoderConfig, VideoEncoder
    from vjepa_fast.train.ac import train_ac
    from vjepa_fast.train.config import ACTrainConfig

    _episodes(tmp_path / "eps")
    torch.manual_seed(3)
    enc_file = save_safetensors(tmp_path / "encoder.safetensors", VideoEncoder(EncoderConfig.tiny()))
    cfg = ACTrainConfig.sim_tiny(**{"data.sources": [str(tmp_path / "eps")], "data.encoder": str(enc_file),
                                    "out_dir": str(tmp_path / "run"), "total_steps": 4, "batch_size": 2,
                                    "frames_per_clip": 3, "val_fraction": 0.25, "progress": False})
    first = train_ac(cfg)
    export = Path(first["files"]["world_model"])
    info = safetensors_info(export)
    assert info["camera"] == "side_right" and info["encoder"] == str(enc_file)
    assert info["data_box"] == [[0.4, -0.13, 0.4], [0.7, 0.1, 0.63]] == episode_box(
        [str(p) for p in sorted((tmp_path / "eps").iterdir())])
    loaded = load_safetensors(export)
    ref = load_safetensors(enc_file).encoder
    for k, v in ref.state_dict().items():  # the frozen encoder is the file's, unchanged
        assert torch.equal(loaded.encoder.state_dict()[k], v)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "latent_cache" / "latents.bin", export)}
    second = train_ac(cfg)
    assert second["step"] == 4 and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for k, v in load_safetensors(export).predictor.state_dict().items():
        assert torch.equal(loaded.predictor.state_dict()[k], v)


def test_removed_train_modules_say_where_their_names_went() -> None:
    import importlib

    import pytest

    with pytest.raises(ModuleNotFoundError, match="PlannerPreprocess, episode_box and episode_cameras are in "
                                                  "vjepa_fast.data.episodes"):
        importlib.import_module("vjepa_fast.train.sim_demo")
    with pytest.raises(ModuleNotFoundError, match="vjepa_fast.probes.metrics.linear_probe_accuracy"):
        from vjepa_fast.train.probe import linear_probe_accuracy  # noqa: F401
    import vjepa_fast.probes.metrics
    import vjepa_fast.train.ac

    assert callable(vjepa_fast.probes.metrics.linear_probe_accuracy) and callable(vjepa_fast.train.ac.identity_init)
