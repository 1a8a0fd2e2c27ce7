"""Held-out evaluation of an AC predictor (teacher forcing and rollout L1 per horizon, against the
copy-the-latent baselines), its table and plot, and the GPU memory probe of one training step."""

from __future__ import annotations

import dataclasses
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vjepa_fast.models import ACKVCache, ACPredictorConfig, ActionConditionedPredictor
from vjepa_fast.train.ac_objective import _ln, _unwrap, ac_losses
from vjepa_fast.train.optim import param_groups

__all__ = ["ACEvalResult", "evaluate_ac", "ac_peak_memory"]


@dataclass
class ACEvalResult:
    """Held-out L1 per horizon k = 1..K (lists indexed k-1).

    teacher_forcing[k]: predict frame k from ground-truth frames 0..k-1 (one step ahead);
    rollout[k]: predict frame k autoregressively from frame 0 only (k steps ahead; rollout[1] = tf[1]);
    copy_1step[k] = |h_{k-1} - h_k| and copy_kstep[k] = |h_0 - h_k|: the "predict no change" baselines.
    """

    teacher_forcing: list[float]
    rollout: list[float]
    copy_1step: list[float]
    copy_kstep: list[float]
    num_clips: int

    def table(self) -> str:
        lines = [f"held-out L1 over {self.num_clips} clips",
                 f"{'k':>3} | {'teacher-forcing':>15} {'copy h(k-1)':>12} {'gain':>6} | "
                 f"{'rollout':>8} {'copy h(0)':>10} {'gain':>6}"]
        for k in range(len(self.rollout)):
            tf, c1, ar, ck = self.teacher_forcing[k], self.copy_1step[k], self.rollout[k], self.copy_kstep[k]
            lines.append(f"{k + 1:>3} | {tf:>15.4f} {c1:>12.4f} {1 - tf / c1:>6.1%} | "
                         f"{ar:>8.4f} {ck:>10.4f} {1 - ar / ck:>6.1%}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def plot(self, path: str | os.PathLike) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ks = list(range(1, len(self.rollout) + 1))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ks, self.teacher_forcing, "o-", label="teacher forcing")
        ax.plot(ks, self.rollout, "s-", label="rollout")
        ax.plot(ks, self.copy_1step, "o--", color="gray", label="copy previous latent")
        ax.plot(ks, self.copy_kstep, "s--", color="black", label="copy first latent")
        ax.set_xlabel("k (steps ahead)")
        ax.set_ylabel("held-out L1")
        ax.set_xticks(ks)
        ax.legend()
        fig.tight_layout()
        p = Path(path)
        fig.savefig(p, dpi=100)
        plt.close(fig)
        return p


@torch.no_grad()
def evaluate_ac(
    predictor: nn.Module,
    dataset: Dataset,
    max_steps: int | None = None,
    *,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
) -> ACEvalResult:
    """Teacher-forcing and rollout L1 for k = 1..K on a clip dataset of latents (e.g. CachedClipDataset over
    held-out episodes), with the copy-the-latent baselines. K = max_steps (default and at most T-1)."""
    model = _unwrap(predictor)
    was_training = model.training
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    n = model.config.tokens_per_frame
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums: dict[str, torch.Tensor] | None = None
    count = 0
    k_max = None
    for bi, batch in enumerate(loader):
        if max_batches is not None and bi >= max_batches:
            break
        h = batch["latents"].to(dev)  # [B, T, N, D]
        a, s = batch["actions"].to(dev), batch["states"].to(dev)
        b, t = h.shape[:2]
        k_max = t - 1 if max_steps is None else min(int(max_steps), t - 1)
        if sums is None:
            sums = {name: torch.zeros(k_max, dtype=torch.float64) for name in ("tf", "ar", "c1", "ck")}
        ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with ctx:
            tf = _ln(model(h[:, :k_max].flatten(1, 2), a[:, :k_max], s[:, :k_max]).float()).view(b, k_max, n, -1)
            cache = ACKVCache()
            z = h[:, 0]
            preds = []
            for k in range(k_max):  # the KV cache keeps each rollout step to one new frame of compute
                z = _ln(model(z, a[:, k : k + 1], s[:, k : k + 1], cache=cache).float())
                preds.append(z)
        ar = torch.stack(preds, dim=1)
        target = h[:, 1 : k_max + 1]
        per = lambda x: (x - target).abs().mean(dim=(2, 3)).sum(0).double().cpu()  # noqa: E731
        sums["tf"] += per(tf)
        sums["ar"] += per(ar)
        sums["c1"] += per(h[:, :k_max])
        sums["ck"] += per(h[:, :1].expand(-1, k_max, -1, -1))
        count += b
    model.train(was_training)
    if not count:
        raise ValueError("evaluate_ac: the dataset gave no clip")
    mean = {k: (v / count).tolist() for k, v in sums.items()}
    return ACEvalResult(mean["tf"], mean["ar"], mean["c1"], mean["ck"], count)


def ac_peak_memory(
    config: ACPredictorConfig | None = None, *, batch: int = 8, frames: int = 8, amp: bool = True,
    device: str = "cuda", rollout_steps: int = 2,
) -> dict[str, float]:
    """Peak GPU memory (GiB) of one training step (forward + backward + AdamW) of `ac_losses` at the given
    shapes; default: the official predictor (ViT-g widths), batch 8, 8 frames of 256 + 2 tokens."""
    if not torch.cuda.is_available():
        raise RuntimeError("ac_peak_memory needs a CUDA device")
    config = config or ACPredictorConfig.vit_giant()
    dev = torch.device(device)
    model = ActionConditionedPredictor(config).to(dev)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1e-4)
    n = config.tokens_per_frame
    z = _ln(torch.randn(batch, frames * n, config.embed_dim, device=dev))
    a = torch.randn(batch, frames - 1, config.action_dim, device=dev)
    s = torch.randn(batch, frames, config.action_dim, device=dev)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
    for _ in range(2):  # the second step has AdamW state allocated: that is the steady-state peak
        torch.cuda.reset_peak_memory_stats(dev)
        with ctx:
            tf, ar = ac_losses(model, z, a, s, rollout_steps)
        (tf + ar).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)
    return {"peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
