"""Reference CEM steps in plain PyTorch: the definition of `vjepa_fast.ops.cem_sample` / `cem_refit`.

The random stream is Philox4x32-10 (Random123's philox4x32, 10 rounds) done in int64 tensors (uint32 maths by
masking; 32x32-bit products split in 16-bit halves so nothing overflows int64), Box-Muller in float64 with
torch.log / torch.cos / torch.sin. The compiled ops use their own double-precision polynomials (exact on
every device), so op and reference agree to fp32 rounding (a 1-ulp difference when a double result falls
within ~1e-16 of a float rounding boundary). Nothing here imports the ops.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo32(m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit words of m * x for a constant m < 2^32 and an int64 tensor x in [0, 2^32)."""
    p_lo = m * (x & 0xFFFF)  # < 2^48
    p_hi = m * (x >> 16)  # < 2^48
    t = p_lo + ((p_hi & 0xFFFF) << 16)  # < 2^49
    return (t >> 32) + (p_hi >> 16), t & _MASK32


def philox4x32_10(
    ctr: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], key: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-10 of int64 tensors holding uint32 words (broadcastable), key = (k0, k1) uint32 ints."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        hi0, lo0 = _mulhilo32(_M0, c0)
        hi1, lo1 = _mulhilo32(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _box_muller(xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u1 = (2 * xa + 1).double() * 2.0**-33  # in (0, 1), never 0 or 1
    u2 = (2 * xb + 1).double() * 2.0**-33
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = (2.0 * math.pi) * u2
    return (r * torch.cos(theta)).float(), (r * torch.sin(theta)).float()


def philox_normals(seed: int, offset: int, batch: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z: [batch, count] float32 standard normals; z[b, j] is lane j % 4 of
    Philox4x32-10(key = (seed_lo, seed_hi), counter = (j // 4, b, offset_lo, offset_hi)), lanes (0, 1) and
    (2, 3) being Box-Muller pairs (radius from the first word, angle from the second)."""
    groups = (count + 3) // 4
    g = torch.arange(groups, dtype=torch.int64, device=device).expand(batch, groups)
    b = torch.arange(batch, dtype=torch.int64, device=device)[:, None].expand(batch, groups)
    c2 = torch.full_like(g, offset & _MASK32)
    c3 = torch.full_like(g, (offset >> 32) & _MASK32)
    x0, x1, x2, x3 = philox4x32_10((g, b, c2, c3), (seed & _MASK32, (seed >> 32) & _MASK32))
    z0, z1 = _box_muller(x0, x1)
    z2, z3 = _box_muller(x2, x3)
    return torch.stack((z0, z1, z2, z3), dim=-1).reshape(batch, 4 * groups)[:, :count]


def _toward_zero(d: torch.Tensor) -> torch.Tensor:
    """float64 -> float32 rounding towards zero."""
    f = d.float()
    over = f.double().abs() > d.abs()
    return torch.where(over, torch.nextafter(f, torch.zeros_like(f)), f)


def project_ball(x: torch.Tensor, radius: float, norm: int) -> torch.Tensor:
    """Projection of the rows x[..., D] (float32) onto the L2 (scale-down) or L1 (exact Euclidean projection)
    ball of the given radius, in float64, rounded towards zero (the result never leaves the ball)."""
    xd = x.double()
    if norm == 2:
        ss = (xd * xd).sum(-1, keepdim=True)
        scale = radius / torch.sqrt(ss) * (1.0 - 2.0**-50)
        out = _toward_zero(xd * scale)
        inside = ss <= radius * radius * (1.0 - 2.0**-48)
        return torch.where(inside, x, out)
    v = xd.abs()
    total = v.sum(-1, keepdim=True)
    mu = torch.sort(v, dim=-1, descending=True).values
    cs = mu.cumsum(-1)
    j = torch.arange(1, x.shape[-1] + 1, dtype=torch.float64, device=x.device)
    t = (cs - radius) / j
    active = mu > t  # a prefix (Duchi et al., 2008)
    rho = active.sum(-1, keepdim=True).clamp_min(1) - 1
    theta = t.gather(-1, rho) + cs.gather(-1, rho) * 2.0**-44
    out = _toward_zero(torch.sign(xd) * (v - theta).clamp_min(0.0))
    inside = total <= radius * (1.0 - 2.0**-48)
    return torch.where(inside, x, out)


@torch.no_grad()
def cem_sample_reference(
    mean: torch.Tensor,
    std: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    num_samples: int,
    *,
    seed: int,
    offset: int = 0,
    ball_radius: float | None = None,
    ball_dims: int = 3,
    ball_norm: int = 2,
    normals: torch.Tensor | None = None,
) -> torch.Tensor:
    """samples: [B, N, H, A] = ball(clamp(mean + std * z, lower, upper)).

    mean, std: [B, H, A] float32; lower, upper: [A]. z[b, n, h, a] = philox_normals(...)[b, (n * H + h) * A + a],
    or normals[b, n, h, a] when given ([B, N, H, A] float32; seed and offset unused).
    The ball (when ball_radius is set) acts on the first ball_dims dims of every action.
    """
    B, H, A = mean.shape
    if normals is not None:
        z = normals
    else:
        z = philox_normals(seed, offset, B, num_samples * H * A, mean.device).view(B, num_samples, H, A)
    x = mean[:, None] + std[:, None] * z  # two float32 roundings, as in the kernels
    x = torch.minimum(torch.maximum(x, lower), upper)
    if ball_radius is not None and ball_radius > 0 and ball_dims > 0:
        x = torch.cat((project_ball(x[..., :ball_dims], ball_radius, ball_norm), x[..., ball_dims:]), dim=-1)
    return x


def elite_order(energies: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B, N] indices by ascending energy, ties by lower index, NaN after everything (+inf too)."""
    nan = torch.isnan(energies)
    finite_first = torch.where(nan, torch.full_like(energies, math.inf), energies)
    order = torch.sort(finite_first, dim=1, stable=True).indices
    order2 = torch.sort(nan.gather(1, order).to(torch.int8), dim=1, stable=True).indices
    return order.gather(1, order2)


@torch.no_grad()
def cem_refit_reference(
    samples: torch.Tensor,
    energies: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    topk: int,
    *,
    momentum_pos: float = 0.0,
    momentum_grip: float = 0.0,
    grip_dims: int = 1,
    min_std: float = 0.0,
    momentum_std_pos: float | None = None,
    momentum_std_grip: float | None = None,
    correction: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(new_mean [B, H, A], new_std [B, H, A], elite_idx [B, topk] int64).

    elite_idx: the topk lowest energies in ascending order. Elite statistics in float64: mean and std with
    divisor k - correction (0: population, 1: unbiased; needs topk >= 2); new = m * old + (1 - m) * elite with
    m = momentum_pos (std: momentum_std_pos) on the first A - grip_dims dims and momentum_grip (std:
    momentum_std_grip) on the last grip_dims, a None std momentum being the mean's; new_std >= min_std.
    """
    if correction not in (0, 1):
        raise ValueError(f"correction must be 0 or 1, got {correction!r}")
    if topk <= correction:
        raise ValueError(f"correction 1 (unbiased std, divisor k - 1) needs topk >= 2, got topk = {topk}")
    B, N, H, A = samples.shape
    idx = elite_order(energies)[:, :topk]
    elites = samples.gather(1, idx[:, :, None, None].expand(B, topk, H, A)).double()
    elite_mean = elites.mean(1)
    elite_std = elites.var(1, correction=correction).sqrt()

    def momenta(pos: float, grip: float) -> torch.Tensor:
        m = torch.full((A,), pos, dtype=torch.float64, device=samples.device)
        m[A - grip_dims :] = grip
        return m

    m = momenta(momentum_pos, momentum_grip)
    ms = momenta(momentum_pos if momentum_std_pos is None else momentum_std_pos,
                 momentum_grip if momentum_std_grip is None else momentum_std_grip)
    new_mean = (m * mean.double() + (1.0 - m) * elite_mean).float()
    new_std = (ms * std.double() + (1.0 - ms) * elite_std).float()
    new_std = torch.maximum(new_std, torch.tensor(min_std, dtype=torch.float32, device=samples.device))
    return new_mean, new_std, idx
