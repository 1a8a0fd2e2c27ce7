"""Batched Cross-Entropy Method steps for latent MPC: sampling and elite refit (B independent problems).

RNG contract of `cem_sample`: sample[b, n, h, a] is a function of (seed, offset, b, j = (n * H + h) * A + a)
and of the inputs at (b, h, a) only: element j of problem b takes lane j % 4 of
Philox4x32-10(key = seed, counter = (j // 4, b, offset)) through Box-Muller. So it does not depend on the
device (CPU and CUDA give the same bits), on the launch configuration, on num_samples (a smaller N gives a
prefix of a larger one) or on B (problem b of a batch equals problem b of a bigger batch). Advance `offset`
(a host int, e.g. the CEM iteration number) for fresh samples: no host sync, no generator state.
Given `normals` (e.g. the draws recorded from another planner's `torch.randn`) take the place of Philox's z.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake

from vjepa_fast.ops import _extension  # noqa: F401  (registers torch.ops.vjepa_fast.*)

CEM_BACKENDS = ("auto", "reference")
_INT64_MAX = 2**63 - 1


@torch.library.register_fake("vjepa_fast::cem_sample")
def _cem_sample_fake(mean, std, lower, upper, radius, ball_dims, norm, seed, offset, num_samples, normals=None):
    B, H, A = mean.shape
    return mean.new_empty((B, num_samples, H, A))


@torch.library.register_fake("vjepa_fast::cem_refit")
def _cem_refit_fake(samples, energies, mean, std, topk, momentum_pos, momentum_grip, grip_dims, min_std,
                    momentum_std_pos=None, momentum_std_grip=None, correction=0):
    return (
        torch.empty_like(mean),
        torch.empty_like(std),
        mean.new_empty((samples.shape[0], topk), dtype=torch.int64),
    )


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _tensor(op: str, name: str, t, ndim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise TypeError(f"{op}: {name} must be float32, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {list(t.shape)}")


def _same_device(op: str, ref_name: str, ref: torch.Tensor, **others: torch.Tensor) -> None:
    for name, t in others.items():
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; all tensors must be "
                             "on the same device")


def _int_in(op: str, name: str, x, lo: int, hi: int) -> None:
    if not _is_int(x):
        raise TypeError(f"{op}: {name} must be an int, got {type(x).__name__}")
    if not lo <= x <= hi:
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}], got {x}")


def _real_in(op: str, name: str, x, lo: float, hi: float) -> None:
    if not _is_real(x):
        raise TypeError(f"{op}: {name} must be a float, got {type(x).__name__}")
    if not lo <= x <= hi:  # NaN fails too
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}], got {x}")


def _run_value_checks(validate: bool | None, t: torch.Tensor) -> bool:
    # Reading tensor values costs a host sync on CUDA and breaks a torch.compile graph: by default only on CPU,
    # never while tracing or for fake / meta tensors (no values to read).
    if torch.compiler.is_compiling() or is_fake(t) or t.device.type == "meta":
        return False
    return t.device.type == "cpu" if validate is None else bool(validate)


def cem_sample(
    mean: torch.Tensor,
    std: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    num_samples: int | None = None,
    *,
    seed: int | None = None,
    offset: int = 0,
    ball_radius: float | None = None,
    ball_dims: int = 3,
    ball_norm: int = 2,
    normals: torch.Tensor | None = None,
    validate: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Samples of B Gaussians over action sequences, projected onto the action bounds.

    Args:
        mean, std: [B, H, A] float32 (std >= 0), B problems, horizon H >= 1, action dim 1 <= A <= 32.
        lower, upper: [A] float32 per-dimension box (lower <= upper).
        num_samples: N >= 1 (None: normals.shape[1]; required without normals).
        seed: in [0, 2^63), the Philox key (required without normals, unused with them). offset: in [0, 2^63),
            the stream position (e.g. the CEM iteration); different (seed, offset) pairs give independent samples.
        ball_radius: None (no ball) or > 0: the first `ball_dims` dims of every action (the xyz translation)
            are projected onto the ball of that radius: ball_norm=2 scales down onto the L2 sphere (the exact
            Euclidean projection), ball_norm=1 is the exact Euclidean projection onto the L1 ball (soft
            threshold, Duchi et al. 2008). Rounded towards zero: the result never leaves the ball. The box
            must contain 0 on those dims, so the box still holds after the projection. ball_dims <= 16.
        normals: None (Philox) or [B, N, H, A] float32 given standard normals z on the device of mean: the
            samples are then ball(clamp(mean + std * z, lower, upper)) with the same float32 roundings (one for
            the product, one for the sum) and projection as with Philox's z; seed and offset are not used.
        validate: check values (finite mean, std >= 0, bounds, finite normals): None = only for CPU tensors (on
            CUDA it would sync with the host), True / False = always / never. Shapes, dtypes and devices are
            always checked.
        backend: "auto" (compiled C++ / CUDA op) or "reference" (plain PyTorch, same values to fp32 rounding).

    Returns:
        samples: [B, N, H, A] float32 = ball(clamp(mean + std * z, lower, upper)), z ~ N(0, 1) from
        Philox4x32-10 + Box-Muller (|z| <= 6.66; see the module docstring for the RNG contract) or the given
        normals.
    """
    op = "cem_sample"
    _tensor(op, "mean", mean, 3)
    _tensor(op, "std", std, 3)
    _tensor(op, "lower", lower, 1)
    _tensor(op, "upper", upper, 1)
    _same_device(op, "mean", mean, std=std, lower=lower, upper=upper)
    if std.shape != mean.shape:
        raise ValueError(f"{op}: std has shape {list(std.shape)} but mean has shape {list(mean.shape)} (both [B, H, A])")
    B, H, A = mean.shape
    if H < 1:
        raise ValueError(f"{op}: the horizon H (mean.shape[1]) must be >= 1, got {H}")
    if not 1 <= A <= 32:
        raise ValueError(f"{op}: the action dim A (mean.shape[2]) must be in [1, 32], got {A}")
    if lower.shape[0] != A or upper.shape[0] != A:
        raise ValueError(f"{op}: lower and upper must have shape [A] = [{A}], got {list(lower.shape)} and "
                         f"{list(upper.shape)}")
    if normals is not None:
        _tensor(op, "normals", normals, 4)
        _same_device(op, "mean", mean, normals=normals)
        if num_samples is None:
            num_samples = normals.shape[1]
        if tuple(normals.shape) != (B, num_samples, H, A):
            raise ValueError(f"{op}: normals must have shape [B, num_samples, H, A] = {[B, num_samples, H, A]}, got "
                             f"{list(normals.shape)}")
    elif num_samples is None or seed is None:
        raise TypeError(f"{op}: num_samples and seed are required unless normals are given")
    _int_in(op, "num_samples", num_samples, 1, _INT64_MAX)
    if seed is None:
        seed = 0  # unused with given normals
    _int_in(op, "seed", seed, 0, _INT64_MAX)
    _int_in(op, "offset", offset, 0, _INT64_MAX)
    _int_in(op, "ball_norm", ball_norm, 1, 2)
    _int_in(op, "ball_dims", ball_dims, 0, min(A, 16))
    if ball_radius is None:
        radius = 0.0
    else:
        _real_in(op, "ball_radius", ball_radius, 0.0, float("inf"))
        if not 0.0 < ball_radius < float("inf"):
            raise ValueError(f"{op}: ball_radius must be None or a finite float > 0, got {ball_radius}")
        radius = float(ball_radius)
    if backend not in CEM_BACKENDS:
        raise ValueError(f"{op}: backend must be one of {CEM_BACKENDS}, got {backend!r}")
    if _run_value_checks(validate, mean):
        _check_sample_values(mean, std, lower, upper, radius, ball_dims, normals)
    if backend == "reference":
        from vjepa_fast.reference.cem import cem_sample_reference

        return cem_sample_reference(mean, std, lower, upper, num_samples, seed=seed, offset=offset,
                                    ball_radius=radius or None, ball_dims=ball_dims, ball_norm=ball_norm,
                                    normals=normals)
    return torch.ops.vjepa_fast.cem_sample(mean.contiguous(), std.contiguous(), lower.contiguous(),
                                           upper.contiguous(), radius, ball_dims, ball_norm, seed, offset,
                                           num_samples, None if normals is None else normals.contiguous())


