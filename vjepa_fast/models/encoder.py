"""V-JEPA 2 video encoder: 3D tubelet patch embedding, pre-norm RoPE ViT blocks, final LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from vjepa_fast.models.config import EncoderConfig
from vjepa_fast.models.attention import FUSED
from vjepa_fast.models.layers import LAYER_NORM_EPS, Block, Rope, grid_rope, init_weights


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

    def _layer_indices(self, out_layers: Sequence[int] | None) -> list[int] | None:
        if out_layers is None:
            return None
        depth = self.config.depth
        layers = sorted({i % depth for i in out_layers if -depth <= i < depth})
        if len(layers) != len(set(out_layers)):
            raise ValueError(f"out_layers {list(out_layers)} must be distinct block indices in [-{depth}, {depth})")
        return layers

    def _forward_ragged(self, video: torch.Tensor, masks: list[torch.Tensor],
                        out_layers: Sequence[int] | None) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """Per-sample token lists (see `forward`): [K_b, D] per sample (per out layer with out_layers)."""
        cfg = self.config
        b = video.shape[0]
        if len(masks) != b:
            raise ValueError(f"a list of 1-D masks needs one per sample: got {len(masks)} for a batch of {b}")
        for i, m in enumerate(masks):
            if m.dtype != torch.int64 or m.numel() == 0:
                raise ValueError(f"masks[{i}] must be a non-empty int64 index tensor, got {m.dtype} {tuple(m.shape)}")
        if cfg.attn_impl != FUSED:
            outs = [self.forward(video[i : i + 1], m.unsqueeze(0), out_layers=out_layers) for i, m in enumerate(masks)]
            if out_layers is None:
                return [o[0] for o in outs]
            return [[o[0] for o in per_sample] for per_sample in zip(*outs)]
        _, _, t, h, w = video.shape
        grid_thw = (t // cfg.tubelet_size, h // cfg.patch_size, w // cfg.patch_size)
        x = self.patch_embed(video)
        n, d = x.shape[1], x.shape[2]
        lens = [m.numel() for m in masks]
        flat = torch.cat([m + i * n for i, m in enumerate(masks)])
        x = x.reshape(b * n, d).index_select(0, flat).unsqueeze(0)  # [1, sum K_b, D]: the only gather
        cu = torch.tensor([0, *lens], device=x.device).cumsum(0).to(torch.int32)
        rope = Rope(codes=torch.cat(masks).to(torch.int32), grid=grid_thw, cu_seqlens=cu, max_seqlen=max(lens))
        layers = self._layer_indices(out_layers)
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, rope)
            if layers is not None and i in layers:
                outs.append(list(self.norm(x[0]).split(lens)))
        if layers is not None:
            return outs
        return list(self.norm(x[0]).split(lens))

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
            ([len*B, K, D]), as the reference does. A list of B one-dimensional index tensors keeps a
            different number of tokens per sample (nothing cut to the batch's shortest mask) and returns a
            list of B tensors [K_b, D]: with attn_impl="fused" all samples run packed through one kernel
            call per block; otherwise one sample at a time.
        out_layers: block indices; if given, returns the list of `norm(x)` after each of those blocks
            in block order (the reference's `out_layers` behaviour) instead of the final output.
        Returns [B, N, D] (N = (T/tubelet)*(H/patch)*(W/patch)) or [B, K, D] with masks.
        """
        video = self._check_video(video)
        if isinstance(masks, (list, tuple)) and masks and all(isinstance(m, torch.Tensor) and m.dim() == 1
                                                               for m in masks):
            return self._forward_ragged(video, list(masks), out_layers)
        _, _, t, h, w = video.shape
        cfg = self.config
        grid_hw = (h // cfg.patch_size, w // cfg.patch_size)
        x = self.patch_embed(video)
        b, n, d = x.shape
        layers = self._layer_indices(out_layers)

        fused = cfg.attn_impl == FUSED
        grid_thw = (t // cfg.tubelet_size, *grid_hw)
        if masks is None:
            rope = grid_rope(fused, torch.arange(n, device=x.device), grid_thw, cfg.head_dim, batch=b)
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
            rope = grid_rope(fused, idx, grid_thw, cfg.head_dim)

        outs: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, rope)
            if layers is not None and i in layers:
                outs.append(self.norm(x))
        if layers is not None:
            return outs
        return self.norm(x)
