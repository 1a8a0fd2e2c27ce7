"""V-JEPA 2 / 2.1 masked-latent predictor: fills the target positions of a clip from the context tokens.

V-JEPA 2.1 (`PredictorConfig.version == "vjepa2_1"`) reads the encoder's concatenated taps through an MLP
input projection, adds a modality embedding, rotates with the interleaved RoPE and also predicts the context
tokens (`predictor_proj_context`), see `PredictorConfig`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vjepa_fast.models.predictor_config import PredictorConfig
from vjepa_fast.models.encoder import _check_masks
from vjepa_fast.models.attention import FUSED
from vjepa_fast.models.layers import LAYER_NORM_EPS, Block, grid_rope, init_weights


class MaskedPredictor(nn.Module):
    """Narrow ViT over [context tokens + mask tokens], sorted by token index; parameter names as released.

    V-JEPA 2.1 parameters: `video_mod_embed` / `img_mod_embed` ([1, 1, P]), `predictor_embed.{0,2}` (the
    MLP input projection, 4 levels) or `predictor_embed` (1 level), `predictor_proj_context`.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        if not isinstance(config, PredictorConfig):
            raise TypeError(f"config must be a PredictorConfig, got {type(config).__name__}")
        self.config = config
        dim = config.predictor_embed_dim
        v21 = config.is_v21
        if v21 and config.modality_embedding:
            self.video_mod_embed = nn.Parameter(torch.zeros(1, 1, dim))
            self.img_mod_embed = nn.Parameter(torch.zeros(1, 1, dim))
        if config.num_levels > 1:
            d = config.embed_dim
            self.predictor_embed = nn.Sequential(nn.Linear(config.in_dim, d), nn.GELU(), nn.Linear(d, dim))
        else:
            self.predictor_embed = nn.Linear(config.embed_dim, dim)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, dim)) for _ in range(config.num_mask_tokens))
        self.predictor_blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.attn_impl) for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(dim, config.out_dim)
        if v21 and config.context_head:
            self.predictor_proj_context = nn.Linear(dim, config.out_dim)
        init_weights(self, self.predictor_blocks)
        # Mask tokens are zero-initialised in the reference (init_weights leaves Parameters alone).
        if v21 and config.modality_embedding:
            with torch.no_grad():
                self.video_mod_embed.normal_(std=1e-6)  # the reference's init
                self.img_mod_embed.normal_(std=1e-6)

    @property
    def returns_context(self) -> bool:
        """True when `forward` returns (targets, context): a V-JEPA 2.1 predictor with its context head."""
        return self.config.is_v21 and self.config.context_head

    def forward(
        self,
        context: torch.Tensor,
        masks_x: torch.Tensor,
        masks_y: torch.Tensor,
        mask_index: int = 1,
        *,
        mod: str = "video",
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict the target tokens (and, V-JEPA 2.1, the context tokens).

        context: [B, Kc, D_in] encoder outputs at the context indices `masks_x` (int64 [B, Kc]); D_in is the
            encoder width, or for a 2.1 predictor num_levels times it (`encoder(..., hierarchical=True)`).
        masks_y: int64 [B, Kt] target indices (disjoint from masks_x); indices are read on the configured grid.
        mask_index: picks `mask_tokens[mask_index % num_mask_tokens]` (the reference's training wrapper
            passes 0; its default is 1).
        mod: V-JEPA 2.1: "video" or "image", the modality embedding added to every token.
        Returns [B, Kt, D_out]: one prediction per target token, in `masks_y` order (D_out = D for V-JEPA 2,
        `config.out_dim` for 2.1). A 2.1 predictor with its context head (`returns_context`) returns the pair
        (targets [B, Kt, D_out], context [B, Kc, D_out]) as the reference does, the context in masks_x order.
        """
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor [B, Kc, D], got {type(context).__name__}")
        if context.dim() != 3:
            raise ValueError(f"context must be [B, Kc, D], got shape {tuple(context.shape)}")
        b, kc, d = context.shape
        cfg = self.config
        if d != cfg.in_dim:
            what = f"num_levels {cfg.num_levels} x embed_dim {cfg.embed_dim}" if cfg.num_levels > 1 else "embed_dim"
            raise ValueError(f"context width {d} != PredictorConfig {what} = {cfg.in_dim}")
        if mod not in ("video", "image"):
            raise ValueError(f"mod must be 'video' or 'image', got {mod!r}")
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
        if cfg.is_v21 and cfg.modality_embedding:
            x = x + (self.img_mod_embed if mod == "image" else self.video_mod_embed).to(x.dtype)
        rope = grid_rope(cfg.attn_impl == FUSED, torch.gather(idx, 1, order),
                         (cfg.num_frames // cfg.tubelet_size, *cfg.rope_grid_hw), cfg.head_dim,
                         style=cfg.rope_style, interp=cfg.rope_interp)
        for blk in self.predictor_blocks:
            x = blk(x, rope)
        x = self.predictor_norm(x)

        # Where each token ended up after the sort, in [masks_x, masks_y] order.
        where = torch.argsort(order, dim=1)
        if not self.returns_context:
            where = where[:, kc:]
        x = torch.gather(x, 1, where.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        if not self.returns_context:
            return self.predictor_proj(x)
        return self.predictor_proj(x[:, kc:]), self.predictor_proj_context(x[:, :kc])
