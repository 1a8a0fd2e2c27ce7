"""Triton flash attention with V-JEPA 2's 3D RoPE, variable-length samples and block-causal masking.

One forward and two backward kernels (dK/dV over key blocks, dQ over query blocks: no atomics) over a packed
("varlen") layout: the tokens of every sample lie one after another, `cu_seqlens[b]:cu_seqlens[b+1]`, so a
batch of masked clips keeps each sample's own number of tokens and nothing is padded or gathered into a
second buffer. q, k, v are read through their strides, so the views of one fused qkv projection
([T, 3, H, hd] -> three [T, H, hd]) go in as they are.

RoPE happens inside the kernels, from each token's position code:
  code >= 0  a flat index on the (T, Hp, Wp) token grid (t = code // (Hp*Wp), h, w from the remainder);
  code < 0   a token with only a time step (the AC predictor's action/state tokens): t = -code - 1.
The kernels look each code's full-head cos/sin row up in a table made once per grid by the reference path's
own `rope_tables` (the SPEC quirk: t/h/w axis blocks of 2*((hd//3)//2) dims, tiled frequencies over
interleaved pairs, an unrotated tail), so the fp32 kernels rotate with exactly the reference's numbers, and
apply `x * cos + x[j^1] * sin'` while loading q and k tiles (sin' carries the pair swap's sign). A row per
code costs one coalesced load per tile row from L2 and no integer maths per element: the first version
decoded t/h/w per element and gathered from per-axis tables, and ptxas spilled hundreds of bytes per thread
on sm_90 (scripts/triton_compile_check.py). The backward applies the rotation's adjoint to the gradients it
accumulates in the rotated frame.

Block-causal masking: with `step_len > 0`, a query attends to a key only when the key's time step
(local index // step_len) is not later than the query's. Key tiles that lie wholly in the future are never
visited (the key loop stops at the query block's last step; the dK/dV loop starts at the key block's first
step). KV-cache mode: queries may be fewer than keys (new steps appended to cached ones); they are aligned to
the end of their sample's keys, as in flash-attention's varlen causal convention.

Dtypes: fp16/bf16 (fp32 accumulation, fp32 softmax statistics) and fp32 (IEEE fp32 dot products).
Under TRITON_INTERPRET=1 bf16 `tl.dot` is wrong (NOTES.md), so the interpreter upcasts bf16 tiles to fp32.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from vjepa_fast.rope import rope_positions, rope_tables

_LOG2E = 1.4426950408889634


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1 before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _swap_pairs(x, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    """y[:, 2k] = x[:, 2k+1], y[:, 2k+1] = x[:, 2k] on a register tile (used once per program, in epilogues)."""
    xe, xo = tl.split(tl.reshape(x, [ROWS, BLOCK_D // 2, 2]))
    return tl.reshape(tl.join(xo, xe), [ROWS, BLOCK_D])


@triton.jit
def _table_rows(code, NGRID, NROWS):
    """Row of the position tables for each code: the grid index, or NGRID + t for a time-only token."""
    row = tl.where(code >= 0, code, NGRID - code - 1)
    return tl.minimum(row, NROWS - 1)  # a guard for the table read only: callers keep positions in the grid


@triton.jit
def _load_rotated(PTR, POS, rows, row_mask, stride_t, COS, SIN, NGRID, NROWS,
                  HEAD_DIM: tl.constexpr, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rows `rows` of one head of q or k, rotated, fp32 [ROWS, BLOCK_D] (zeros past HEAD_DIM and row_mask).

    rot[j] = x[j] * cos[j] + x[j ^ 1] * sin'[j] with sin' = -sin on even j (the pair swap's sign folded into
    the table): two loads of the same rows and two FMAs per element, no data movement between lanes.
    """
    offs_d = tl.arange(0, BLOCK_D)
    mask = row_mask[:, None] & (offs_d[None, :] < HEAD_DIM)
    base = PTR + rows.to(tl.int64)[:, None] * stride_t
    x = tl.load(base + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    x_pair = tl.load(base + (offs_d ^ 1)[None, :], mask=mask, other=0.0).to(tl.float32)
    trow = _table_rows(tl.load(POS + rows, mask=row_mask, other=0), NGRID, NROWS).to(tl.int64) * BLOCK_D
    c = tl.load(COS + trow[:, None] + offs_d[None, :])
    s = tl.load(SIN + trow[:, None] + offs_d[None, :])
    return x * c + x_pair * s


@triton.jit
def _unrotate(g, POS, rows, row_mask, COS, SIN, NGRID, NROWS, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    """Adjoint of the rotation on a gradient tile: out[j] = g[j] * cos[j] + (g * sin')[j ^ 1]."""
    offs_d = tl.arange(0, BLOCK_D)
    trow = _table_rows(tl.load(POS + rows, mask=row_mask, other=0), NGRID, NROWS).to(tl.int64) * BLOCK_D
    c = tl.load(COS + trow[:, None] + offs_d[None, :])
    s = tl.load(SIN + trow[:, None] + offs_d[None, :])
    return g * c + _swap_pairs(g * s, ROWS, BLOCK_D)


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, POS_Q, POS_K, CU_Q, CU_K, SEQUSED_K, COS, SIN,
                stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                num_heads, qk_scale, NGRID, NROWS, STEP_LEN,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_SEQUSED: tl.constexpr,
                DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    head = pid_bh % num_heads
    q_start = tl.load(CU_Q + b)
    len_q = tl.load(CU_Q + b + 1) - q_start
    k_start = tl.load(CU_K + b)
    if HAS_SEQUSED:  # KV-cache buffers: sample b's keys start at CU_K[b], SEQUSED_K[b] of them are valid
        len_k = tl.load(SEQUSED_K + b)
    else:
        len_k = tl.load(CU_K + b + 1) - k_start
    m0 = pid_m * BLOCK_M
    if m0 >= len_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < len_q
    mask_d = offs_d < HEAD_DIM

    q = _load_rotated(Q + head * stride_qh, POS_Q, q_start + offs_m, mask_m, stride_qt, COS, SIN, NGRID, NROWS,
                      HEAD_DIM, BLOCK_M, BLOCK_D)
    q = (q * qk_scale).to(DOT_DTYPE)  # qk_scale = scale * log2(e): the softmax runs in base 2

    shift = len_k - len_q  # queries sit at the end of their keys (KV-cache mode)
    k_end = len_k
    if CAUSAL:
        q_step = (offs_m + shift) // STEP_LEN
        last_step = (tl.minimum(m0 + BLOCK_M, len_q) - 1 + shift) // STEP_LEN
        k_end = tl.minimum(len_k, (last_step + 1) * STEP_LEN)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, k_end, BLOCK_N):
        cols = n0 + offs_n
        mask_n = cols < k_end
        k = _load_rotated(K + head * stride_kh, POS_K, k_start + cols, mask_n, stride_kt, COS, SIN, NGRID, NROWS,
                          HEAD_DIM, BLOCK_N, BLOCK_D).to(DOT_DTYPE)
        v = tl.load(V + head * stride_vh + (k_start + cols).to(tl.int64)[:, None] * stride_vt + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        valid = mask_n[None, :]
        if CAUSAL:
            valid = valid & ((cols // STEP_LEN)[None, :] <= q_step[:, None])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_new = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(DOT_DTYPE), v, input_precision=PRECISION)
        m_i = m_new

    acc = acc / l_i[:, None]
    rows = (q_start + offs_m).to(tl.int64)
    tl.store(O + head * stride_oh + rows[:, None] * stride_ot + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
    tl.store(LSE + rows * num_heads + head, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, POS_Q, POS_K, CU_Q, CU_K, SEQUSED_K, COS, SIN,
                     stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
                     num_heads, qk_scale, scale, NGRID, NROWS, STEP_LEN,
                     HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_SEQUSED: tl.constexpr,
                     DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    head = pid_bh % num_heads
    q_start = tl.load(CU_Q + b)
    len_q = tl.load(CU_Q + b + 1) - q_start
    k_start = tl.load(CU_K + b)
    if HAS_SEQUSED:  # KV-cache buffers: sample b's keys start at CU_K[b], SEQUSED_K[b] of them are valid
        len_k = tl.load(SEQUSED_K + b)
    else:
        len_k = tl.load(CU_K + b + 1) - k_start
    n0 = pid_n * BLOCK_N
    if n0 >= len_k:
        return
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < len_k
    mask_d = offs_d < HEAD_DIM
    kv_mask = mask_n[:, None] & mask_d[None, :]

    k = _load_rotated(K + head * stride_kh, POS_K, k_start + offs_n, mask_n, stride_kt, COS, SIN, NGRID, NROWS,
                      HEAD_DIM, BLOCK_N, BLOCK_D).to(DOT_DTYPE)
    v = tl.load(V + head * stride_vh + (k_start + offs_n).to(tl.int64)[:, None] * stride_vt + offs_d[None, :],
                mask=kv_mask, other=0.0).to(DOT_DTYPE)

    shift = len_k - len_q
    m_begin = 0
    if CAUSAL:
        k_step = offs_n // STEP_LEN
        first_q = (n0 // STEP_LEN) * STEP_LEN - shift  # first query whose step reaches this key block
        m_begin = (tl.maximum(first_q, 0) // BLOCK_M) * BLOCK_M

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for m0 in range(m_begin, len_q, BLOCK_M):
        rows = m0 + offs_m
        mask_m = rows < len_q
        q = _load_rotated(Q + head * stride_qh, POS_Q, q_start + rows, mask_m, stride_qt, COS, SIN, NGRID, NROWS,
                          HEAD_DIM, BLOCK_M, BLOCK_D).to(DOT_DTYPE)
        g_rows = (q_start + rows).to(tl.int64)
        do = tl.load(DO + head * stride_doh + g_rows[:, None] * stride_dot + offs_d[None, :],
                     mask=mask_m[:, None] & mask_d[None, :], other=0.0).to(DOT_DTYPE)
        lse = tl.load(LSE + g_rows * num_heads + head, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + g_rows * num_heads + head, mask=mask_m, other=0.0)
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # [BLOCK_N, BLOCK_M], base 2
        valid = mask_m[None, :] & mask_n[:, None]
        if CAUSAL:
            valid = valid & (k_step[:, None] <= ((rows + shift) // STEP_LEN)[None, :])
        p_t = tl.where(valid, tl.exp2(s_t - lse[None, :]), 0.0)
        dv += tl.dot(p_t.to(DOT_DTYPE), do, input_precision=PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(DOT_DTYPE), q, input_precision=PRECISION)

    dk = _unrotate(dk * scale, POS_K, k_start + offs_n, mask_n, COS, SIN, NGRID, NROWS, BLOCK_N, BLOCK_D)
    out_rows = (k_start + offs_n).to(tl.int64)
    # dk/dv are written contiguous [T, H, hd]
    tl.store(DK + (out_rows[:, None] * num_heads + head) * HEAD_DIM + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + (out_rows[:, None] * num_heads + head) * HEAD_DIM + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, POS_Q, POS_K, CU_Q, CU_K, SEQUSED_K, COS, SIN,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
                   num_heads, qk_scale, scale, NGRID, NROWS, STEP_LEN,
                   HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_SEQUSED: tl.constexpr,
                   DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    head = pid_bh % num_heads
    q_start = tl.load(CU_Q + b)
    len_q = tl.load(CU_Q + b + 1) - q_start
    k_start = tl.load(CU_K + b)
    if HAS_SEQUSED:  # KV-cache buffers: sample b's keys start at CU_K[b], SEQUSED_K[b] of them are valid
        len_k = tl.load(SEQUSED_K + b)
    else:
        len_k = tl.load(CU_K + b + 1) - k_start
    m0 = pid_m * BLOCK_M
    if m0 >= len_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < len_q
    mask_d = offs_d < HEAD_DIM
    q_mask = mask_m[:, None] & mask_d[None, :]

    q = _load_rotated(Q + head * stride_qh, POS_Q, q_start + offs_m, mask_m, stride_qt, COS, SIN, NGRID, NROWS,
                      HEAD_DIM, BLOCK_M, BLOCK_D)
    q = (q * qk_scale).to(DOT_DTYPE)
    g_rows = (q_start + offs_m).to(tl.int64)
    do = tl.load(DO + head * stride_doh + g_rows[:, None] * stride_dot + offs_d[None, :],
                 mask=q_mask, other=0.0).to(DOT_DTYPE)
    lse = tl.load(LSE + g_rows * num_heads + head, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + g_rows * num_heads + head, mask=mask_m, other=0.0)

    shift = len_k - len_q
    k_end = len_k
    if CAUSAL:
        q_step = (offs_m + shift) // STEP_LEN
        last_step = (tl.minimum(m0 + BLOCK_M, len_q) - 1 + shift) // STEP_LEN
        k_end = tl.minimum(len_k, (last_step + 1) * STEP_LEN)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, k_end, BLOCK_N):
        cols = n0 + offs_n
        mask_n = cols < k_end
        k = _load_rotated(K + head * stride_kh, POS_K, k_start + cols, mask_n, stride_kt, COS, SIN, NGRID, NROWS,
                          HEAD_DIM, BLOCK_N, BLOCK_D).to(DOT_DTYPE)
        v = tl.load(V + head * stride_vh + (k_start + cols).to(tl.int64)[:, None] * stride_vt + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        valid = mask_n[None, :] & mask_m[:, None]
        if CAUSAL:
            valid = valid & ((cols // STEP_LEN)[None, :] <= q_step[:, None])
        p = tl.where(valid, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(DOT_DTYPE), k, input_precision=PRECISION)

    dq = _unrotate(dq * scale, POS_Q, q_start + offs_m, mask_m, COS, SIN, NGRID, NROWS, BLOCK_M, BLOCK_D)
    tl.store(DQ + (g_rows[:, None] * num_heads + head) * HEAD_DIM + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=q_mask)


# ----------------------------------------------------------------------------------------------------------
# Host side

_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def rope_table(grid: tuple[int, int, int], head_dim: int, block_d: int, device: torch.device,
               style: str = "tiled", interp: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-head cos and signed sin [T*Hp*Wp + T, block_d] fp32, one row per position code.

    Rows 0..T*Hp*Wp-1: grid positions (t/h/w rotation); then T rows for time-only tokens (t rotation only).
    Values come from `vjepa_fast.rope.rope_tables`, the reference path's own tables, so the kernels
    rotate with exactly its numbers. sin is stored as -sin on even dims (rot = x*cos + x[j^1]*sin');
    columns past head_dim hold cos 1, sin 0. style / interp: the RoPE variant ("tiled" for V-JEPA 2,
    "interleaved" for 2.1) and 2.1's row/column rescaling (`rope_positions`): only the table changes, the
    kernels apply `x * cos + x[j^1] * sin'` either way.
    """
    key = (tuple(grid), head_dim, block_d, str(device), style, interp)
    hit = _TABLES.get(key)
    if hit is None:
        t_n, hp, wp = grid
        t, h, w = rope_positions(torch.arange(t_n * hp * wp, device=device), (hp, wp), interp)
        cos_g, sin_g = rope_tables(t, h, w, head_dim, style)
        cos_t, sin_t = rope_tables(torch.arange(t_n, device=device), None, None, head_dim, style)
        cos = torch.ones(cos_g.shape[0] + t_n, block_d, device=device)
        sin = torch.zeros_like(cos)
        cos[:, :head_dim] = torch.cat([cos_g, cos_t])
        sign = torch.tensor([-1.0, 1.0], device=device).repeat(head_dim // 2)
        sin[:, :head_dim] = torch.cat([sin_g, sin_t]) * sign
        hit = (cos.contiguous(), sin.contiguous())
        if len(_TABLES) > 32:
            _TABLES.clear()
        _TABLES[key] = hit
    return hit


def _dot_dtype(dtype: torch.dtype):
    if dtype == torch.float32 or (dtype == torch.bfloat16 and interpreting()):
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]


BLOCK_OVERRIDE: tuple[int, int] | None = None  # (BLOCK_M, BLOCK_N) for every kernel: tests of tile edges


def _blocks(head_dim: int, backward: bool, fp32: bool = False) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for one head size (fp32: inputs in fp32)."""
    if BLOCK_OVERRIDE is not None:
        return BLOCK_OVERRIDE[0], BLOCK_OVERRIDE[1], 4, 1
    if interpreting():
        # The interpreter's cost is per tile (~25 ms), almost regardless of its size.
        return 64, 64, 4, 1
    env = os.environ.get("VJEPA_FAST_ATTN_TILES")  # "BM,BN,WARPS,STAGES[;BM,BN,WARPS,STAGES for backward]"
    if env:
        parts = env.split(";")
        bm, bn, warps, stages = (int(v) for v in parts[min(int(backward), len(parts) - 1)].split(","))
        return bm, bn, warps, stages
    # Chosen for sm_90 with scripts/triton_compile_check.py (ptxas, no GPU needed): the largest tiles that
    # compile without register spills. In fp16/bf16 4 warps spilled 100-350 bytes per thread at every tile size
    # tried; 8 warps fit. Not yet tuned on a GPU (no timings measured): see benchmarks/RESULTS.md.
    if fp32:  # IEEE fp32 dot products (the exactness path)
        return (16, 32, 4, 1) if backward else (32, 32, 4, 1)
    if backward:
        return (64, 64, 8, 2) if head_dim <= 64 else (32, 32, 8, 2)
    return (128, 64, 8, 3) if head_dim <= 64 else (64, 32, 8, 2)


def _common(q: torch.Tensor, grid: tuple[int, int, int], style: str = "tiled", interp: int = 0):
    head_dim = q.shape[-1]
    block_d = max(16, triton.next_power_of_2(head_dim))
    cos, sin = rope_table(grid, head_dim, block_d, q.device, style, interp)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    n_grid = grid[0] * grid[1] * grid[2]
    return head_dim, n_grid, cos.shape[0], cos, sin, block_d, precision


def rope_attention_fwd(q, k, v, pos_q, pos_k, cu_q, cu_k, max_q: int, grid: tuple[int, int, int],
                       scale: float, step_len: int, seqused_k: torch.Tensor | None = None,
                       rope_style: str = "tiled", rope_interp: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward. q: [Tq, H, hd], k, v: [Tk, H, hd] (last dim contiguous); pos_*: int32 codes; cu_*: int32 [B+1];
    seqused_k: optional int32 [B], the number of valid keys from each cu_k[b] (a KV-cache buffer).
    rope_style, rope_interp: the RoPE variant and 2.1's position rescaling (see `rope_table`).

    Returns out [Tq, H, hd] (q's dtype, contiguous) and the base-2 log-sum-exp [Tq, H] fp32.
    """
    tq, heads, _ = q.shape
    head_dim, n_grid, n_rows, cos, sin, block_d, precision = _common(q, grid, rope_style, rope_interp)
    out = torch.empty((tq, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((tq, heads), dtype=torch.float32, device=q.device)
    if tq == 0:
        return out, lse
    bm, bn, warps, stages = _blocks(head_dim, False, q.dtype == torch.float32)
    batch = cu_q.numel() - 1
    launch = (triton.cdiv(max_q, bm), batch * heads)
    _fwd_kernel[launch](
        q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, cu_k if seqused_k is None else seqused_k, cos, sin,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        heads, scale * _LOG2E, n_grid, n_rows, max(step_len, 1),
        HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=step_len > 0,
        HAS_SEQUSED=seqused_k is not None, DOT_DTYPE=_dot_dtype(q.dtype), PRECISION=precision,
        num_warps=warps, num_stages=stages,
    )
    return out, lse


def rope_attention_bwd(grad_out, q, k, v, out, lse, pos_q, pos_k, cu_q, cu_k, max_q: int, max_k: int,
                       grid: tuple[int, int, int], scale: float, step_len: int,
                       seqused_k: torch.Tensor | None = None, rope_style: str = "tiled", rope_interp: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of `rope_attention_fwd`: (dq, dk, dv), contiguous, in the inputs' dtype."""
    tq, heads, _ = q.shape
    head_dim, n_grid, n_rows, cos, sin, block_d, precision = _common(q, grid, rope_style, rope_interp)
    dq = torch.empty((tq, heads, head_dim), dtype=q.dtype, device=q.device)
    # With seqused_k the rows past each sample's valid keys are not visited: they get 0.
    alloc = torch.empty if seqused_k is None else torch.zeros
    dk = alloc((k.shape[0], heads, head_dim), dtype=k.dtype, device=k.device)
    dv = alloc((v.shape[0], heads, head_dim), dtype=v.dtype, device=v.device)
    if tq == 0:
        return dq, dk.zero_(), dv.zero_()
    if grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    delta = (grad_out.float() * out.float()).sum(-1).contiguous()  # [Tq, H]
    bm, bn, warps, stages = _blocks(head_dim, True, q.dtype == torch.float32)
    batch = cu_q.numel() - 1
    args = (heads, scale * _LOG2E, scale, n_grid, n_rows, max(step_len, 1))
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
               grad_out.stride(0), grad_out.stride(1))
    meta = dict(HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=step_len > 0,
                HAS_SEQUSED=seqused_k is not None,
                DOT_DTYPE=_dot_dtype(q.dtype), PRECISION=precision, num_warps=warps, num_stages=stages)
    used = cu_k if seqused_k is None else seqused_k
    # Every key row is written, zeros where a sample has no queries (its loop over queries is empty).
    _bwd_dkdv_kernel[(triton.cdiv(max_k, bn), batch * heads)](
        q, k, v, grad_out, lse, delta, dk, dv, pos_q, pos_k, cu_q, cu_k, used, cos, sin, *strides, *args, **meta)
    _bwd_dq_kernel[(triton.cdiv(max_q, bm), batch * heads)](
        q, k, v, grad_out, lse, delta, dq, pos_q, pos_k, cu_q, cu_k, used, cos, sin, *strides, *args, **meta)
    return dq, dk, dv


__all__ = ["interpreting", "rope_table", "rope_attention_fwd", "rope_attention_bwd"]

