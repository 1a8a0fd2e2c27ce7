"""The attentive probe of V-JEPA 2's frozen evaluations: learned query tokens cross-attend over the frozen
encoder's tokens, then a linear head (Meta's `AttentivePooler` + `AttentiveClassifier`).

Parameter names are Meta's (without the DDP `module.` prefix), so a released probe loads as it is:

    pooler.query_tokens                      [1, Q, D]
    pooler.blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2    (depth - 1 of them)
    pooler.cross_attention_block.norm1 / xattn.q / xattn.kv / norm2 / mlp.fc1 / mlp.fc2
    linear.weight [C, D], linear.bias [C]

Forward (checked against Meta's src/models/attentive_pooler.py and src/models/utils/modules.py, read with the
code search tool; see `vjepa_fast.probes.checkpoints` for what was checked):
  x: [B, N, D] -> for each self-attention block (plain pre-norm ViT block, no RoPE, no position embedding):
  x = x + proj(attn(norm1(x))); x = x + mlp(norm2(x)).  Then q = query_tokens (repeated over B);
  q = q + xattn(q, norm1(x)) (the queries themselves are NOT normalised, and the cross-attention has no
  output projection); q = q + mlp(norm2(q)).  logits = linear(q[:, 0]) (one query).
LayerNorms: nn.LayerNorm's default eps 1e-5 in Meta's probes (the encoder uses 1e-6); MLP ratio 4 whatever the
encoder's (ViT-g's probe: hidden 5632, not the encoder's 6144); exact GELU; qkv biases on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vjepa_fast.config import from_dict
from vjepa_fast.models.layers import MLP  # fc1 -> exact GELU -> fc2, Meta's names

__all__ = ["ProbeHeadConfig", "AttentivePooler", "AttentiveClassifier", "META_PROBE_LN_EPS"]

# nn.LayerNorm's default, what Meta's AttentivePooler gets from `norm_layer=nn.LayerNorm`.
META_PROBE_LN_EPS = 1e-5


@dataclass(frozen=True)
class ProbeHeadConfig:
    """Shapes of an attentive probe. depth counts all blocks: depth - 1 self-attention blocks + the
    cross-attention block (Meta's `num_probe_blocks`; V-JEPA 2's evals use 4 blocks and 16 heads)."""

    embed_dim: int
    num_classes: int
    num_heads: int = 16
    depth: int = 4
    mlp_ratio: float = 4.0
    num_queries: int = 1
    norm_eps: float = META_PROBE_LN_EPS
    qkv_bias: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("embed_dim", "num_classes", "num_heads", "depth", "num_queries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ProbeHeadConfig.{name} must be a positive int, got {v!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"ProbeHeadConfig.embed_dim ({self.embed_dim}) is not divisible by num_heads "
                             f"({self.num_heads})")
        if self.mlp_ratio <= 0 or self.norm_eps <= 0:
            raise ValueError("ProbeHeadConfig.mlp_ratio and norm_eps must be > 0")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeHeadConfig:
        """Inverse of `to_dict` (`vjepa_fast.config.from_dict`: unknown keys and wrong types name the key)."""
        return from_dict(cls, data)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5, as the reference
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Pre-norm ViT block without position information (the pooler's self-attention blocks)."""

    def __init__(self, cfg: ProbeHeadConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = _SelfAttention(d, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = MLP(d, cfg.mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _CrossAttention(nn.Module):
    """Queries attend over the tokens; kv is one Linear(D, 2D) with rows [k | v]; no output projection."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, nq, d = q.shape
        n = x.shape[1]
        hd = d // self.heads
        qh = self.q(q).view(b, nq, self.heads, hd).transpose(1, 2)
        k, v = self.kv(x).view(b, n, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qh, k, v)
        return out.transpose(1, 2).reshape(b, nq, d)


class _CrossAttentionBlock(nn.Module):
    def __init__(self, cfg: ProbeHeadConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.xattn = _CrossAttention(d, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = MLP(d, cfg.mlp_hidden)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """tokens [B, N, D] -> pooled queries [B, Q, D]."""

    def __init__(self, cfg: ProbeHeadConfig) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_queries, cfg.embed_dim))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth - 1))
        self.cross_attention_block = _CrossAttentionBlock(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        q = self.query_tokens.expand(x.shape[0], -1, -1).to(x.dtype)
        return self.cross_attention_block(q, x)


class AttentiveClassifier(nn.Module):
    """Attentive probe: `forward(tokens [B, N, D]) -> logits [B, num_classes]`."""

    def __init__(self, config: ProbeHeadConfig) -> None:
        super().__init__()
        if not isinstance(config, ProbeHeadConfig):
            raise TypeError(f"config must be a ProbeHeadConfig, got {type(config).__name__}")
        self.config = config
        self.pooler = AttentivePooler(config)
        self.linear = nn.Linear(config.embed_dim, config.num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # The reference's init: trunc-normal(std) for the queries and every Linear, zero biases, LayerNorm (1, 0);
        # then attn.proj / mlp.fc2 of self-attention block i divided by sqrt(2 * (i + 1)) and the cross-attention
        # block's mlp.fc2 by sqrt(2 * max(1, depth - 1)) (it reuses the last block's layer id).
        std = self.config.init_std
        nn.init.trunc_normal_(self.pooler.query_tokens, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        layer_id = 0
        for layer_id, blk in enumerate(self.pooler.blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))
        self.pooler.cross_attention_block.mlp.fc2.weight.div_(math.sqrt(2.0 * max(layer_id, 1)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[-1] != self.config.embed_dim:
            raise ValueError(f"tokens must be [B, N, {self.config.embed_dim}], got {tuple(tokens.shape)}")
        return self.linear(self.pooler(tokens)[:, 0])

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The pooled feature [B, D] the linear head reads."""
        return self.pooler(tokens)[:, 0]


@torch.no_grad()
def multiview_probs(probe: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Test-time averaging as Meta's frozen evals: views [B, V, N, D] (V spatial views; each view's tokens are
    the concatenation of all its temporal clips along N) -> mean over V of softmax(probe(view)) [B, C]."""
    if views.dim() != 4:
        raise ValueError(f"views must be [B, V, N, D], got {tuple(views.shape)}")
    b, v, n, d = views.shape
    logits = probe(views.reshape(b * v, n, d)).float()
    return logits.softmax(-1).view(b, v, -1).mean(1)
