"""Frozen-feature probes: a quick check that an encoder's features carry a known factor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def clip_features(encoder: nn.Module, clips: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Per-clip features [B, T' * D]: encoder tokens averaged over space, one vector per tubelet step.

    clips: [B, C, T, H, W]. Keeping the time axis lets a linear probe read motion, not only appearance.
    """
    out = []
    for i in range(0, clips.shape[0], batch_size):
        x = clips[i : i + batch_size]
        tokens = encoder(x)  # [b, N, D]
        t = x.shape[2] // encoder.config.tubelet_size
        out.append(tokens.reshape(x.shape[0], t, -1, tokens.shape[-1]).mean(2).flatten(1))
    return torch.cat(out)


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          *, weight_decay: float = 1e-3, steps: int = 300, seed: int = 0) -> float:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS); test accuracy."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(xs.shape[1], classes, generator=g)).requires_grad_(True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w + b, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xt @ w + b).argmax(1) == test_y).float().mean())