def _check_sample_values(mean, std, lower, upper, radius, ball_dims, normals) -> None:
    op = "cem_sample"
    if normals is not None and not bool(torch.isfinite(normals).all()):
        raise ValueError(f"{op}: normals must be finite (they hold NaN or inf)")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError(f"{op}: mean must be finite (it holds NaN or inf)")
    if not bool(torch.isfinite(std).all()):
        raise ValueError(f"{op}: std must be finite (it holds NaN or inf)")
    if bool((std < 0).any()):
        raise ValueError(f"{op}: std must be >= 0, got a minimum of {float(std.min())}")
    if bool(torch.isnan(lower).any() | torch.isnan(upper).any()):
        raise ValueError(f"{op}: lower and upper must not be NaN")
    if bool((lower > upper).any()):
        a = int(torch.nonzero(lower > upper)[0, 0])
        raise ValueError(f"{op}: lower must be <= upper, got lower[{a}] = {float(lower[a])} > upper[{a}] = "
                         f"{float(upper[a])}")
    if radius > 0 and ball_dims > 0:
        if bool((lower[:ball_dims] > 0).any() | (upper[:ball_dims] < 0).any()):
            raise ValueError(f"{op}: the box must contain 0 on the {ball_dims} ball dims (the projection "
                             "shrinks towards 0)")


