"""A lean inference-only forward of the AC predictor for planning rollouts (same maths, fewer memory passes).

The module forward (`ActionConditionedPredictor`) is written for training and parity: RoPE in fp32 with a
pair swap built by stack + negation, K/V concatenated per step. On 2 CPU cores at the `cpu-small` preset those
element-wise passes took ~75% of a rollout (profiled: copy/cat/mul/neg/add 4.3 s of 6.0 s, the matmuls 1.4 s).
Here, per block:
- RoPE rotates q and k together in the compute dtype, in a "rotate-half" channel order: the q and k rows of
  each head in the qkv weight are permuted so that RoPE's pairs (2k, 2k+1) become (k, k + hd/2); q.k is
  unchanged by the same permutation of q and k, and the pair swap becomes two contiguous half-blocks:
  q * cos, then two in-place addcmuls (4x faster than swapping pairs with flip in fp32, 2x in bf16; folding
  the swap into extra qkv weight rows instead cost 14% more GEMM FLOPs);
- keys/values go straight into a preallocated [M, H*(N+2), heads, hd] buffer (no per-step concatenation), and
  attention reads strided views (no transposing copies);
- on the CPU the linears are oneDNN's with fused epilogues (bias + exact GELU, bias + residual add), as
  inductor emits for CPU inference, where `precision.private_cpu_ops_ok` allows (public F.linear elsewhere);
  the context frame is embedded once per problem, not per sample.
Everything else (pre-norm blocks, exact GELU, block-causal attention, final norm + proj on the frame tokens)
is the predictor's maths; `tests/test_planning.py` checks it against the module forward with the KV cache.

With a predictor built with attn_impl="fused", where the Triton kernels can run (CUDA, or the CPU under
TRITON_INTERPRET=1), each block's attention is one `rope_attention` call instead: the qkv rows keep the
checkpoint's order, un-rotated keys and values go into the same preallocated buffer, and the kernel rotates q
and k from their position codes and reads each sample's filled prefix of the buffer (`seqused_k`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from vjepa_fast.models import ActionConditionedPredictor
from vjepa_fast.models.ac_predictor import COND_TOKENS
from vjepa_fast.models.attention import FUSED, attention
from vjepa_fast.ops.attention import rope_attention, triton_available, uniform_cu_seqlens
from vjepa_fast.rope import apply_rope
from vjepa_fast.precision import private_cpu_ops_ok

__all__ = ["LeanACRollout"]


class LeanACRollout:
    """Autoregressive rollout of an `ActionConditionedPredictor` (weights read once, in `dtype`).

    Call with z0 [B, N, D] (one context frame per problem), actions and states [B*S, H, 7] (sample rows of
    problem b are b*S .. b*S+S-1) -> the predicted latents [B*S, H or 1, N, D] in the compute dtype, before
    the between-steps layer norm (the caller applies it; see `WorldModel`), in fp32.
    """

    def __init__(self, predictor: ActionConditionedPredictor, dtype: torch.dtype) -> None:
        cfg = predictor.config
        self.config = cfg
        self.dtype = dtype
        self.device = predictor.predictor_embed.weight.device
        self.heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.width = cfg.predictor_embed_dim
        self.n = cfg.tokens_per_frame
        self.step_len = self.n + COND_TOKENS
        # attn_impl="fused": q/k rows stay in the checkpoint's order (the kernel rotates interleaved pairs).
        self.fused_attention = cfg.attn_impl == FUSED
        self._predictor = predictor

        def cvt(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dtype).contiguous()

        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.detach().float().contiguous()

        # Input embeddings in fp32 (~1% of the FLOPs): they start the fp32 residual stream, and a bf16 rounding
        # here would ride through every block.
        self.embed = (f32(predictor.predictor_embed.weight), f32(predictor.predictor_embed.bias))
        self.action = (f32(predictor.action_encoder.weight), f32(predictor.action_encoder.bias))
        self.state = (f32(predictor.state_encoder.weight), f32(predictor.state_encoder.bias))
        self.blocks = []
        for blk in predictor.predictor_blocks:
            self.blocks.append(
                {
                    "n1": (f32(blk.norm1.weight), f32(blk.norm1.bias), blk.norm1.eps),
                    "qkv": (cvt(self._rotate_half_rows(blk.attn.qkv.weight)),
                            cvt(self._rotate_half_rows(blk.attn.qkv.bias))) if not self.fused_attention
                    else (cvt(blk.attn.qkv.weight), cvt(blk.attn.qkv.bias)),
                    "proj": (cvt(blk.attn.proj.weight), cvt(blk.attn.proj.bias)),
                    "n2": (f32(blk.norm2.weight), f32(blk.norm2.bias), blk.norm2.eps),
                    "fc1": (cvt(blk.mlp.fc1.weight), cvt(blk.mlp.fc1.bias)),
                    "fc2": (cvt(blk.mlp.fc2.weight), cvt(blk.mlp.fc2.bias)),
                }
            )
        # The output head runs in fp32 (64 tokens x 256 x 192 per sample: ~1% of the FLOPs): a bf16 output
        # would round every latent by ~2^-9 relative, which is the size of the energy differences CEM ranks.
        norm = predictor.predictor_norm
        self.norm = (f32(norm.weight), f32(norm.bias), norm.eps)
        self.proj = (f32(predictor.predictor_proj.weight), f32(predictor.predictor_proj.bias))
        self._rope = [predictor.rope_tables(1, t) for t in range(cfg.max_steps)]
        self._rope_cache: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _rotate_half_rows(self, t: torch.Tensor) -> torch.Tensor:
        """qkv weight [3C, C] or bias [3C]: q and k channels of each head reordered (evens, then odds)."""
        hd = self.head_dim
        perm = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)]).to(t.device)
        t = t.detach().unflatten(0, (3, self.heads, hd))
        qk = t[:2].index_select(2, perm)
        return torch.cat([qk, t[2:]], 0).flatten(0, 2)

    def to(self, device: torch.device | str) -> LeanACRollout:
        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(device)
            if isinstance(x, tuple):
                return tuple(move(v) for v in x)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        self.embed, self.action, self.state = move(self.embed), move(self.action), move(self.state)
        self.blocks = [move(b) for b in self.blocks]
        self.norm, self.proj = move(self.norm), move(self.proj)
        self._rope_cache = {}
        self.device = torch.device(device)
        return self

    def _codes(self, m: int, h: int, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Position codes: per step t the new tokens' [M*L], and every buffer row's [M*H*L]."""
        key = ("codes", m, h, device)
        if key not in self._rope_cache:
            one = self._predictor.position_codes(h, 0, device)  # [H*L], steps 0..H-1
            steps = [one[t * self.step_len : (t + 1) * self.step_len].repeat(m) for t in range(h)]
            self._rope_cache[key] = (steps, one.repeat(m))  # type: ignore[assignment]
        return self._rope_cache[key]  # type: ignore[return-value]

    def _rope_interleaved_at(self, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("interleaved", t, device)
        if key not in self._rope_cache:
            cos, sin = self._rope[t]
            self._rope_cache[key] = (cos.to(device)[:, None, None], sin.to(device)[:, None, None])
        return self._rope_cache[key]

    def _rope_at(self, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (t, device)
        if key not in self._rope_cache:
            cos, sin = self._rope[t]
            # RoPE's pair swap y[2k] = -x[2k+1], y[2k+1] = x[2k], in the rotate-half order (evens, then odds):
            # y[:hd/2] = -x[hd/2:], y[hd/2:] = x[:hd/2]; the sign is folded into sin. [L, 1, 1, hd]: broadcast
            # over the (q, k) and head dims of a [M, L, 2, heads, hd] tensor.
            hd = cos.shape[-1]
            perm = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])
            sign = torch.tensor([-1.0, 1.0]).repeat(hd // 2)
            self._rope_cache[key] = (
                cos[:, perm].to(device, self.dtype)[:, None, None],
                (sin * sign)[:, perm].to(device, self.dtype)[:, None, None],
            )
        return self._rope_cache[key]

    def _fused_ok(self, device: torch.device) -> bool:
        # oneDNN linear with fused epilogues (bias + GELU, bias + residual add): on 2 CPU cores at the
        # cpu-small preset, fc1+GELU 72 -> 54 ms and proj+residual 53 -> 43 ms per call (bf16, M = 13200).
        # A private op: only where `precision.private_cpu_ops_ok` allows it (no bf16 kernel on AVX2-only CPUs;
        # never when the fallback is forced); F.linear + F.gelu / add_ is the public path.
        return device.type == "cpu" and private_cpu_ops_ok(self.dtype)

    @torch.inference_mode()
    def __call__(
        self, z0: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, *, return_all: bool = False,
        between_steps: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """z0: [B, N, D]; actions, states: [M = B*S, H, 7]. `between_steps(out [M, N, D]) -> next input`
        maps a step's output to the next step's frame tokens (the layer norm). Returns [M, H or 1, N, D]."""
        m, h, _ = actions.shape
        b = z0.shape[0]
        s = m // b
        dt, dev = self.dtype, z0.device
        heads, hd, c, n, L = self.heads, self.head_dim, self.width, self.n, self.step_len
        h2 = hd // 2
        fused = self._fused_ok(dev)
        kernel = self.fused_attention and triton_available(dev)
        bf16_cpu = dev.type == "cpu" and dt == torch.bfloat16 and not kernel
        a_tok = F.linear(actions.float(), *self.action)  # [M, H, C]
        s_tok = F.linear(states.float(), *self.state)
        # Context frame embedded once per problem, then broadcast over its samples.
        frame = F.linear(z0.float(), *self.embed)  # [B, N, C]
        frame = frame[:, None].expand(b, s, n, c).reshape(m, n, c)
        kbuf = vbuf = None
        if h > 1:
            kbuf = torch.empty(len(self.blocks), m, h * L, heads, hd, dtype=dt, device=dev)
            vbuf = torch.empty_like(kbuf)
        outs = []
        for t in range(h):
            # The residual stream stays fp32 (as under autocast); matmul inputs and outputs are in `dtype`.
            # A bf16 residual stream put a noise floor of ~0.007 on the L1 energy at cpu-small (random
            # weights), as large as the energy differences between candidate actions.
            x = torch.cat([a_tok[:, t : t + 1], s_tok[:, t : t + 1], frame], dim=1).view(m * L, c)
            end = (t + 1) * L
            if kernel:
                codes_q, codes_k = self._codes(m, h, dev)
                cu_q = uniform_cu_seqlens(m, L, dev)
                cu_k = uniform_cu_seqlens(m, h * L if kbuf is not None else L, dev)
                used = torch.full((m,), end, dtype=torch.int32, device=dev) if kbuf is not None else None
                grid = (self.config.max_steps, *self.config.grid_hw)
            elif self.fused_attention:
                cos, sin = self._rope_interleaved_at(t, dev)
            else:
                cos, sin = self._rope_at(t, dev)
            for i, p in enumerate(self.blocks):
                y = F.layer_norm(x, (c,), *p["n1"][:2], eps=p["n1"][2]).to(dt)
                qkv = _linear(y, p["qkv"], fused).view(m, L, 3, heads, hd)
                if kernel:  # rotation, attention over the buffer's filled prefix: one kernel
                    if kbuf is not None:
                        kbuf[i, :, t * L : end] = qkv[:, :, 1]
                        vbuf[i, :, t * L : end] = qkv[:, :, 2]
                        k, v, pos_k = kbuf[i].view(-1, heads, hd), vbuf[i].view(-1, heads, hd), codes_k
                    else:
                        k, v, pos_k = (qkv[:, :, 1].reshape(m * L, heads, hd), qkv[:, :, 2].reshape(m * L, heads, hd),
                                       codes_q[t])
                    o = rope_attention(qkv[:, :, 0].reshape(m * L, heads, hd), k, v, codes_q[t], pos_k, cu_q, cu_k,
                                       max_seqlen_q=L, max_seqlen_k=end, grid=grid, seqused_k=used,
                                       validate=False)  # built here, in the grid; no sync per block
                    x = _linear_add(o.view(m * L, c), x, p["proj"], fused)
                    y = F.layer_norm(x, (c,), *p["n2"][:2], eps=p["n2"][2]).to(dt)
                    x = _linear_add(_linear_gelu(y, p["fc1"], fused), x, p["fc2"], fused)
                    continue
                qk = qkv[:, :, :2]  # [M, L, 2, heads, hd]: rotate q and k in one pass
                if self.fused_attention:  # checkpoint order, Triton unavailable here: interleaved pairs
                    qk = apply_rope(qk, cos, sin)
                else:
                    rot = qk * cos
                    rot[..., :h2].addcmul_(qk[..., h2:], sin[..., :h2])
                    rot[..., h2:].addcmul_(qk[..., :h2], sin[..., h2:])
                    qk = rot
                q = qk[:, :, 0]
                if kbuf is not None:
                    kbuf[i, :, t * L : end] = qk[:, :, 1]
                    vbuf[i, :, t * L : end] = qkv[:, :, 2]
                    k, v = kbuf[i, :, :end], vbuf[i, :, :end]
                else:
                    k, v = qk[:, :, 1], qkv[:, :, 2]
                if bf16_cpu:
                    o = _attention_bf16_cpu(q, k, v)
                else:
                    o = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), impl="sdpa")
                o = o.transpose(1, 2).reshape(m * L, c)
                x = _linear_add(o, x, p["proj"], fused)
                y = F.layer_norm(x, (c,), *p["n2"][:2], eps=p["n2"][2]).to(dt)
                x = _linear_add(_linear_gelu(y, p["fc1"], fused), x, p["fc2"], fused)
            x = x.view(m, L, c)[:, COND_TOKENS:].float()
            x = F.layer_norm(x, (c,), *self.norm[:2], eps=self.norm[2])
            out = F.linear(x, *self.proj)  # [M, N, D]
            if return_all or t == h - 1:
                outs.append(out)
            if t < h - 1:
                nxt = out if between_steps is None else between_steps(out)
                frame = F.linear(nxt.float(), *self.embed)
        return torch.stack(outs, 1)


