"""The batched CEM ops (vjepa_fast.ops.cem_sample / cem_refit) against their plain-PyTorch definition.

What is promised and tested: samples equal the reference to fp32 rounding (the test allows 1e-6 absolute,
i.e. ~1 ulp at |x| ~ 6; in practice they are bitwise equal), follow N(mean, std^2) before projection,
depend only on (seed, offset, b, n, h, a) (so a prefix of N or of B gives the same values), never leave the
box or the ball; refit picks exactly the k lowest energies (ties by index, NaN last) and matches the float64
statistics of the reference to fp32 rounding; CUDA equals CPU bit for bit.
"""

from __future__ import annotations

import math

import pytest
import torch

from vjepa_fast.ops import cem_refit, cem_sample
from vjepa_fast.reference.cem import cem_refit_reference, cem_sample_reference, philox4x32_10, philox_normals

INF = math.inf


def _problem(B, H, A, seed=0, device="cpu", std_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    mean = (0.3 * torch.randn(B, H, A, generator=g)).to(device)
    std = (std_scale * torch.rand(B, H, A, generator=g)).to(device)
    lower = torch.full((A,), -1.0, device=device)
    upper = torch.full((A,), 1.0, device=device)
    return mean, std, lower, upper


# ------------------------------------------------------------------------------------------------ RNG
@pytest.mark.parametrize(
    "ctr,key,expected",
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
    ids=["zeros", "ones", "pi"],
)
def test_reference_philox_known_answers(ctr, key, expected):
    """Random123's known-answer vectors for philox4x32_10."""
    out = philox4x32_10(tuple(torch.tensor([c]) for c in ctr), key)
    assert tuple(int(x) for x in out) == expected


SAMPLE_CASES = {
    "one_of_everything": (1, 1, 1, 1),
    "robot_B3": (3, 97, 2, 7),
    "odd_A13_H3": (2, 5, 3, 13),
    "A32": (2, 33, 1, 32),
}
BALLS = {"box_only": (None, 2), "l2": (0.5, 2), "l1": (0.6, 1)}


@pytest.mark.parametrize("ball", list(BALLS.values()), ids=list(BALLS))
@pytest.mark.parametrize("shape", list(SAMPLE_CASES.values()), ids=list(SAMPLE_CASES))
@pytest.mark.parametrize("seed,offset", [(0, 0), (2**40 + 5, 2**33 + 7)], ids=["small", "64bit"])
def test_sample_matches_reference(shape, ball, seed, offset):
    B, N, H, A = shape
    radius, norm = ball
    mean, std, lower, upper = _problem(B, H, A, seed=1)
    kw = dict(seed=seed, offset=offset, ball_radius=radius, ball_dims=min(3, A), ball_norm=norm)
    ours = cem_sample(mean, std, lower, upper, N, **kw)
    ref = cem_sample_reference(mean, std, lower, upper, N, **kw)
    assert ours.shape == (B, N, H, A) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert (ours != ref).float().mean() < 1e-3, "the op and the reference should agree bitwise almost everywhere"
    torch.testing.assert_close(cem_sample(mean, std, lower, upper, N, backend="reference", **kw), ref,
                               rtol=0, atol=0)


def test_normals_statistics():
    """400k draws: mean, std, tails (Kolmogorov-Smirnov at the 0.1% level) and pair independence."""
    n = 400_000
    mean, std = torch.zeros(1, 1, 8), torch.ones(1, 1, 8)
    lower, upper = torch.full((8,), -INF), torch.full((8,), INF)
    z = cem_sample(mean, std, lower, upper, n // 8, seed=123, offset=5).flatten().double()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.std().item() - 1.0) < 5 / math.sqrt(2 * n)
    assert z.abs().max().item() <= math.sqrt(64 * math.log(2)) + 1e-6
    zs = torch.sort(z).values
    cdf = torch.special.ndtr(zs)
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((emp - cdf).abs(), (emp - 1.0 / n - cdf).abs()).max().item()
    assert ks < 1.95 / math.sqrt(n), f"KS statistic {ks:.2e}"
    # The two normals of one Box-Muller pair, and neighbouring pairs, are uncorrelated.
    for lag in (1, 2, 4):
        corr = torch.corrcoef(torch.stack((z[:-lag], z[lag:])))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(n), f"lag {lag}: correlation {corr:.2e}"


def test_samples_follow_the_gaussian_per_dimension():
    B, H, A, N = 2, 2, 7, 20_000
    mean, std, _, _ = _problem(B, H, A, seed=3)
    lower, upper = torch.full((A,), -INF), torch.full((A,), INF)
    x = cem_sample(mean, std, lower, upper, N, seed=9).double()
    tol = 5 / math.sqrt(N)
    assert ((x.mean(1) - mean) / std.clamp_min(1e-3)).abs().max() < tol
    assert ((x.std(1) / std.clamp_min(1e-3)) - 1).abs().max() < 5 / math.sqrt(2 * N) * 1.5


def test_seed_and_offset_reproducibility():
    mean, std, lower, upper = _problem(2, 2, 7)
    a = cem_sample(mean, std, lower, upper, 50, seed=7, offset=3)
    assert torch.equal(a, cem_sample(mean, std, lower, upper, 50, seed=7, offset=3))
    for other in (dict(seed=7, offset=4), dict(seed=8, offset=3)):
        b = cem_sample(mean, std, lower, upper, 50, **other)
        assert (a != b).float().mean() > 0.9, f"{other} should give fresh samples"
        za = philox_normals(7, 3, 1, 10_000).double().flatten()
        zb = philox_normals(other["seed"], other["offset"], 1, 10_000).double().flatten()
        assert abs(torch.corrcoef(torch.stack((za, zb)))[0, 1].item()) < 0.05


def test_values_do_not_depend_on_batch_or_sample_count():
    """Element (b, n, h, a) depends on (seed, offset, b, n, h, a) only: prefixes of B and N agree."""
    mean, std, lower, upper = _problem(4, 2, 7, seed=2)
    big = cem_sample(mean, std, lower, upper, 64, seed=11, offset=2, ball_radius=0.4)
    assert torch.equal(cem_sample(mean[:2], std[:2], lower, upper, 64, seed=11, offset=2, ball_radius=0.4), big[:2])
    assert torch.equal(cem_sample(mean, std, lower, upper, 13, seed=11, offset=2, ball_radius=0.4), big[:, :13])


@pytest.mark.parametrize("norm", [1, 2])
def test_bounds_never_exceeded(norm):
    B, N, H, A = 3, 2000, 2, 7
    mean, std, _, _ = _problem(B, H, A, seed=4, std_scale=3.0)  # heavy clamping and projection
    lower = torch.tensor([-0.05, -0.075, -0.01, -0.1, -0.2, -0.3, 0.0])
    upper = torch.tensor([0.075, 0.05, 0.2, 0.1, 0.2, 0.3, 1.0])
    radius = 0.075
    x = cem_sample(mean, std, lower, upper, N, seed=5, ball_radius=radius, ball_norm=norm)
    assert bool((x >= lower).all() and (x <= upper).all())
    xyz = x[..., :3].double()
    size = xyz.norm(p=norm, dim=-1)
    assert size.max().item() <= radius, f"ball exceeded by {size.max().item() - radius:.3g}"
    projected = cem_sample(mean, std, lower, upper, N, seed=5)  # same draws, box only
    inside = projected[..., :3].double().norm(p=norm, dim=-1) <= radius * (1 - 1e-12)
    assert torch.equal(x[inside], projected[inside]), "points inside the ball must not move"
    assert ((size[~inside] - radius).abs() < 1e-6).all(), "points outside land on the sphere"
    assert torch.equal(x[..., 3:], projected[..., 3:]), "the ball only acts on the first ball_dims dims"
    assert (~inside).float().mean() > 0.3  # the test exercises the projection


def test_l1_projection_is_the_euclidean_projection():
    """The L1 result is closer to the point than any other point of the ball (checked against random ones)."""
    v = torch.tensor([[0.9, -0.2, 0.05], [0.3, 0.3, -0.3], [2.0, 0.0, 0.0]])
    mean, std = v[None, :, :], torch.zeros(1, 3, 3)
    lower, upper = torch.full((3,), -5.0), torch.full((3,), 5.0)
    p = cem_sample(mean, std, lower, upper, 1, seed=0, ball_radius=0.5, ball_norm=1)[0, 0].double()
    g = torch.Generator().manual_seed(0)
    cand = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    cand = cand / cand.abs().sum(-1, keepdim=True) * 0.5 * torch.rand(20_000, 1, generator=g, dtype=torch.float64)
    for row in range(3):
        d_ours = (p[row] - v[row].double()).norm()
        assert d_ours <= (cand - v[row].double()).norm(dim=-1).min() + 1e-7


# ---------------------------------------------------------------------------------------------- refit
REFIT_CASES = {
    "robot_B1": (1, 800, 2, 7, 10),
    "robot_B5": (5, 800, 2, 7, 80),
    "k1": (2, 7, 3, 5, 1),
    "k_all": (3, 33, 1, 7, 33),
    "odd_k37": (2, 97, 2, 13, 37),
}


@pytest.mark.parametrize("case", list(REFIT_CASES.values()), ids=list(REFIT_CASES))
@pytest.mark.parametrize("momenta,grip_dims,min_std", [((0.0, 0.0), 1, 0.0), ((0.1, 0.7), 2, 0.05),
                                                       ((0.3, 0.3), 0, 0.0)], ids=["plain", "grip2", "nogrip"])
def test_refit_matches_reference(case, momenta, grip_dims, min_std):
    B, N, H, A, k = case
    grip_dims = min(grip_dims, A)
    mean, std, lower, upper = _problem(B, H, A, seed=6)
    samples = cem_sample(mean, std, lower, upper, N, seed=1)
    energies = torch.randn(B, N, generator=torch.Generator().manual_seed(2))
    kw = dict(momentum_pos=momenta[0], momentum_grip=momenta[1], grip_dims=grip_dims, min_std=min_std)
    nm, ns, idx = cem_refit(samples, energies, mean, std, k, **kw)
    rm, rs, ridx = cem_refit_reference(samples, energies, mean, std, k, **kw)
    assert idx.dtype == torch.int64 and idx.shape == (B, k)
    assert torch.equal(idx, ridx)
    assert torch.equal(idx, torch.topk(energies, k, dim=1, largest=False, sorted=True).indices)
    torch.testing.assert_close(nm, rm, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(ns, rs, rtol=1e-7, atol=1e-7)
    assert (ns >= min_std).all()


def test_refit_nan_energies_are_never_elites():
    B, N, H, A = 2, 50, 2, 7
    mean, std, lower, upper = _problem(B, H, A)
    samples = cem_sample(mean, std, lower, upper, N, seed=3)
    energies = torch.randn(B, N, generator=torch.Generator().manual_seed(0))
    energies[:, ::3] = math.nan
    energies[0, 1] = INF
    energies[1, 2] = -INF
    _, _, idx = cem_refit(samples, energies, mean, std, 33)  # 33 energies are numbers
    assert not torch.isnan(energies.gather(1, idx)).any()
    assert idx[1, 0] == 2 and idx[0, -1] == 1  # -inf first, +inf after every finite energy
    # More elites than numbers: the NaN ones come last, by index.
    _, _, idx = cem_refit(samples, energies, mean, std, 40)
    _, _, ridx = cem_refit_reference(samples, energies, mean, std, 40)
    assert torch.equal(idx, ridx)
    assert idx[0, 33:].tolist() == list(range(0, 21, 3))
    all_nan = torch.full((B, N), math.nan)
    assert cem_refit(samples, all_nan, mean, std, 5)[2].tolist() == [list(range(5))] * B


def test_refit_ties_are_broken_by_index():
    mean, std, lower, upper = _problem(1, 2, 7)
    samples = cem_sample(mean, std, lower, upper, 12, seed=3)
    energies = torch.tensor([[1.0, 0.5, 0.5, -0.0, 0.0, 2.0, 0.5, -0.0, 1.0, 0.5, 0.0, 3.0]])
    _, _, idx = cem_refit(samples, energies, mean, std, 8)
    assert idx.tolist() == [[3, 4, 7, 10, 1, 2, 6, 9]]
    assert torch.equal(idx, cem_refit_reference(samples, energies, mean, std, 8)[2])


def test_refit_with_std_floor_and_full_momentum():
    mean, std, lower, upper = _problem(2, 2, 7)
    samples = cem_sample(mean, std, lower, upper, 40, seed=1)
    energies = torch.randn(2, 40)
    nm, ns, _ = cem_refit(samples, energies, mean, std, 5, momentum_pos=1.0, momentum_grip=1.0)
    assert torch.equal(nm, mean) and torch.equal(ns, std)
    same = samples[:, :1].expand(2, 40, 2, 7).contiguous()  # every elite identical: std 0, floored
    _, ns, _ = cem_refit(same, energies, mean, std, 5, min_std=0.02)
    assert torch.equal(ns, torch.full_like(ns, 0.02))


# ------------------------------------------------------------- given normals, std momenta, std correction
@pytest.mark.parametrize("ball", list(BALLS.values()), ids=list(BALLS))
@pytest.mark.parametrize("shape", list(SAMPLE_CASES.values()), ids=list(SAMPLE_CASES))
def test_sample_given_normals_matches_reference(shape, ball):
    """Given normals z take the place of Philox's: op == reference, and (box only) == the two float32 roundings
    of plain torch, mean + std * z then the clamp, bit for bit."""
    B, N, H, A = shape
    radius, norm = ball
    mean, std, lower, upper = _problem(B, H, A, seed=1, std_scale=2.0)
    z = torch.randn(B, N, H, A, generator=torch.Generator().manual_seed(4))
    kw = dict(ball_radius=radius, ball_dims=min(3, A), ball_norm=norm, normals=z)
    ours = cem_sample(mean, std, lower, upper, N, **kw)
    ref = cem_sample_reference(mean, std, lower, upper, N, seed=0, **kw)
    assert ours.shape == (B, N, H, A)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert (ours != ref).float().mean() < 1e-3
    implied = cem_sample(mean, std, lower, upper, ball_radius=radius, ball_dims=min(3, A), ball_norm=norm, normals=z)
    assert torch.equal(implied, ours), "num_samples defaults to normals.shape[1]; no seed needed"
    if radius is None:
        plain = torch.minimum(torch.maximum(mean[:, None] + std[:, None] * z, lower), upper)
        assert torch.equal(ours, plain)


def test_sample_given_philox_normals_equal_the_seeded_samples():
    B, N, H, A = 2, 40, 2, 7
    mean, std, lower, upper = _problem(B, H, A, seed=2)
    z = philox_normals(5, 3, B, N * H * A).view(B, N, H, A)
    seeded = cem_sample(mean, std, lower, upper, N, seed=5, offset=3, ball_radius=0.4)
    given = cem_sample(mean, std, lower, upper, N, ball_radius=0.4, normals=z)
    torch.testing.assert_close(given, seeded, rtol=0, atol=1e-6)


REFIT_OPTIONS = {
    "meta": (dict(momentum_pos=0.25, momentum_grip=0.15, momentum_std_pos=0.95, momentum_std_grip=0.15), 1),
    "std_only": (dict(momentum_pos=0.0, momentum_grip=0.3, momentum_std_pos=0.6), 1),
    "grip_std_only_pop": (dict(momentum_pos=0.2, momentum_grip=0.2, momentum_std_grip=1.0), 0),
}


@pytest.mark.parametrize("case", list(REFIT_CASES.values()), ids=list(REFIT_CASES))
@pytest.mark.parametrize("option", list(REFIT_OPTIONS), ids=list(REFIT_OPTIONS))
def test_refit_std_momenta_and_correction_match_reference(case, option):
    B, N, H, A, k = case
    kw, correction = REFIT_OPTIONS[option]
    if k == 1 and correction == 1:
        k = 2  # one elite has no unbiased std (refused, see the error tests)
    mean, std, lower, upper = _problem(B, H, A, seed=6)
    samples = cem_sample(mean, std, lower, upper, N, seed=1)
    energies = torch.randn(B, N, generator=torch.Generator().manual_seed(2))
    nm, ns, idx = cem_refit(samples, energies, mean, std, k, correction=correction, min_std=0.01, **kw)
    rm, rs, ridx = cem_refit_reference(samples, energies, mean, std, k, correction=correction, min_std=0.01, **kw)
    assert torch.equal(idx, ridx)
    torch.testing.assert_close(nm, rm, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(ns, rs, rtol=1e-7, atol=1e-7)
    # Independently of the reference: torch's own float64 statistics of the elites.
    elites = samples.gather(1, idx[:, :, None, None].expand(B, k, H, A)).double()
    ms = torch.full((A,), kw.get("momentum_std_pos", kw["momentum_pos"]), dtype=torch.float64)
    ms[-1] = kw.get("momentum_std_grip", kw["momentum_grip"])
    expect = (ms * std.double() + (1 - ms) * elites.std(1, correction=correction)).float().clamp_min(0.01)
    torch.testing.assert_close(ns, expect, rtol=1e-7, atol=1e-7)


def test_refit_new_arguments_default_to_todays_refit():
    mean, std, lower, upper = _problem(3, 2, 7)
    samples = cem_sample(mean, std, lower, upper, 50, seed=4)
    energies = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    kw = dict(momentum_pos=0.1, momentum_grip=0.7)
    today = cem_refit(samples, energies, mean, std, 6, **kw)
    spelled = cem_refit(samples, energies, mean, std, 6, momentum_std_pos=0.1, momentum_std_grip=0.7, correction=0,
                        **kw)
    for a, b in zip(today, spelled):
        assert torch.equal(a, b)
    # Without momentum the two corrections differ by the factor sqrt(k / (k - 1)) exactly (to fp32 rounding).
    pop = cem_refit(samples, energies, mean, std, 6)[1]
    unbiased = cem_refit(samples, energies, mean, std, 6, correction=1)[1]
    torch.testing.assert_close(unbiased, pop * math.sqrt(6 / 5), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------- errors
def _good():
    mean, std, lower, upper = _problem(2, 2, 7)
    return mean, std, lower, upper


SAMPLE_ERRORS = {
    "fp64_mean": (lambda m, s, lo, hi: dict(mean=m.double()), TypeError, "mean must be float32"),
    "shape_mismatch": (lambda m, s, lo, hi: dict(std=s[:, :1]), ValueError, "std has shape"),
    "bounds_shape": (lambda m, s, lo, hi: dict(lower=lo[:3]), ValueError, "lower and upper must have shape"),
    "horizon_0": (lambda m, s, lo, hi: dict(mean=m[:, :0], std=s[:, :0]), ValueError, "horizon"),
    "nan_mean": (lambda m, s, lo, hi: dict(mean=m.index_fill(1, torch.tensor([1]), math.nan)), ValueError,
                 "mean must be finite"),
    "nan_std": (lambda m, s, lo, hi: dict(std=s.index_fill(2, torch.tensor([0]), math.nan)), ValueError,
                "std must be finite"),
    "negative_std": (lambda m, s, lo, hi: dict(std=-s), ValueError, "std must be >= 0"),
    "nan_bound": (lambda m, s, lo, hi: dict(upper=hi.index_fill(0, torch.tensor([2]), math.nan)), ValueError,
                  "must not be NaN"),
    "lower_gt_upper": (lambda m, s, lo, hi: dict(lower=lo + 3), ValueError, "lower must be <= upper"),
    "zero_samples": (lambda m, s, lo, hi: dict(num_samples=0), ValueError, "num_samples"),
    "negative_offset": (lambda m, s, lo, hi: dict(offset=-1), ValueError, "offset"),
    "float_seed": (lambda m, s, lo, hi: dict(seed=1.5), TypeError, "seed must be an int"),
    "bad_norm": (lambda m, s, lo, hi: dict(ball_norm=3, ball_radius=0.1), ValueError, "ball_norm"),
    "bad_radius": (lambda m, s, lo, hi: dict(ball_radius=-0.1), ValueError, "ball_radius"),
    "ball_dims_gt_A": (lambda m, s, lo, hi: dict(ball_dims=8, ball_radius=0.1), ValueError, "ball_dims"),
    "box_excludes_0": (lambda m, s, lo, hi: dict(lower=lo + 1.5, upper=hi + 1, ball_radius=0.1), ValueError,
                       "contain 0"),
    "meta_device": (lambda m, s, lo, hi: dict(std=s.to("meta")), ValueError, "same device"),
    "backend": (lambda m, s, lo, hi: dict(backend="cuda-magic"), ValueError, "backend"),
    "normals_shape": (lambda m, s, lo, hi: dict(normals=torch.zeros(2, 10, 2, 6)), ValueError,
                      r"normals must have shape \[B, num_samples, H, A\] = \[2, 10, 2, 7\]"),
    "normals_vs_num_samples": (lambda m, s, lo, hi: dict(normals=torch.zeros(2, 9, 2, 7)), ValueError,
                               "normals must have shape"),
    "normals_fp64": (lambda m, s, lo, hi: dict(normals=torch.zeros(2, 10, 2, 7, dtype=torch.float64)), TypeError,
                     "normals must be float32"),
    "normals_3d": (lambda m, s, lo, hi: dict(normals=torch.zeros(2, 10, 14)), ValueError, "normals must have 4"),
    "normals_nan": (lambda m, s, lo, hi: dict(normals=torch.full((2, 10, 2, 7), math.nan)), ValueError,
                    "normals must be finite"),
    "normals_device": (lambda m, s, lo, hi: dict(normals=torch.zeros(2, 10, 2, 7, device="meta")), ValueError,
                       "same device"),
    "no_seed": (lambda m, s, lo, hi: dict(seed=None), TypeError, "seed are required"),
}


@pytest.mark.parametrize("case", list(SAMPLE_ERRORS), ids=list(SAMPLE_ERRORS))
def test_sample_clear_errors(case):
    make, exc, match = SAMPLE_ERRORS[case]
    mean, std, lower, upper = _good()
    args = dict(mean=mean, std=std, lower=lower, upper=upper, num_samples=10, seed=0)
    args.update(make(mean, std, lower, upper))
    with pytest.raises(exc, match=match):
        cem_sample(**args)


REFIT_ERRORS = {
    "topk_gt_samples": (lambda x, e, m, s: dict(topk=11), ValueError, r"topk must be in \[1, num_samples\]"),
    "topk_0": (lambda x, e, m, s: dict(topk=0), ValueError, "topk must be in"),
    "energies_shape": (lambda x, e, m, s: dict(energies=e[:, :9]), ValueError, "energies must have shape"),
    "mean_shape": (lambda x, e, m, s: dict(mean=m[:1]), ValueError, "mean must have shape"),
    "fp16_energies": (lambda x, e, m, s: dict(energies=e.half()), TypeError, "energies must be float32"),
    "momentum": (lambda x, e, m, s: dict(momentum_pos=1.5), ValueError, "momentum_pos"),
    "nan_momentum": (lambda x, e, m, s: dict(momentum_grip=math.nan), ValueError, "momentum_grip"),
    "grip_dims": (lambda x, e, m, s: dict(grip_dims=8), ValueError, "grip_dims"),
    "min_std": (lambda x, e, m, s: dict(min_std=-1.0), ValueError, "min_std"),
    "momentum_std_pos": (lambda x, e, m, s: dict(momentum_std_pos=1.5), ValueError, "momentum_std_pos"),
    "nan_momentum_std_grip": (lambda x, e, m, s: dict(momentum_std_grip=math.nan), ValueError, "momentum_std_grip"),
    "correction_2": (lambda x, e, m, s: dict(correction=2), ValueError, "correction"),
    "float_correction": (lambda x, e, m, s: dict(correction=1.0), TypeError, "correction must be an int"),
    "unbiased_k1": (lambda x, e, m, s: dict(correction=1, topk=1), ValueError, "needs topk >= 2"),
}


@pytest.mark.parametrize("case", list(REFIT_ERRORS), ids=list(REFIT_ERRORS))
def test_refit_clear_errors(case):
    make, exc, match = REFIT_ERRORS[case]
    mean, std, lower, upper = _good()
    samples = cem_sample(mean, std, lower, upper, 10, seed=0)
    args = dict(samples=samples, energies=torch.randn(2, 10), mean=mean, std=std, topk=3)
    args.update(make(samples, args["energies"], mean, std))
    with pytest.raises(exc, match=match):
        cem_refit(**args)


def test_compiled_op_checks_its_arguments():
    """The C++ op checks on its own (for callers of torch.ops.vjepa_fast.* directly)."""
    mean, std, lower, upper = _good()
    op = torch.ops.vjepa_fast
    with pytest.raises(ValueError, match="std must be finite and >= 0"):
        op.cem_sample(mean, -std, lower, upper, 0.0, 3, 2, 0, 0, 4)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        op.cem_sample(mean, std, upper + 1, upper, 0.0, 3, 2, 0, 0, 4)
    with pytest.raises(TypeError, match="mean must be float32"):
        op.cem_sample(mean.double(), std, lower, upper, 0.0, 3, 2, 0, 0, 4)
    samples = cem_sample(mean, std, lower, upper, 10, seed=0)
    with pytest.raises(ValueError, match="topk must be in"):
        op.cem_refit(samples, torch.randn(2, 10), mean, std, 11, 0.0, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match="energies must have shape"):
        op.cem_refit(samples, torch.randn(2, 9), mean, std, 3, 0.0, 0.0, 1, 0.0)
    with pytest.raises(ValueError, match="needs topk >= 2"):
        op.cem_refit(samples, torch.randn(2, 10), mean, std, 1, 0.0, 0.0, 1, 0.0, None, None, 1)
    with pytest.raises(ValueError, match="momentum_std_grip must be None or in"):
        op.cem_refit(samples, torch.randn(2, 10), mean, std, 3, 0.0, 0.0, 1, 0.0, 0.5, 2.0, 0)
    with pytest.raises(ValueError, match="normals must have shape"):
        op.cem_sample(mean, std, lower, upper, 0.0, 3, 2, 0, 0, 4, torch.zeros(2, 5, 2, 7))
    with pytest.raises(ValueError, match="normals must be finite"):
        op.cem_sample(mean, std, lower, upper, 0.0, 3, 2, 0, 0, 4, torch.full((2, 4, 2, 7), math.inf))


# ------------------------------------------------------------------------------- registration/compile
def test_opcheck():
    mean, std, lower, upper = _problem(2, 2, 7)
    torch.library.opcheck(torch.ops.vjepa_fast.cem_sample.default, (mean, std, lower, upper, 0.5, 3, 1, 3, 1, 17))
    samples = cem_sample(mean, std, lower, upper, 17, seed=3)
    torch.library.opcheck(torch.ops.vjepa_fast.cem_refit.default,
                          (samples, torch.randn(2, 17), mean, std, 4, 0.1, 0.2, 1, 0.01))
    z = torch.randn(2, 17, 2, 7, generator=torch.Generator().manual_seed(0))
    torch.library.opcheck(torch.ops.vjepa_fast.cem_sample.default, (mean, std, lower, upper, 0.5, 3, 2, 3, 1, 17, z))
    torch.library.opcheck(torch.ops.vjepa_fast.cem_refit.default,
                          (samples, torch.randn(2, 17), mean, std, 4, 0.25, 0.15, 1, 0.0, 0.95, 0.15, 1))


def _cem_loop(mean, std, lower, upper, target, iters):
    for it in range(iters):
        samples = cem_sample(mean, std, lower, upper, 256, seed=42, offset=it, ball_radius=0.3)
        energies = ((samples - target) ** 2).sum(dim=(2, 3))
        mean, std, _ = cem_refit(samples, energies, mean, std, 16, momentum_pos=0.1, momentum_grip=0.1,
                                 min_std=1e-4)
    return mean, std


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_cem_loop(compile_backend):
    """A whole CEM loop (sample -> quadratic energy -> refit, 16 iterations) compiles with no graph break,
    gives the eager values (aot_eager: bitwise; inductor may reorder the energy's sum, so near-ties can
    pick other elites) and finds the quadratic's minimum to 1e-3 (inside the box and the ball)."""
    B, H, A = 3, 2, 7
    target = (0.4 * torch.rand(B, 1, H, A, generator=torch.Generator().manual_seed(0)) - 0.2)
    target[..., :3] *= 0.3  # |xyz| <= 0.1 < radius
    mean, std = torch.zeros(B, H, A), torch.full((B, H, A), 0.5)
    lower, upper = torch.full((A,), -1.0), torch.full((A,), 1.0)
    compiled = torch.compile(_cem_loop, fullgraph=True, backend=compile_backend)
    got = compiled(mean, std, lower, upper, target, 16)
    if compile_backend == "aot_eager":
        eager = _cem_loop(mean, std, lower, upper, target, 16)
        torch.testing.assert_close(got[0], eager[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], eager[1], rtol=0, atol=0)
    assert (got[0] - target[:, 0]).abs().max() < 1e-3


def test_fake_tensor_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        mean, std = torch.zeros(4, 2, 7), torch.ones(4, 2, 7)
        x = cem_sample(mean, std, torch.zeros(7) - 1, torch.ones(7), 800, seed=0)
        nm, ns, idx = cem_refit(x, torch.zeros(4, 800), mean, std, 10)
        given = cem_sample(mean, std, torch.zeros(7) - 1, torch.ones(7), normals=torch.zeros(4, 50, 2, 7))
        cem_refit(given, torch.zeros(4, 50), mean, std, 10, momentum_std_pos=0.9, correction=1)
    assert given.shape == (4, 50, 2, 7)
    assert x.shape == (4, 800, 2, 7) and idx.shape == (4, 10) and idx.dtype == torch.int64
    assert nm.shape == ns.shape == (4, 2, 7)


# ----------------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("ball", list(BALLS.values()), ids=list(BALLS))
@pytest.mark.parametrize("shape", [(1, 800, 2, 7), (64, 800, 2, 7), (3, 97, 3, 13), (2, 33, 1, 32)])
def test_cuda_sample_bitwise_equals_cpu(shape, ball):
    B, N, H, A = shape
    radius, norm = ball
    mean, std, lower, upper = _problem(B, H, A, seed=1)
    kw = dict(seed=2**40 + 3, offset=9, ball_radius=radius, ball_dims=3, ball_norm=norm)
    cpu = cem_sample(mean, std, lower, upper, N, **kw)
    gpu = cem_sample(mean.cuda(), std.cuda(), lower.cuda(), upper.cuda(), N, **kw)
    assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.cuda
@pytest.mark.parametrize("case", list(REFIT_CASES.values()) + [(2, 5000, 2, 7, 50)],
                         ids=list(REFIT_CASES) + ["N5000"])
def test_cuda_refit_bitwise_equals_cpu(case):
    B, N, H, A, k = case
    mean, std, lower, upper = _problem(B, H, A, seed=6)
    samples = cem_sample(mean, std, lower, upper, N, seed=1)
    energies = torch.randn(B, N, generator=torch.Generator().manual_seed(2))
    energies[:, ::7] = math.nan
    energies[:, 1::5] = energies[:, 2::5].max()  # ties
    kw = dict(momentum_pos=0.1, momentum_grip=0.7, grip_dims=1, min_std=0.01)
    cpu = cem_refit(samples, energies, mean, std, k, **kw)
    gpu = cem_refit(samples.cuda(), energies.cuda(), mean.cuda(), std.cuda(), k, **kw)
    for c, g in zip(cpu, gpu):
        assert torch.equal(g.cpu(), c)


@pytest.mark.cuda
def test_cuda_given_normals_and_unbiased_refit_bitwise_equal_cpu():
    B, N, H, A = 3, 200, 2, 4
    mean, std, lower, upper = _problem(B, H, A, seed=1)
    z = torch.randn(B, N, H, A, generator=torch.Generator().manual_seed(3))
    cpu = cem_sample(mean, std, lower, upper, ball_radius=0.5, normals=z)
    gpu = cem_sample(mean.cuda(), std.cuda(), lower.cuda(), upper.cuda(), ball_radius=0.5, normals=z.cuda())
    assert torch.equal(gpu.cpu(), cpu)
    energies = torch.randn(B, N, generator=torch.Generator().manual_seed(2))
    kw = dict(momentum_pos=0.25, momentum_grip=0.15, momentum_std_pos=0.95, momentum_std_grip=0.15, correction=1)
    ref = cem_refit(cpu, energies, mean, std, 10, **kw)
    got = cem_refit(gpu, energies.cuda(), mean.cuda(), std.cuda(), 10, **kw)
    for c, g in zip(ref, got):
        assert torch.equal(g.cpu(), c)


@pytest.mark.cuda
def test_cuda_opcheck_and_compiled_loop():
    mean, std, lower, upper = (t.cuda() for t in _problem(2, 2, 7))
    torch.library.opcheck(torch.ops.vjepa_fast.cem_sample.default, (mean, std, lower, upper, 0.5, 3, 2, 3, 1, 17))
    samples = cem_sample(mean, std, lower, upper, 17, seed=3)
    torch.library.opcheck(torch.ops.vjepa_fast.cem_refit.default,
                          (samples, torch.randn(2, 17, device="cuda"), mean, std, 4, 0.1, 0.2, 1, 0.01))
    target = torch.zeros(2, 1, 2, 7, device="cuda") + 0.05
    got = torch.compile(_cem_loop, fullgraph=True)(mean, std.clamp_min(0.1), lower, upper, target, 16)
    assert (got[0] - 0.05).abs().max() < 1e-3
