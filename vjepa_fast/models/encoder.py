"""V-JEPA 2 / 2.1 video encoder: 3D tubelet patch embedding, pre-norm RoPE ViT blocks, final LayerNorm(s).

V-JEPA 2.1 (`EncoderConfig.version == "vjepa2_1"`) adds a tubelet-1 patch embedding for single images,
image/video modality embeddings, the interleaved (standard) RoPE with rescaled rows and columns, and four
normalised taps instead of one final norm (see `EncoderConfig`).
"""

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

    V-JEPA 2.1 parameters: `patch_embed_img` (Conv3d kernel (1, p, p)), `img_mod_embed` / `video_mod_embed`
    ([1, 1, D]), `norms_block.{0..3}` (one LayerNorm per tap, no `norm`).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, EncoderConfig):
            raise TypeError(f"config must be an EncoderConfig, got {type(config).__name__}")
        self.config = config
        self.embed_dim = config.embed_dim
        v21 = config.is_v21
        if v21 and config.modality_embedding:
            # Declared first, as in the reference, so state_dict() lists them in its order.
            self.img_mod_embed = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
            self.video_mod_embed = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.patch_embed = PatchEmbed3D(config.in_chans, config.embed_dim, config.patch_size, config.tubelet_size)
        if v21 and config.image_patch_embed:
            self.patch_embed_img = PatchEmbed3D(config.in_chans, config.embed_dim, config.patch_size, 1)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, config.attn_impl) for _ in range(config.depth)
        )
        if v21:
            self.norms_block = nn.ModuleList(
                nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS) for _ in config.taps)
        else:
            self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        init_weights(self, self.blocks)
        if v21 and config.modality_embedding:
            with torch.no_grad():
                self.img_mod_embed.normal_(std=1e-6)  # the reference's init
                self.video_mod_embed.normal_(std=1e-6)

    def _is_image(self, video: torch.Tensor) -> bool:
        """V-JEPA 2.1 with an image patch embedding: a 1-frame clip [B, C, 1, H, W] takes the image path."""
        return self.config.is_v21 and self.config.image_patch_embed and video.dim() == 5 and video.shape[2] == 1

    def _check_video(self, video: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"video must be a torch.Tensor, got {type(video).__name__}")
        if video.dim() == 4 and cfg.is_v21 and cfg.image_patch_embed:
            # Convenience, unlike the reference (which raises on 4-D input): an image [B, C, H, W] is the
            # 1-frame clip [B, C, 1, H, W] of the image path.
            video = video.unsqueeze(2)
        elif video.dim() == 4:
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
        if t % cfg.tubelet_size and not self._is_image(video):
            raise ValueError(f"video frame count T = {t} is not divisible by tubelet_size = {cfg.tubelet_size}")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"video H x W = {h} x {w} is not divisible by patch_size = {cfg.patch_size}")
        if cfg.rope_interp and (h < 2 * cfg.patch_size or w < 2 * cfg.patch_size):
            raise ValueError(f"video H x W = {h} x {w} is under 2 x 2 patches: the interpolated RoPE "
                             "(interpolate_rope) rescales by (Hp - 1) and (Wp - 1), which the reference divides by "
                             "zero")
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
        taps = self.config.taps
        if taps and not set(layers) <= set(taps):
            raise ValueError(f"out_layers {list(out_layers)}: a V-JEPA 2.1 encoder has normalised outputs only at "
                             f"its taps {list(taps)}")
        return layers

    def _embed(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch embedding (+ 2.1's modality embedding): tokens [B, N, D] and the token grid (T', Hp, Wp)."""
        cfg = self.config
        _, _, t, h, w = video.shape
        grid_hw = (h // cfg.patch_size, w // cfg.patch_size)
        if self._is_image(video):
            x = self.patch_embed_img(video)
            grid = (1, *grid_hw)
            mod = "img_mod_embed"
        else:
            x = self.patch_embed(video)
            grid = (t // cfg.tubelet_size, *grid_hw)
            mod = "video_mod_embed"
        if cfg.is_v21 and cfg.modality_embedding:
            x = x + getattr(self, mod).to(x.dtype)
        return x, grid

    def _norm_at(self, block: int, x: torch.Tensor) -> torch.Tensor:
        """The normalised output after `block`: V-JEPA 2's final norm, or the 2.1 tap's own LayerNorm."""
        if self.config.is_v21:
            return self.norms_block[self.config.taps.index(block)](x)
        return self.norm(x)

    def _run_blocks(self, x: torch.Tensor, rope: Rope, layers: list[int] | None,
                    hierarchical: bool) -> torch.Tensor | list[torch.Tensor]:
        """The blocks, then what `forward` returns: the out_layers list, the tap concatenation or the output."""
        cfg = self.config
        hier_at = set(cfg.output_taps) if hierarchical else set()
        outs: list[torch.Tensor] = []
        hier: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, rope)
            if layers is not None and i in layers:
                outs.append(self._norm_at(i, x))
            if i in hier_at:
                hier.append(self._norm_at(i, x))
        if layers is not None:
            return outs
        if hierarchical:
            return torch.cat(hier, dim=-1)
        return self._norm_at(cfg.depth - 1, x)

    def _forward_ragged(self, video: torch.Tensor, masks: list[torch.Tensor], out_layers: Sequence[int] | None,
                        hierarchical: bool = False) -> list[torch.Tensor] | list[list[torch.Tensor]]:
        """Per-sample token lists (see `forward`): [K_b, D] per sample (per out layer with out_layers)."""
        cfg = self.config
        b = video.shape[0]
        if len(masks) != b:
            raise ValueError(f"a list of 1-D masks needs one per sample: got {len(masks)} for a batch of {b}")
        for i, m in enumerate(masks):
            if m.dtype != torch.int64 or m.numel() == 0:
                raise ValueError(f"masks[{i}] must be a non-empty int64 index tensor, got {m.dtype} {tuple(m.shape)}")
        if cfg.attn_impl != FUSED:
            outs = [self.forward(video[i : i + 1], m.unsqueeze(0), out_layers=out_layers, hierarchical=hierarchical)
                    for i, m in enumerate(masks)]
            if out_layers is None:
                return [o[0] for o in outs]
            return [[o[0] for o in per_sample] for per_sample in zip(*outs)]
        x, grid_thw = self._embed(video)
        n, d = x.shape[1], x.shape[2]
        lens = [m.numel() for m in masks]
        flat = torch.cat([m + i * n for i, m in enumerate(masks)])
        x = x.reshape(b * n, d).index_select(0, flat).unsqueeze(0)  # [1, sum K_b, D]: the only gather
        cu = torch.tensor([0, *lens], device=x.device).cumsum(0).to(torch.int32)
        rope = Rope(codes=torch.cat(masks).to(torch.int32), grid=grid_thw, cu_seqlens=cu, max_seqlen=max(lens),
                    style=cfg.rope_style, interp=cfg.rope_interp)
        out = self._run_blocks(x, rope, self._layer_indices(out_layers), hierarchical)
        if isinstance(out, list):
            return [list(o[0].split(lens)) for o in out]
        return list(out[0].split(lens))

    def forward(
        self,
        video: torch.Tensor,
        masks: torch.Tensor | Sequence[torch.Tensor] | None = None,
        *,
        out_layers: Sequence[int] | None = None,
        hierarchical: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Encode a clip.

        video: [B, C, T, H, W] float (or an image [B, C, H, W], repeated into one tubelet). V-JEPA 2.1: a
            1-frame clip [B, C, 1, H, W] (or an image [B, C, H, W]) goes through the image patch embedding
            with the image modality embedding, on a 1 x Hp x Wp grid.
        masks: None, or int64 [B, K] ascending indices of the tokens to keep (the token index is
            t*(Hp*Wp) + h*Wp + w); a list of such tensors encodes each and concatenates along the batch
            ([len*B, K, D]), as the reference does. A list of B one-dimensional index tensors keeps a
            different number of tokens per sample (nothing cut to the batch's shortest mask) and returns a
            list of B tensors [K_b, D]: with attn_impl="fused" all samples run packed through one kernel
            call per block; otherwise one sample at a time.
        out_layers: block indices; if given, returns the list of `norm(x)` after each of those blocks
            in block order (the reference's `out_layers` behaviour) instead of the final output. V-JEPA 2.1:
            tap indices only (`config.taps`), each normalised by its own LayerNorm.
        hierarchical: V-JEPA 2.1 only: return the normalised taps (`config.output_taps`, 4 by default)
            concatenated on channels, [B, N, 4*D], the training targets and predictor input (the reference's
            `training=True`); the last D channels equal the default output.
        Returns [B, N, D] (N = (T/tubelet)*(H/patch)*(W/patch)) or [B, K, D] with masks; 2.1's default output
        is the last tap (`norms_block[-1]` after the last block).
        """
        cfg = self.config
        if hierarchical and not cfg.is_v21:
            raise ValueError("hierarchical=True needs a V-JEPA 2.1 encoder (EncoderConfig.version='vjepa2_1'); "
                             "V-JEPA 2 has one output, use out_layers for intermediate blocks")
        video = self._check_video(video)
        if isinstance(masks, (list, tuple)) and masks and all(isinstance(m, torch.Tensor) and m.dim() == 1
                                                               for m in masks):
            return self._forward_ragged(video, list(masks), out_layers, hierarchical)
        x, grid_thw = self._embed(video)
        b, n, d = x.shape
        layers = self._layer_indices(out_layers)

        fused = cfg.attn_impl == FUSED
        style, interp = cfg.rope_style, cfg.rope_interp
        if masks is None:
            rope = grid_rope(fused, torch.arange(n, device=x.device), grid_thw, cfg.head_dim, batch=b,
                             style=style, interp=interp)
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
            rope = grid_rope(fused, idx, grid_thw, cfg.head_dim, style=style, interp=interp)
        return self._run_blocks(x, rope, layers, hierarchical)