def _attention_bf16_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v for q [M, Lq, heads, hd], k, v [M, Lk, heads, hd] (strided views) in bf16 on
    the CPU -> [M, heads, Lq, hd]. Two batched oneDNN matmuls around an fp32 softmax: at the planner's shapes
    (66 queries, 66-132 keys, hd 64) 1.5-1.7x faster than the CPU flash-attention kernel in bf16, which tiles
    for long sequences (measured 18.6 vs 31.3 ms at M = 200, 132 keys; 2.9 vs 4.4 ms at M = 40)."""
    scale = q.shape[-1] ** -0.5
    s = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1).contiguous())  # [M, heads, Lq, Lk]
    p = torch.softmax(s.float().mul_(scale), dim=-1).to(q.dtype)
    return torch.matmul(p, v.transpose(1, 2).contiguous())


def _linear(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], fused: bool) -> torch.Tensor:
    if fused:
        return torch.ops.mkldnn._linear_pointwise(x, wb[0], wb[1], "none", [], "")
    return F.linear(x, wb[0], wb[1])


def _linear_gelu(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], fused: bool) -> torch.Tensor:
    """Exact (erf) GELU of x W^T + b."""
    if fused:
        return torch.ops.mkldnn._linear_pointwise(x, wb[0], wb[1], "gelu", [], "none")
    return F.gelu(F.linear(x, wb[0], wb[1]))


def _linear_add(x: torch.Tensor, res: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], fused: bool) -> torch.Tensor:
    """res + x W^T + b (res may be fp32 while x, W, b are bf16: then added in place into res)."""
    if res.dtype != x.dtype:
        return res.add_(_linear(x, wb, fused))
    if fused:
        return torch.ops.mkldnn._linear_pointwise.binary(x, res, wb[0], wb[1], "add")
    return F.linear(x, wb[0], wb[1]).add_(res)
