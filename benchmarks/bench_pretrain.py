"""Pretraining step throughput: one optimizer step (target forward, 2 mask configs through encoder and
predictor, backward, AdamW, EMA), ours vs the same step without our fused ops.

Today the only fused op in the step is the EMA (`vjepa_fast.ops.ema_update_` vs Meta's torch._foreach_*);
the attention is SDPA in both until the fused attention lands. CPU: the tiny preset. GPU: ViT-L/16 on
16 x 256^2 clips, bf16 autocast, activation checkpointing.
Run: `pytest benchmarks/bench_pretrain.py --benchmark-only`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vjepa_fast.data.synthetic import write_moving_square_videos
from vjepa_fast.masks import MultiBlockMaskGenerator
from vjepa_fast.train.config import PretrainConfig, apply_overrides
from vjepa_fast.train.pretrain import Pretrainer

EMA = {"fused_ops": "auto", "reference_ops": "foreach"}


def _trainer(tmp: Path, cfg: PretrainConfig) -> Pretrainer:
    write_moving_square_videos(tmp / "clips", 1, num_frames=8, size=64)
    return Pretrainer(apply_overrides(cfg, {"data.sources": [str(tmp / "clips")], "out_dir": str(tmp / "run"),
                                            "tensorboard": False}))


def _micro_batch(batch: int, frames: int, crop: int, device: torch.device):
    clips = torch.randn(batch, 3, frames, crop, crop, device=device)
    masks = MultiBlockMaskGenerator((frames // 2, crop // 16, crop // 16), seed=0).for_step(batch, 0)
    return [(clips, [(m.context, m.target) for m in masks])]


def _bench(benchmark, trainer: Pretrainer, micro, impl: str, rounds: int, sync: bool) -> None:
    def step():
        trainer.train_step(micro, 1e-4, ema_backend=EMA[impl])
        if sync:
            torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=2)
    clips = micro[0][0].shape[0]
    benchmark.extra_info["clips_per_s"] = round(clips / benchmark.stats.stats.median, 2)
    benchmark.extra_info["batch"] = clips


@pytest.mark.parametrize("impl", list(EMA))
def test_pretrain_step_tiny_cpu(benchmark, tmp_path, impl):
    benchmark.group = "pretrain step tiny CPU (batch 8, 4x64^2)"
    trainer = _trainer(tmp_path, PretrainConfig.tiny_cpu(global_batch_size=8))
    _bench(benchmark, trainer, _micro_batch(8, 4, 64, trainer.ctx.device), impl, rounds=10, sync=False)


@pytest.mark.parametrize("impl", list(EMA))
def test_pretrain_step_vit_large_cuda(benchmark, tmp_path, impl):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    benchmark.group = "pretrain step ViT-L CUDA (batch 4, 16x256^2, bf16)"
    cfg = PretrainConfig.vit_large(**{"global_batch_size": 4, "data.num_frames": 16, "data.crop_size": 256,
                                      "parallel": "none"})
    trainer = _trainer(tmp_path, cfg)
    _bench(benchmark, trainer, _micro_batch(4, 16, 256, trainer.ctx.device), impl, rounds=5, sync=True)
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    benchmark.extra_info["peak_mem_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
