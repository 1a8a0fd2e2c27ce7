"""V-JEPA 2-AC action-conditioned predictor: block-causal over time steps, with an optional KV cache."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vjepa_fast.models.predictor_config import ACPredictorConfig
from vjepa_fast.models.attention import FUSED
from vjepa_fast.models.layers import LAYER_NORM_EPS, Block, LayerKV, Rope, init_weights
from vjepa_fast.rope import grid_positions, rope_tables

COND_TOKENS = 2  # [action_t, state_t] precede the frame tokens of step t


@dataclass
class ACKVCache:
    """K/V (see `LayerKV`) of the time steps an `ActionConditionedPredictor` has already processed.

    Pass one to `forward(..., cache=cache)`; the call then holds only the NEW steps and appends their K/V,
    so an autoregressive rollout computes only the new step per horizon step. Outputs are identical to a
    full recompute because attention is block-causal (earlier steps never see later ones).
    """

    layers: list[LayerKV | None] = field(default_factory=list)
    num_steps: int = 0

    def repeat_batch(self, repeats: int) -> ACKVCache:
        """A cache whose batch is each sample repeated `repeats` times (e.g. one context, many CEM samples)."""
        return ACKVCache(
            [
                None if kv is None
                else LayerKV(kv.k.repeat_interleave(repeats, 0), kv.v.repeat_interleave(repeats, 0), kv.packed)
                for kv in self.layers
            ],
            self.num_steps,
        )


class ActionConditionedPredictor(nn.Module):
    """Predicts next-frame encoder tokens from frame tokens, actions and proprioceptive states.

    Per time step t the sequence holds [action_t, state_t, N frame tokens]; a token of step t attends to
    every token of steps <= t. Action/state tokens get only the temporal RoPE rotation (position t; their
    h/w dims are left unrotated), frame tokens the t/h/w rotation on the configured grid.
    """

    def __init__(self, config: ACPredictorConfig) -> None:
        super().__init__()
        if not isinstance(config, ACPredictorConfig):
            raise TypeError(f"config must be an ACPredictorConfig, got {type(config).__name__}")
        self.config = config
        dim = config.predictor_embed_dim
        self.predictor_embed = nn.Linear(config.embed_dim, dim)
        self.action_encoder = nn.Linear(config.action_dim, dim)
        self.state_encoder = nn.Linear(config.action_dim, dim)
        # Present in the released checkpoint, unused by the forward (use_extrinsics=False there).
        self.extrinsics_encoder = nn.Linear(config.extrinsics_dim, dim)
        self.predictor_blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.attn_impl) for _ in range(config.depth)
        )
        self.predictor_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(dim, config.embed_dim)
        init_weights(self, self.predictor_blocks)

    def rope_tables(
        self, num_steps: int, start_step: int = 0, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [num_steps*(2+N), hd] (fp32) for steps start_step .. start_step+num_steps-1."""
        cfg = self.config
        n = cfg.tokens_per_frame
        steps = torch.arange(start_step, start_step + num_steps, device=device)
        _, h, w = grid_positions(torch.arange(n, device=device), cfg.grid_hw)
        cond_cos, cond_sin = rope_tables(steps.unsqueeze(1).expand(-1, COND_TOKENS), None, None, cfg.head_dim)
        t_f = steps.unsqueeze(1).expand(-1, n)
        frame_cos, frame_sin = rope_tables(t_f, h.expand(num_steps, -1), w.expand(num_steps, -1), cfg.head_dim)
        cos = torch.cat([cond_cos, frame_cos], dim=1).flatten(0, 1)
        sin = torch.cat([cond_sin, frame_sin], dim=1).flatten(0, 1)
        return cos, sin

    def position_codes(self, num_steps: int, start_step: int = 0, device: torch.device | None = None) -> torch.Tensor:
        """int32 [num_steps*(2+N)] RoPE position codes (vjepa_fast.ops.attention) of one sample's tokens:
        action/state tokens carry only their step t (code -(t+1)), frame tokens their grid index t*N + r."""
        n = self.config.tokens_per_frame
        steps = torch.arange(start_step, start_step + num_steps, device=device)
        cond = (-steps - 1).unsqueeze(1).expand(-1, COND_TOKENS)
        frame = steps.unsqueeze(1) * n + torch.arange(n, device=device)
        return torch.cat([cond, frame], dim=1).flatten().to(torch.int32)

    def _rope(self, batch: int, num_steps: int, start_step: int, device: torch.device) -> Rope:
        cfg = self.config
        if cfg.attn_impl != FUSED:
            return Rope(*self.rope_tables(num_steps, start_step, device))
        codes = self.position_codes(num_steps, start_step, device).repeat(batch)
        keys = None
        if start_step:
            keys = self.position_codes(start_step + num_steps, 0, device).repeat(batch)
        return Rope(codes=codes, grid=(cfg.max_steps, *cfg.grid_hw), key_codes=keys)

    def forward(
        self,
        frame_tokens: torch.Tensor,
        actions: torch.Tensor,
        states: torch.Tensor,
        *,
        cache: ACKVCache | None = None,
    ) -> torch.Tensor:
        """Predict the tokens of the next frame for every step.

        frame_tokens: [B, T*N, D] encoder tokens, t-major (N = tokens per frame on the configured grid);
        actions, states: [B, T, action_dim].
        cache: if given, these are the steps following the `cache.num_steps` already processed; the cache
            is extended in place.
        Returns [B, T*N, D]; the rows of step t predict frame t+1.
        """
        cfg = self.config
        n = cfg.tokens_per_frame
        if not isinstance(frame_tokens, torch.Tensor) or frame_tokens.dim() != 3:
            raise ValueError("frame_tokens must be [B, T*N, D]")
        b, length, d = frame_tokens.shape
        if d != cfg.embed_dim:
            raise ValueError(f"frame_tokens width {d} != ACPredictorConfig.embed_dim {cfg.embed_dim}")
        if length == 0 or length % n:
            raise ValueError(f"frame_tokens length {length} is not a positive multiple of N = {n} tokens per frame")
        t = length // n
        for name, value in (("actions", actions), ("states", states)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (b, t, cfg.action_dim):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"{name} must be [B, T, {cfg.action_dim}] = {(b, t, cfg.action_dim)}, got {got}")
        start = 0 if cache is None else cache.num_steps
        if start + t > cfg.max_steps:
            raise ValueError(
                f"{start + t} time steps exceed ACPredictorConfig.num_frames // tubelet_size = {cfg.max_steps}"
            )

        x = self.predictor_embed(frame_tokens).view(b, t, n, -1)
        a = self.action_encoder(actions).unsqueeze(2)
        s = self.state_encoder(states).unsqueeze(2)
        x = torch.cat([a.to(x.dtype), s.to(x.dtype), x], dim=2).flatten(1, 2)
        rope = self._rope(b, t, start, x.device)

        step_len = n + COND_TOKENS
        if cache is not None and not cache.layers:
            cache.layers = [None] * len(self.predictor_blocks)
        for i, blk in enumerate(self.predictor_blocks):
            past = None if cache is None else cache.layers[i]
            if past is not None and past.k.shape[0] != b:
                raise ValueError(f"cache batch {past.k.shape[0]} != input batch {b}")
            x, kv = blk.forward_block_causal(x, rope, step_len, past)
            if cache is not None:
                cache.layers[i] = kv
        if cache is not None:
            cache.num_steps = start + t

        x = x.view(b, t, step_len, -1)[:, :, COND_TOKENS:].flatten(1, 2)
        return self.predictor_proj(self.predictor_norm(x))
