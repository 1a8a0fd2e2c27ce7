"""V-JEPA 2 masked-latent predictor: fills the target positions of a clip from the context tokens."""

from __future__ import annotations

import torch
import torch.nn as nn

from vjepa_fast.models.config import PredictorConfig
from vjepa_fast.models.encoder import _check_masks
from vjepa_fast.models.attention import FUSED
from vjepa_fast.models.layers import LAYER_NORM_EPS, Block, grid_rope, init_weights


class MaskedPredictor(nn.Module):
    """Narrow ViT over [context tokens + mask tokens], sorted by token index; parameter names as released."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        if not isinstance(config, PredictorConfig):
            raise TypeError(f"config must be a PredictorConfig, got {type(config).__name__}")
        self.config = config
        dim = config.predictor_embed_dim
        self.predictor_embed = nn.Linear(config.embed_dim, dim)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, dim)) for _ in range(config.num_mask_tokens))
        self.predictor_blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.attn_impl) for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(dim, config.embed_dim)
        init_weights(self, self.predictor_blocks)
        # Mask tokens are zero-initialised in the reference (init_weights leaves Parameters alone).

    def forward(
        self,
        context: torch.Tensor,
        masks_x: torch.Tensor,
        masks_y: torch.Tensor,
        mask_index: int = 1,
    ) -> torch.Tensor:
        """Predict the target tokens.

        context: [B, Kc, D] encoder outputs at the context indices `masks_x` (int64 [B, Kc]);
        masks_y: int64 [B, Kt] target indices (disjoint from masks_x); indices are read on the configured grid.
        mask_index: picks `mask_tokens[mask_index % num_mask_tokens]` (the reference's training wrapper
            passes 0; its default is 1).
        Returns [B, Kt, D]: one prediction per target token, in `masks_y` order.
        """
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor [B, Kc, D], got {type(context).__name__}")
        if context.dim() != 3:
            raise ValueError(f"context must be [B, Kc, D], got shape {tuple(context.shape)}")
        b, kc, d = context.shape
        if d != self.config.embed_dim:
            raise ValueError(f"context width {d} != PredictorConfig.embed_dim {self.config.embed_dim}")
        _check_masks(masks_x, b, "masks_x")
        _check_masks(masks_y, b, "masks_y")
        if masks_x.shape[1] != kc:
            raise ValueError(f"masks_x has {masks_x.shape[1]} indices but context has {kc} tokens")
        if not isinstance(mask_index, int):
            raise TypeError(f"mask_index must be an int, got {type(mask_index).__name__}")

        x = self.predictor_embed(context)
        kt = masks_y.shape[1]
        token = self.mask_tokens[mask_index % self.config.num_mask_tokens]
        x = torch.cat([x, token.to(x.dtype).expand(b, kt, -1)], dim=1)
        idx = torch.cat([masks_x, masks_y], dim=1)

        # Run the blocks in token-index order, as the reference does (attention itself is order-free, but
        # this keeps the summation order and the positions in one place).
        order = torch.argsort(idx, dim=1, stable=True)
        x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cfg = self.config
        rope = grid_rope(cfg.attn_impl == FUSED, torch.gather(idx, 1, order),
                         (cfg.num_frames // cfg.tubelet_size, *cfg.grid_hw), cfg.head_dim)
        for blk in self.predictor_blocks:
            x = blk(x, rope)
        x = self.predictor_norm(x)

        # Where each target token ended up after the sort, in masks_y order.
        where = torch.argsort(order, dim=1)[:, kc:]
        x = torch.gather(x, 1, where.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.predictor_proj(x)
