"""V-JEPA 2 video encoder: 3D tubelet patch embedding, pre-norm RoPE ViT blocks, final LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from vjepa_fast.models.config import EncoderConfig
from vjepa_fast.models.layers import LAYER_NORM_EPS, Block, init_weights
from vjepa_fast.models.rope import grid_rope_tables


class PatchEmbed3D(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch); tokens flattened t-major, then h, then w."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, tubelet_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: [B, C, T, H, W] -> tokens [B, (T/tubelet)*(H/patch)*(W/patch), D]."""
        return self.proj(video).flatten(2).transpose(1, 2)


def _check_masks(masks: torch.Tensor, batch: int, name: str = "masks") -> None:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{name} must be a LongTensor [B, K], got {type(masks).__name__}")
    if masks.dim() != 2 or masks.shape[0] != batch:
        raise ValueError(f"{name} must be [B, K] with B = {batch}, got shape {tuple(masks.shape)}")
    if masks.dtype != torch.int64:
        raise TypeError(f"{name} must be int64 token indices, got {masks.dtype}")


class VideoEncoder(nn.Module):
    """ViT over video tubelets, parameter names as in the official checkpoints.

    RoPE positions are read on the grid of the actual input (T/tubelet, H/patch, W/patch), so clips shorter
    than `num_frames`, other resolutions and non-square inputs work as in the reference.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed_dim = config.embed_dim
        self.patch_embed = PatchEmbed3D(config.in_chans, config.embed_dim, config.patch_size, config.tubelet_size)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, config.attn_impl) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        init_weights(self, self.blocks)

    def _check_video(self, video: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"video must be a torch.Tensor, got {type(video).__name__}")
        if video.dim() == 4:
            # Convenience, unlike the reference (which raises "not enough values to unpack" on 4-D input):
            # an image [B, C, H, W] becomes a one-tubelet clip by repetition, as the reference's image eval
            # and V-JEPA 2-AC frame encoding do by hand.
            video = video.unsqueeze(2).repeat(1, 1, cfg.tubelet_size, 1, 1)
        elif video.dim() != 5:
            raise ValueError(
                f"video must be [B, C, T, H, W] (or an image [B, C, H, W]), got shape {tuple(video.shape)}"
            )
        _, c, t, h, w = video.shape
        if c != cfg.in_chans:
            raise ValueError(f"video has {c} channels at dim 1, expected in_chans = {cfg.in_chans} ([B, C, T, H, W])")
        if t % cfg.tubelet_size:
            raise ValueError(f"video frame count T = {t} is not divisible by tubelet_size = {cfg.tubelet_size}")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"video H x W = {h} x {w} is not divisible by patch_size = {cfg.patch_size}")
        if not video.is_floating_point():
            raise TypeError(f"video must be a float tensor (normalised pixels), got {video.dtype}")
        return video

    def forward(
        self,
        video: torch.Tensor,
        masks: torch.Tensor | Sequence[torch.Tensor] | None = None,
        *,
        out_layers: Sequence[int] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode a clip.

        video: [B, C, T, H, W] float (or an image [B, C, H, W], repeated into one tubelet).
        masks: None, or int64 [B, K] ascending indices of the tokens to keep (the token index is
            t*(Hp*Wp) + h*Wp + w); a list of such tensors encodes each and concatenates along the batch
            ([len*B, K, D]), as the reference does.
        out_layers: block indices; if given, returns the list of `norm(x)` after each of those blocks
            in block order (the reference's `out_layers` behaviour) instead of the final output.
        Returns [B, N, D] (N = (T/tubelet)*(H/patch)*(W/patch)) or [B, K, D] with masks.
        """
        video = self._check_video(video)
        _, _, t, h, w = video.shape
        cfg = self.config
        grid_hw = (h // cfg.patch_size, w // cfg.patch_size)
        x = self.patch_embed(video)
        b, n, d = x.shape
        layers = None
        if out_layers is not None:
            layers = sorted({i % cfg.depth for i in out_layers if -cfg.depth <= i < cfg.depth})
            if len(layers) != len(set(out_layers)):
                raise ValueError(
                    f"out_layers {list(out_layers)} must be distinct block indices in [-{cfg.depth}, {cfg.depth})"
                )

        if masks is None:
            cos, sin = grid_rope_tables(torch.arange(n, device=x.device), grid_hw, cfg.head_dim)
        else:
            mask_list = [masks] if isinstance(masks, torch.Tensor) else list(masks)
            if not mask_list:
                raise ValueError("masks must not be an empty list")
            for i, m in enumerate(mask_list):
                _check_masks(m, b, "masks" if isinstance(masks, torch.Tensor) else f"masks[{i}]")
            if len({m.shape[1] for m in mask_list}) != 1:
                raise ValueError("all masks in the list must keep the same number of tokens K")
            idx = torch.cat(mask_list, dim=0)
            if len(mask_list) > 1:
                x = x.repeat(len(mask_list), 1, 1)
            x = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, d))
            cos, sin = grid_rope_tables(idx, grid_hw, cfg.head_dim)
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads

        outs: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin)
            if layers is not None and i in layers:
                outs.append(self.norm(x))
        if layers is not None:
            return outs
        return self.norm(x)
