"""Building blocks shared by the encoder and both predictors: pre-norm ViT block with RoPE attention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa_fast.models.attention import attention, check_attention_impl
from vjepa_fast.models.rope import apply_rope

LAYER_NORM_EPS = 1e-6
INIT_STD = 0.02


@dataclass
class LayerKV:
    """Rotated keys and values of the time steps a block has already seen: [B, H, L, hd] each."""

    k: torch.Tensor
    v: torch.Tensor


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv Linear (rows [q | k | v], heads inside each) and RoPE."""

    def __init__(self, dim: int, num_heads: int, attn_impl: str = "sdpa") -> None:
        super().__init__()
        check_attention_impl(attn_impl)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def project_qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, N, D]; cos/sin broadcastable to [B, H, N, hd]. Returns rotated q, k and v: [B, H, N, hd]."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Full (bidirectional) attention. x: [B, N, D] -> [B, N, D]."""
        q, k, v = self.project_qkv(x, cos, sin)
        return self._merge(attention(q, k, v, impl=self.attn_impl))

    def forward_block_causal(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        step_len: int,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """Block-causal attention over time steps of `step_len` tokens, without a mask.

        x: [B, S*step_len, D] holds S new steps; `past` holds the rotated K/V of earlier steps. The queries of
        new step s attend to every key of the past steps and of new steps 0..s, with one unmasked attention
        call per step: exact, and no (T*step_len)^2 mask is ever built (66048^2 booleans at 512 frames).
        Returns the output [B, S*step_len, D] and the K/V of all steps seen so far (past + new).
        """
        q, k, v = self.project_qkv(x, cos, sin)
        if past is not None:
            k = torch.cat([past.k, k], dim=2)
            v = torch.cat([past.v, v], dim=2)
        n_new = q.shape[2]
        offset = k.shape[2] - n_new
        outs = []
        for start in range(0, n_new, step_len):
            end = offset + start + step_len
            outs.append(attention(q[:, :, start : start + step_len], k[:, :, :end], v[:, :, :end], impl=self.attn_impl))
        return self._merge(torch.cat(outs, dim=2)), LayerKV(k, v)


class MLP(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); LayerNorm eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, attn_impl: str = "sdpa") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] -> [B, N, D]."""
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))

    def forward_block_causal(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        step_len: int,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """As `forward`, with block-causal attention over steps (see `Attention.forward_block_causal`)."""
        h, kv = self.attn.forward_block_causal(self.norm1(x), cos, sin, step_len, past)
        x = x + h
        return x + self.mlp(self.norm2(x)), kv


def init_weights(module: nn.Module, blocks: nn.ModuleList, std: float = INIT_STD) -> None:
    """Reference init: trunc-normal(std) weights of Linear/Conv, zero biases, LayerNorm (1, 0); then each
    block's attn.proj and mlp.fc2 weights divided by sqrt(2 * layer_id), layer_id from 1."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    with torch.no_grad():
        for layer_id, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))
