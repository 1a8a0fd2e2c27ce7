"""The V-JEPA 2 pretraining objective (SPEC section 4): masked latent prediction against a target encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
import torch.nn.functional as F

from vjepa_fast.constants import TARGET_LN_EPS
from torch import nn


@overload
def normalized_targets(
    target_encoder: nn.Module, clips: torch.Tensor, *, return_features: Literal[False] = False
) -> torch.Tensor: ...


@overload
def normalized_targets(
    target_encoder: nn.Module, clips: torch.Tensor, *, return_features: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...


def normalized_targets(
    target_encoder: nn.Module, clips: torch.Tensor, *, return_features: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """layer_norm(target_encoder(clips)) in float32, without affine, eps 1e-5, no gradient.

    clips [B, C, T, H, W] -> targets float32 [B, N, D]: the features are cast to float32 before the norm (a
    no-op for a float32 encoder; under bf16 autocast the encoder may return bf16).
    return_features: also return the raw encoder output h [B, N, D] (its dtype), e.g. for a collapse monitor.
    """
    with torch.no_grad():
        h = target_encoder(clips)
        targets = F.layer_norm(h.float(), (h.size(-1),), eps=TARGET_LN_EPS)
    return (targets, h) if return_features else targets


def jepa_loss(
    encoder: nn.Module,
    predictor: nn.Module,
    targets: torch.Tensor,
    clips: torch.Tensor,
    mask_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_exp: float = 1.0,
    mask_index: int = 0,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean over mask configs of mean(|predictor(encoder(clips, ctx), ctx, tgt) - targets[tgt]|^p) / p.

    targets: [B, N, D] from `normalized_targets`; clips: [B, C, T, H, W];
    mask_pairs: per mask config (context [B, Kc], target [B, Kt]) int64 token indices.
    mask_index: the mask token the predictor uses. Meta's training wrapper passes the index of the
        frames-per-clip group (0 with one clip length), not of the mask config.
    Returns (loss, per-config losses).
    """
    if not mask_pairs:
        raise ValueError("mask_pairs must hold at least one (context, target) pair")
    d = targets.size(-1)
    per_config = []
    for context, target in mask_pairs:
        z = encoder(clips, masks=context)
        pred = predictor(z, context, target, mask_index=mask_index)
        h = torch.gather(targets, 1, target.unsqueeze(-1).expand(-1, -1, d))
        per_config.append((pred - h).abs().pow(loss_exp).mean() / loss_exp)
    return torch.stack(per_config).mean(), per_config
