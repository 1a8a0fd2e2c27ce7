"""Building blocks shared by the encoder and both predictors: pre-norm ViT block with RoPE attention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa_fast.models.attention import FUSED, attention, check_attention_impl
from vjepa_fast.rope import ROPE_TILED, apply_rope, grid_rope_tables

LAYER_NORM_EPS = 1e-6
INIT_STD = 0.02


@dataclass
class LayerKV:
    """Keys and values of the time steps a block has already seen.

    With SDPA-style implementations: rotated keys, [B, H, L, hd] each. With attn_impl="fused"
    (`packed=True`): un-rotated keys in the projection's own layout, [B, L, H, hd], since the fused kernel
    rotates keys itself from their positions.
    """

    k: torch.Tensor
    v: torch.Tensor
    packed: bool = False


@dataclass
class Rope:
    """The positions of the tokens a block attends over, in the form its attention implementation needs.

    cos, sin: full-head tables broadcastable to [B, H, N, hd] (SDPA-style implementations).
    codes: int32 [B*N] position codes of x's tokens, sample-major (attn_impl="fused": a flat grid index, or
        -(t+1) for a token with only a time step; `vjepa_fast.ops.attention`), with `grid` = (T, Hp, Wp).
    key_codes: int32 [B*L] codes of every key when keys include cached steps (block-causal with a cache).
    cu_seqlens, max_seqlen: for packed variable-length samples (x is [1, sum(K_b), D], sample b at
        cu_seqlens[b]:cu_seqlens[b+1]; attn_impl="fused" only). None: every row of x is one sample.
    style, interp: the RoPE variant the fused kernel rotates with ("tiled": V-JEPA 2, "interleaved": 2.1)
        and 2.1's row/column rescaling (`vjepa_fast.rope.rope_positions`); cos/sin already hold them.
    """

    cos: torch.Tensor | None = None
    sin: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    grid: tuple[int, int, int] = (1, 1, 1)
    key_codes: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    max_seqlen: int = 0
    style: str = ROPE_TILED
    interp: int = 0


def grid_rope(fused: bool, indices: torch.Tensor, grid_thw: tuple[int, int, int], head_dim: int,
              batch: int = 1, style: str = ROPE_TILED, interp: int = 0) -> Rope:
    """Rope for tokens at flat grid indices: [N] shared by `batch` samples, or [B, N] per sample.

    style, interp: see `Rope` (V-JEPA 2.1 models pass "interleaved" and, in the encoder, G = 15).
    """
    if fused:
        codes = indices.to(torch.int32)
        codes = codes.repeat(batch) if indices.dim() == 1 else codes.flatten()
        return Rope(codes=codes.contiguous(), grid=grid_thw, style=style, interp=interp)
    cos, sin = grid_rope_tables(indices, grid_thw[1:], head_dim, style, interp)
    if indices.dim() == 2:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
    return Rope(cos, sin)


def _validate(x: torch.Tensor) -> bool:
    """Let the fused op check its index tensors on the CPU (cheap there); on a GPU the sync would stall it."""
    return x.device.type != "cuda"


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

    @property
    def fused(self) -> bool:
        return self.attn_impl == FUSED

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

    def _fused_attention(self, x: torch.Tensor, rope: Rope, step_len: int = 0, past: LayerKV | None = None
                         ) -> tuple[torch.Tensor, LayerKV]:
        """The fused RoPE attention kernel straight on the qkv projection's views: no permute, no RoPE pass."""
        from vjepa_fast.ops.attention import rope_attention, uniform_cu_seqlens

        if rope.codes is None:
            raise ValueError("attn_impl='fused' needs Rope.codes (position codes of the tokens)")
        b, n, _ = x.shape
        h, hd = self.num_heads, self.head_dim
        qkv = self.qkv(x).view(b, n, 3, h, hd)
        q, k, v = qkv.unbind(2)  # [B, N, H, hd] views
        if past is not None:
            if not past.packed:
                raise ValueError("this KV cache was filled by another attn_impl than 'fused'")
            k = torch.cat([past.k, k], dim=1)
            v = torch.cat([past.v, v], dim=1)
        n_k = k.shape[1]
        if rope.cu_seqlens is not None:  # packed samples of their own lengths, one attention each
            if b != 1 or past is not None or step_len:
                raise ValueError("packed variable-length samples take x of shape [1, T, D], no cache, no steps")
            out = rope_attention(q[0], k[0], v[0], rope.codes, rope.codes, rope.cu_seqlens, rope.cu_seqlens,
                                 max_seqlen_q=rope.max_seqlen, max_seqlen_k=rope.max_seqlen, grid=rope.grid,
                                 validate=_validate(x), rope_style=rope.style, rope_interp=rope.interp)
            return self.proj(out.view(1, n, h * hd)), LayerKV(k, v, packed=True)
        key_codes = rope.codes if rope.key_codes is None else rope.key_codes
        if key_codes.numel() != b * n_k or rope.codes.numel() != b * n:
            raise ValueError(f"Rope codes hold {rope.codes.numel()} / {key_codes.numel()} positions for "
                             f"{b}x{n} queries / {b}x{n_k} keys")
        out = rope_attention(
            q.reshape(b * n, h, hd), k.reshape(b * n_k, h, hd), v.reshape(b * n_k, h, hd),
            rope.codes, key_codes, uniform_cu_seqlens(b, n, x.device), uniform_cu_seqlens(b, n_k, x.device),
            max_seqlen_q=n, max_seqlen_k=n_k, grid=rope.grid, step_len=step_len, validate=_validate(x),
            rope_style=rope.style, rope_interp=rope.interp)
        return self.proj(out.view(b, n, h * hd)), LayerKV(k, v, packed=True)

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """Full (bidirectional) attention. x: [B, N, D] -> [B, N, D]."""
        if self.fused:
            return self._fused_attention(x, rope)[0]
        q, k, v = self.project_qkv(x, rope.cos, rope.sin)
        return self._merge(attention(q, k, v, impl=self.attn_impl))

    def forward_block_causal(
        self,
        x: torch.Tensor,
        rope: Rope,
        step_len: int,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """Block-causal attention over time steps of `step_len` tokens.

        x: [B, S*step_len, D] holds S new steps; `past` holds the K/V of earlier steps. The queries of new
        step s attend to every key of the past steps and of new steps 0..s. SDPA-style implementations make
        one unmasked attention call per step: exact, and no (T*step_len)^2 mask is ever built (66048^2
        booleans at 512 frames); attn_impl="fused" masks by step inside the kernel and skips future tiles.
        Returns the output [B, S*step_len, D] and the K/V of all steps seen so far (past + new).
        """
        if self.fused:
            return self._fused_attention(x, rope, step_len, past)
        q, k, v = self.project_qkv(x, rope.cos, rope.sin)
        if past is not None:
            if past.packed:
                raise ValueError("this KV cache was filled by attn_impl='fused'; use the same attn_impl")
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

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """x: [B, N, D] -> [B, N, D]."""
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))

    def forward_block_causal(
        self,
        x: torch.Tensor,
        rope: Rope,
        step_len: int,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """As `forward`, with block-causal attention over steps (see `Attention.forward_block_causal`)."""
        h, kv = self.attn.forward_block_causal(self.norm1(x), rope, step_len, past)
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
