"""The V-JEPA 2 pretraining objective (SPEC section 4): masked latent prediction against a target encoder;
and V-JEPA 2.1's (four-tap targets, a context loss with distance weights and a ramped weight)."""

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


# ---------------------------------------------------------------------------------------- V-JEPA 2.1
# The 2.1 objective (app/vjepa_2_1/train.py): targets are the target encoder's four taps, each layer-normed;
# the loss is L1 on the predicted target tokens plus lambda x L1 on the predicted context tokens, the latter
# optionally divided per token by sqrt(distance to the nearest target token); lambda is ramped.

LAMBDA_START, LAMBDA_END = 15_000, 30_000  # Meta's Lambda_LinearWarmupHold defaults (iterations)


def hierarchical_targets(target_encoder: nn.Module, clips: torch.Tensor, *, levels: int = 4) -> torch.Tensor:
    """V-JEPA 2.1 targets: `target_encoder(clips, hierarchical=True)`, each of its `levels` D-wide chunks
    layer-normed without affine (eps 1e-5), in float32, no gradient.

    clips: [B, C, T, H, W] (T = 1: the image path) -> [B, N, levels * D].
    """
    with torch.no_grad():
        h = target_encoder(clips, hierarchical=True).float()
        if h.size(-1) % levels:
            raise ValueError(f"target width {h.size(-1)} is not divisible by levels = {levels}")
        d = h.size(-1) // levels
        return F.layer_norm(h.unflatten(-1, (levels, d)), (d,), eps=TARGET_LN_EPS).flatten(-2)


def context_distance_weights(context: torch.Tensor, target: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """sqrt of the Euclidean (t, h, w) distance, in token units, from each context token to the nearest
    target token (Meta's `compute_mask_distance` without its offset); the weighted context loss divides by it.

    context: int64 [B, Kc], target: int64 [B, Kt] token indices on a (Hp, Wp) grid per time step (Meta passes
    the square crop grid, crop // patch). Returns float32 [B, Kc], >= 1 for disjoint masks.
    """
    from vjepa_fast.models.rope import grid_positions

    def coords(idx: torch.Tensor) -> torch.Tensor:
        return torch.stack(grid_positions(idx, grid_hw), dim=-1).float()  # [B, K, 3]

    diff = coords(context).unsqueeze(2) - coords(target).unsqueeze(1)  # [B, Kc, Kt, 3]
    return diff.square().sum(-1).sqrt().amin(-1).sqrt()


def context_lambda(step: int, value: float, *, progressive: bool, start: int = LAMBDA_START,
                   end: int = LAMBDA_END) -> float:
    """The context-loss weight at optimizer step `step`: `value`, or with `progressive` 0 before `start`, a
    linear ramp to `value` at `end`, then `value` (Meta's Lambda_LinearWarmupHold)."""
    if not progressive:
        return float(value)
    if end <= start:
        raise ValueError(f"lambda ramp needs end > start, got start={start}, end={end}")
    if step < start:
        return 0.0
    if step >= end:
        return float(value)
    return float(value) * (step - start) / (end - start)


def v21_loss_terms(
    predictions: Sequence[tuple[torch.Tensor, torch.Tensor]],
    targets: torch.Tensor,
    mask_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    context_weight: float,
    distance_weights: Sequence[torch.Tensor] | None = None,
    loss_exp: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The 2.1 loss from the predictor's outputs.

    predictions: per mask config (target predictions [B, Kt, L*D], context predictions [B, Kc, L*D]);
    targets: [B, N, L*D] from `hierarchical_targets`; mask_pairs: per config (context [B, Kc], target [B, Kt]);
    distance_weights: None, or per config [B, Kc] from `context_distance_weights` (the context error of each
    token is divided by it).
    Returns (total, prediction loss, context loss, per-config totals): prediction and context losses are the
    means over configs of mean(|z - h|^p) / p; total = prediction + context_weight * context.
    """
    if not mask_pairs or len(predictions) != len(mask_pairs):
        raise ValueError(f"need one (targets, context) prediction per mask pair: {len(predictions)} predictions, "
                         f"{len(mask_pairs)} mask pairs")
    if distance_weights is not None and len(distance_weights) != len(mask_pairs):
        raise ValueError(f"distance_weights has {len(distance_weights)} entries for {len(mask_pairs)} mask pairs")
    d = targets.size(-1)
    pred_terms, ctx_terms = [], []
    for j, ((z, z_ctx), (context, target)) in enumerate(zip(predictions, mask_pairs)):
        h = torch.gather(targets, 1, target.unsqueeze(-1).expand(-1, -1, d))
        h_ctx = torch.gather(targets, 1, context.unsqueeze(-1).expand(-1, -1, d))
        pred_terms.append((z - h).abs().pow(loss_exp).mean() / loss_exp)
        err = (z_ctx - h_ctx).abs().pow(loss_exp)
        if distance_weights is not None:
            err = err / distance_weights[j].unsqueeze(-1)
        ctx_terms.append(err.mean() / loss_exp)
    loss_pred = torch.stack(pred_terms).mean()
    loss_ctx = torch.stack(ctx_terms).mean()
    per_config = [p + context_weight * c for p, c in zip(pred_terms, ctx_terms)]
    return loss_pred + context_weight * loss_ctx, loss_pred, loss_ctx, per_config


def jepa21_loss(
    encoder: nn.Module,
    predictor: nn.Module,
    targets: torch.Tensor,
    clips: torch.Tensor,
    mask_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    context_weight: float,
    weight_distance: bool,
    grid_hw: tuple[int, int],
    loss_exp: float = 1.0,
    mask_index: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The V-JEPA 2.1 training loss of one batch (`v21_loss_terms` on a 2.1 encoder and predictor).

    clips: [B, C, T, H, W]; a 1-frame batch (T = 1) is an image batch: the encoder's image path and the
    predictor's image embedding (`mod="image"`), as Meta's training does on its image ranks.
    grid_hw: the grid the distance weights are read on (Meta: crop // patch on both axes).
    Returns (total, prediction loss, context loss, per-config totals).
    """
    mod = "image" if clips.shape[2] == 1 else "video"
    predictions = []
    for context, target in mask_pairs:
        z = encoder(clips, masks=context, hierarchical=True)
        predictions.append(predictor(z, context, target, mask_index=mask_index, mod=mod))
    weights = [context_distance_weights(c, t, grid_hw) for c, t in mask_pairs] if weight_distance else None
    return v21_loss_terms(predictions, targets, mask_pairs, context_weight=context_weight,
                          distance_weights=weights, loss_exp=loss_exp)