def cem_refit(
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
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refits the B Gaussians to their top-k elites.

    Args:
        samples: [B, N, H, A] float32 (from cem_sample). energies: [B, N] float32, lower is better.
        mean, std: [B, H, A] float32, the current distributions.
        topk: k in [1, N]. Exact: the k lowest energies, ties broken by the lower sample index, NaN energies
            after every number (+inf included), so they are elites only when fewer than k energies are numbers.
        momentum_pos, momentum_grip: in [0, 1], the mean's momenta: new = m * old + (1 - m) * elite mean, m =
            momentum_pos on the first A - grip_dims dims (position, rotation) and momentum_grip on the last
            grip_dims (gripper).
        momentum_std_pos, momentum_std_grip: the std's momenta, same blend and dims (None: the mean's, so
            callers that set one momentum per group blend mean and std alike). Meta's planner uses 0.25 / 0.95
            (mean / std) for xyz and 0.15 / 0.15 for the gripper.
        correction: the elites' std divides the squared deviations by k - correction: 0 the population std
            (ours, defined for k = 1), 1 the unbiased one (torch.std's default, Meta's planner); correction 1
            with topk = 1 is refused (ValueError: one elite has no unbiased spread).
        min_std: the new std is clamped below at min_std (>= 0).
        backend: "auto" (compiled C++ / CUDA; CUDA sorts up to 16384 samples per problem) or "reference".

    Returns:
        new_mean [B, H, A], new_std [B, H, A] float32 (elite mean and std, divide by k - correction, computed
        in float64), elite_idx [B, k] int64 (sample indices, by ascending energy).
    CPU and CUDA results are bitwise equal; the reference agrees to fp32 rounding.
    """
    op = "cem_refit"
    _tensor(op, "samples", samples, 4)
    _tensor(op, "energies", energies, 2)
    _tensor(op, "mean", mean, 3)
    _tensor(op, "std", std, 3)
    _same_device(op, "samples", samples, energies=energies, mean=mean, std=std)
    B, N, H, A = samples.shape
    if tuple(energies.shape) != (B, N):
        raise ValueError(f"{op}: energies must have shape [B, N] = [{B}, {N}] (from samples [B, N, H, A]), got "
                         f"{list(energies.shape)}")
    if tuple(mean.shape) != (B, H, A):
        raise ValueError(f"{op}: mean must have shape [B, H, A] = [{B}, {H}, {A}], got {list(mean.shape)}")
    if std.shape != mean.shape:
        raise ValueError(f"{op}: std has shape {list(std.shape)} but mean has shape {list(mean.shape)}")
    if H < 1:
        raise ValueError(f"{op}: the horizon H (samples.shape[2]) must be >= 1, got {H}")
    if A < 1:
        raise ValueError(f"{op}: the action dim A (samples.shape[3]) must be >= 1, got {A}")
    if not _is_int(topk):
        raise TypeError(f"{op}: topk must be an int, got {type(topk).__name__}")
    if not 1 <= topk <= N:
        raise ValueError(f"{op}: topk must be in [1, num_samples] = [1, {N}], got {topk}")
    _real_in(op, "momentum_pos", momentum_pos, 0.0, 1.0)
    _real_in(op, "momentum_grip", momentum_grip, 0.0, 1.0)
    momentum_std_pos = momentum_pos if momentum_std_pos is None else momentum_std_pos
    momentum_std_grip = momentum_grip if momentum_std_grip is None else momentum_std_grip
    _real_in(op, "momentum_std_pos", momentum_std_pos, 0.0, 1.0)
    _real_in(op, "momentum_std_grip", momentum_std_grip, 0.0, 1.0)
    _int_in(op, "correction", correction, 0, 1)
    if correction == 1 and topk < 2:
        raise ValueError(f"{op}: correction 1 (unbiased std, divisor k - 1) needs topk >= 2, got topk = {topk}")
    _int_in(op, "grip_dims", grip_dims, 0, A)
    _real_in(op, "min_std", min_std, 0.0, float("inf"))
    if min_std == float("inf"):
        raise ValueError(f"{op}: min_std must be finite, got {min_std}")
    if backend not in CEM_BACKENDS:
        raise ValueError(f"{op}: backend must be one of {CEM_BACKENDS}, got {backend!r}")
    if backend == "reference":
        from vjepa_fast.reference.cem import cem_refit_reference

        return cem_refit_reference(samples, energies, mean, std, topk, momentum_pos=float(momentum_pos),
                                   momentum_grip=float(momentum_grip), grip_dims=grip_dims, min_std=float(min_std),
                                   momentum_std_pos=float(momentum_std_pos),
                                   momentum_std_grip=float(momentum_std_grip), correction=correction)
    return torch.ops.vjepa_fast.cem_refit(samples.contiguous(), energies.contiguous(), mean.contiguous(),
                                          std.contiguous(), topk, float(momentum_pos), float(momentum_grip),
                                          grip_dims, float(min_std), float(momentum_std_pos),
                                          float(momentum_std_grip), correction)
