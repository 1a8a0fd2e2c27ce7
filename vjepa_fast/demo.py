"""The CPU demo job: a few real V-JEPA 2 pretraining steps of a tiny model on synthetic video files."""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vjepa_fast.data.synthetic import write_moving_square_videos
from vjepa_fast.data.video import VideoClipDataset, WeightedMixtureSampler
from vjepa_fast.masks import MultiBlockMaskGenerator
from vjepa_fast.models import EncoderConfig, MaskedPredictor, PredictorConfig, VideoEncoder
from vjepa_fast.ops import ema_update_
from vjepa_fast.train.objective import jepa_loss, normalized_targets


def run_demo(steps: int = 30, workdir: str | None = None, seed: int = 0, batch_size: int = 4) -> list[float]:
    """Runs `steps` pretraining steps; returns the losses. Prints a progress bar and a summary."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp) / "synthetic_clips"
        t0 = time.perf_counter()
        write_moving_square_videos(folder, 8, num_frames=32, size=64, seed=seed)
        print(f"wrote 8 synthetic mp4 clips to {folder} in {time.perf_counter() - t0:.1f}s")

        enc_cfg = EncoderConfig.tiny()  # 96 wide, 2 blocks, 64 px, 4 frames
        dataset = VideoClipDataset([str(folder)], num_frames=enc_cfg.num_frames, fps=4.0, crop_size=64, seed=seed)
        sampler = WeightedMixtureSampler.for_dataset(dataset, num_samples=steps * batch_size, seed=seed)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)

        encoder = VideoEncoder(enc_cfg)
        predictor = MaskedPredictor(PredictorConfig.tiny())
        target = copy.deepcopy(encoder).requires_grad_(False)
        params = list(encoder.parameters()) + list(predictor.parameters())
        optim = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.04)
        grid = (enc_cfg.num_frames // enc_cfg.tubelet_size, *enc_cfg.grid_hw)
        masks = MultiBlockMaskGenerator(grid, seed=seed)

        losses: list[float] = []
        times: list[float] = []
        bar = tqdm(loader, total=steps, desc="pretrain (tiny, CPU)", unit="step")
        for step, batch in enumerate(bar):
            t = time.perf_counter()
            clips = batch["video"]
            pairs = [(p.context, p.target) for p in masks.for_step(clips.shape[0], step)]
            loss, _ = jepa_loss(encoder, predictor, normalized_targets(target, clips), clips, pairs)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            ema_update_(list(target.parameters()), list(encoder.parameters()), 0.99925)
            times.append(time.perf_counter() - t)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        skipped = getattr(dataset, "skipped", {})
    median_ms = 1e3 * sorted(times)[len(times) // 2]
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps; median step {median_ms:.0f} ms; "
          f"skipped files: {dict(skipped) or 0}")
    print("The main job, closed-loop latent MPC on the simulated Franka, is `bash scripts/demo.sh` "
          "(robot/run_mpc.py --sim).")
    return losses
