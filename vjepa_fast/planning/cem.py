"""Latent MPC planner: the Cross-Entropy Method over end-effector deltas (SPEC section 6) on the CEM ops.

One `CEMPlanner.plan` call solves B independent problems (robots or goals) at once: per iteration it draws
S candidate sequences per problem with `ops.cem_sample` (counter-based RNG: no generator state, no host
sync), rolls them out with the world model, scores them by energy = mean |z_pred - z_goal| over tokens and
channels, and refits the Gaussians to the top-k with `ops.cem_refit`. Nothing inside the iterations reads a
value back to the host; per-iteration statistics stay tensors until the caller converts them.

Action space: the planner searches A = 3 (xyz deltas; gripper held) or A = 4 (xyz + gripper delta) dims;
rotation deltas are fixed to 0 as in Meta's planner. `to_actions` expands a plan to 7-D robot actions.

The default `PlannerConfig` is our CEM variant, not Meta's: population std of the elites, one momentum for
mean and std, the gripper's std starting at its clip bound, no dead band on the returned gripper.
`PlannerConfig.meta()` is Meta's algorithm (`notebooks/utils/mpc_utils.cem` of V-JEPA 2): given the normals
Meta's `torch.randn` drew (`plan(..., normals=...)`), it returns Meta's actions to 1e-6 on every case of the
`official_cem.pt` fixture (tests/test_meta_cem.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from vjepa_fast.ops import cem_refit, cem_sample
from vjepa_fast.planning.world_model import PlanningModel, check_dtype_name
from vjepa_fast.robotics.pose import ACTION_DIM, STATE_DIM

__all__ = ["PlannerConfig", "PlanResult", "CEMPlanner", "GoalSequence", "SubgoalSchedule", "to_actions", "shift_plan",
           "l1_energy", "META_CEM_NAMES", "Normals", "returned_actions", "given_normals"]

BOUNDS = ("box", "ball")
GRIPPER_MODES = ("hold", "plan")

# Keyword arguments of Meta's `cem` (notebooks/utils/mpc_utils.py) -> the PlannerConfig fields they set.
META_CEM_NAMES = {
    "samples": "num_samples",
    "topk": "topk",
    "cem_steps": "iterations",
    "rollout": "horizon",
    "maxnorm": "max_norm",
    "momentum_mean": "momentum_pos",
    "momentum_std": "momentum_std_pos",
    "momentum_mean_gripper": "momentum_grip",
    "momentum_std_gripper": "momentum_std_grip",
}

# Given standard normals for a plan: [iterations, B, N, H, A], or iteration -> [B, N, H, A].
Normals = torch.Tensor | Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class PlannerConfig:
    """Every option of the CEM planner (SPEC section 6). Presets: `paper()`, `cpu_small()`,
    `cpu_small_efficient()` (our CEM variant) and `meta()` (Meta's algorithm).

    The defaults are our CEM variant. It differs from Meta's planner (`meta()`) in four ways: the elites' std
    is the population one (Meta: unbiased), one momentum blends mean and std (Meta: 0.25 / 0.95 for xyz),
    the gripper's std starts at its clip bound gripper_step (Meta: 1, clip 0.75), and the returned gripper
    has no dead band (Meta: 0 where |g| < 0.25).

    num_samples: candidate sequences per problem and iteration. topk: elites (<= num_samples).
    iterations: CEM iterations per plan. horizon: actions per sequence (>= 1).
    momentum_pos / momentum_grip: new = m * old + (1 - m) * elite statistic, for the xyz / gripper dims
        (of the mean; of the std too unless momentum_std_pos / momentum_std_grip are set).
    max_norm: largest translation per step (m; paper robots 0.075). bound: "box" clips each xyz delta to
        +-max_norm (as Meta's planner does), "ball" projects the xyz delta onto the L2 ball of radius max_norm.
    gripper: "hold" (gripper delta 0, A = 3) or "plan" (A = 4; delta in [-gripper_step, gripper_step]).
    init_std: starting std of the xyz dims (None: max_norm); the gripper's starts at gripper_init_std.
    min_std: floor of the refitted std. seed: Philox key (iteration i uses stream offset i).
    dtype: the world model's compute dtype, recorded for `WorldModel`: "auto" (bf16 where the device does it
        natively, fp32 elsewhere: `vjepa_fast.precision`), "bfloat16" or "float32".
    validate: check input values (NaN goal, ...): None = only on the CPU (on CUDA it would sync).

    Meta's planner (off by default; `meta()` sets them):
    momentum_std_pos / momentum_std_grip: the std's momenta for the xyz / gripper dims (None: the mean's).
    std_correction: the elites' std divides by k - std_correction: 0 population (ours), 1 unbiased (Meta's,
        torch.std's default; needs topk >= 2).
    gripper_init_std: starting std of the gripper (None: gripper_step, its clip bound).
    gripper_deadband: the returned `actions` have gripper 0 wherever |gripper| < gripper_deadband (0: off).
        The warm-start `mean` keeps the planned value.

    Sample-efficient options (all off by default). With them off, `ReferencePlanner` (our plain-PyTorch,
    Meta-style twin in planning/reference.py) run on the same config, seed and model draws the same samples
    and returns the same plan, to fp32 rounding:
    keep_elites: the previous iteration's elites join the next selection with their energies (iCEM's
        "keep elites"), so the best sequence found is never lost and fewer new samples per iteration do.
    return_best: the plan is the better of the final mean and the best elite (both re-scored by the main
        model in one 2-sample rollout); without it (and in Meta's planner) the plan is the final mean.
    coarse_iterations: the first n iterations roll out in `coarse_dtype` (a cheaper copy of the model: bf16
        matmuls run ~2x fp32 on a CPU with AVX512_BF16, ~4x with AMX; "auto" is bf16 only there, so on a CPU
        without native bf16 every iteration runs in the main dtype); the later ones, and the plan's energy, use the main model. Early on the
        energy differences between samples are far above bf16 rounding noise (~3e-3 L1 at cpu-small); near the
        optimum they are not. Elites kept across the switch are re-scored by the main model.
    """

    num_samples: int = 400
    topk: int = 10
    iterations: int = 10
    horizon: int = 2
    momentum_pos: float = 0.15
    momentum_grip: float = 0.15
    max_norm: float = 0.075
    bound: str = "box"
    gripper: str = "hold"
    gripper_step: float = 1.0
    init_std: float | None = None
    min_std: float = 0.0
    seed: int = 0
    dtype: str = "auto"
    validate: bool | None = None
    keep_elites: bool = False
    return_best: bool = False
    coarse_iterations: int = 0
    coarse_dtype: str = "auto"
    momentum_std_pos: float | None = None
    momentum_std_grip: float | None = None
    std_correction: int = 0
    gripper_init_std: float | None = None
    gripper_deadband: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_samples", "topk", "iterations", "horizon"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PlannerConfig.{name} must be a positive int, got {v!r}")
        if self.topk > self.num_samples:
            raise ValueError(f"PlannerConfig.topk ({self.topk}) must be <= num_samples ({self.num_samples})")
        for name in ("momentum_pos", "momentum_grip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"PlannerConfig.{name} must be in [0, 1], got {v!r}")
        for name in ("momentum_std_pos", "momentum_std_grip"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0):
                raise ValueError(f"PlannerConfig.{name} must be None or in [0, 1], got {v!r}")
        sc = self.std_correction
        if not isinstance(sc, int) or isinstance(sc, bool) or sc not in (0, 1):
            raise ValueError(f"PlannerConfig.std_correction must be 0 (population std) or 1 (unbiased), got {sc!r}")
        if sc == 1 and self.topk < 2:
            raise ValueError(f"PlannerConfig.std_correction = 1 (unbiased std, divisor k - 1) needs topk >= 2, got "
                             f"topk = {self.topk}")
        gi = self.gripper_init_std
        if gi is not None and (not isinstance(gi, (int, float)) or not 0.0 <= gi < float("inf")):
            raise ValueError(f"PlannerConfig.gripper_init_std must be None or a finite float >= 0, got {gi!r}")
        db = self.gripper_deadband
        if not isinstance(db, (int, float)) or not 0.0 <= db < float("inf"):
            raise ValueError(f"PlannerConfig.gripper_deadband must be a finite float >= 0, got {db!r}")
        for name in ("max_norm", "gripper_step"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 < v < float("inf"):
                raise ValueError(f"PlannerConfig.{name} must be a finite float > 0, got {v!r}")
        if self.init_std is not None and not 0.0 <= self.init_std < float("inf"):
            raise ValueError(f"PlannerConfig.init_std must be None or a finite float >= 0, got {self.init_std!r}")
        if not 0.0 <= self.min_std < float("inf"):
            raise ValueError(f"PlannerConfig.min_std must be a finite float >= 0, got {self.min_std!r}")
        if self.bound not in BOUNDS:
            raise ValueError(f"PlannerConfig.bound must be one of {BOUNDS}, got {self.bound!r}")
        if self.gripper not in GRIPPER_MODES:
            raise ValueError(f"PlannerConfig.gripper must be one of {GRIPPER_MODES}, got {self.gripper!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"PlannerConfig.seed must be an int in [0, 2^63), got {self.seed!r}")
        check_dtype_name(self.dtype, "PlannerConfig.dtype")
        check_dtype_name(self.coarse_dtype, "PlannerConfig.coarse_dtype")
        for name in ("keep_elites", "return_best"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PlannerConfig.{name} must be a bool, got {getattr(self, name)!r}")
        ci = self.coarse_iterations
        if not isinstance(ci, int) or isinstance(ci, bool) or not 0 <= ci <= self.iterations:
            raise ValueError(f"PlannerConfig.coarse_iterations must be an int in [0, iterations = {self.iterations}], "
                             f"got {ci!r}")

    @property
    def is_reference_algorithm(self) -> bool:
        """True when no sample-efficient option is on: then `ReferencePlanner` (our Meta-style twin) with this
        config gives the same samples and plan as `CEMPlanner`, to fp32 rounding. It says nothing of whether
        the config is Meta's algorithm (that is `meta()`)."""
        return not (self.keep_elites or self.return_best or self.coarse_iterations)

    @property
    def std_momenta(self) -> tuple[float, float]:
        """(xyz, gripper) momenta of the std: momentum_std_pos / momentum_std_grip, or the mean's when None."""
        pos = self.momentum_pos if self.momentum_std_pos is None else self.momentum_std_pos
        grip = self.momentum_grip if self.momentum_std_grip is None else self.momentum_std_grip
        return pos, grip

    @property
    def gripper_std0(self) -> float:
        """The gripper's starting std: gripper_init_std, or gripper_step when None."""
        return self.gripper_step if self.gripper_init_std is None else self.gripper_init_std

    @property
    def action_dims(self) -> int:
        """A: the searched dims per step (3 xyz, + 1 gripper when planned)."""
        return 4 if self.gripper == "plan" else 3

    @classmethod
    def paper(cls, **overrides: Any) -> PlannerConfig:
        """The paper's scale: 800 samples, top-10, 10 iterations, horizon 1, 0.075 m steps."""
        return cls(**{"num_samples": 800, "topk": 10, "iterations": 10, "horizon": 1, **overrides})

    @classmethod
    def cpu_small(cls, **overrides: Any) -> PlannerConfig:
        """The `cpu-small` preset: 200 samples, top-10, 5 iterations, horizon 2."""
        return cls(**{"num_samples": 200, "topk": 10, "iterations": 5, "horizon": 2, **overrides})

    @classmethod
    def cpu_small_efficient(cls, **overrides: Any) -> PlannerConfig:
        """`cpu-small`'s problem (top-10, horizon 2, same bounds and momenta) on a sample-efficient schedule:
        10 iterations of 48 samples (480 rollouts, not 1000), the first 6 in bf16 where the CPU does bf16
        natively ("auto"; fp32 elsewhere) and the last 4 in fp32, elites kept across iterations, the better of
        mean and best elite returned. Over 4 problems x 6 seeds at cpu-small (AVX512_BF16 CPU) it reached an
        11% lower mean final energy than the 200 x 5 schedule (lower on 3 of the 4 problems), 6.25x faster than
        the Meta-style reference planner (`benchmarks/RESULTS.md`)."""
        return cls(**{"num_samples": 48, "topk": 10, "iterations": 10, "horizon": 2, "keep_elites": True,
                      "return_best": True, "coarse_iterations": 6, "coarse_dtype": "auto", "dtype": "float32",
                      **overrides})

    @classmethod
    def meta(cls, **overrides: Any) -> PlannerConfig:
        """Meta's CEM planner (`notebooks/utils/mpc_utils.cem` of V-JEPA 2) with `cem`'s own defaults: 100
        samples, top-10, 100 iterations, horizon 1, max_norm 0.05 (box); gripper planned; std starting at
        max_norm (xyz) and 1 (gripper); gripper samples clipped to +-0.75; momenta 0.25 / 0.95 (xyz mean /
        std) and 0.15 / 0.15 (gripper); unbiased elite std; returned gripper 0 where |g| < 0.25.

        Sizes (num_samples, topk, iterations, horizon, max_norm) and the momenta are `cem` arguments too and may
        be overridden (`from_meta_cem` takes them under Meta's names); overriding another algorithm field makes
        it no longer Meta's. With Meta's normals (`plan(..., normals=...)`) it returns Meta's actions to 1e-6 on
        the 3 cases of the official_cem.pt fixture (tests/test_meta_cem.py; their grippers end above 0.25, so
        the dead band is checked on its own there). Meta draws with torch.randn, we with Philox, so without
        given normals the plans are equal in distribution, not sample for sample. The world model's compute
        dtype (`dtype`) is not part of the algorithm and keeps its default.
        """
        return cls(**{"num_samples": 100, "topk": 10, "iterations": 100, "horizon": 1, "max_norm": 0.05,
                      "bound": "box", "gripper": "plan", "gripper_step": 0.75, "gripper_init_std": 1.0,
                      "init_std": None, "momentum_pos": 0.25, "momentum_std_pos": 0.95, "momentum_grip": 0.15,
                      "momentum_std_grip": 0.15, "std_correction": 1, "gripper_deadband": 0.25, "min_std": 0.0,
                      **overrides})

    @classmethod
    def from_meta_cem(cls, settings: Mapping[str, Any], **overrides: Any) -> PlannerConfig:
        """`meta()` with keyword arguments of Meta's `cem` (e.g. {"samples": 64, "cem_steps": 4, "rollout": 2,
        "maxnorm": 0.05}), renamed by `META_CEM_NAMES`; `overrides` use our names. Other `cem` arguments
        (axis, close_gripper, objective, ...) are not supported: ValueError."""
        unknown = sorted(set(settings) - set(META_CEM_NAMES))
        if unknown:
            raise ValueError(f"Meta cem settings {unknown} are not supported; supported: {sorted(META_CEM_NAMES)}")
        return cls.meta(**{META_CEM_NAMES[k]: v for k, v in settings.items()}, **overrides)

    def replace(self, **changes: Any) -> PlannerConfig:
        return replace(self, **changes)


@dataclass
class PlanResult:
    """What `CEMPlanner.plan` returns (tensors stay on the planner's device; `.cpu()` to read them).

    mean: [B, H, A] the plan in the searched dims (feed `shift_plan(mean)` as the next warm start).
    actions: [B, H, 7] the plan as robot actions (rotation deltas 0; gripper through the config's
    gripper_deadband). energy: [B] energy of `actions`.
    std: [B, H, A] the final spread. stats: per-iteration [B, iterations] tensors: "best" (lowest sample
    energy), "elite_mean" (mean elite energy), "std" (mean std after the refit); and "model_evals", a 0-d tensor:
    sequences rolled out for this plan (all planners of `planning.planners` report it).
    """

    mean: torch.Tensor
    actions: torch.Tensor
    energy: torch.Tensor
    std: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)

    def cpu(self) -> PlanResult:
        return PlanResult(self.mean.cpu(), self.actions.cpu(), self.energy.cpu(), self.std.cpu(),
                          {k: v.cpu() for k, v in self.stats.items()})


def l1_energy(z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """mean |z - goal| over the last two dims: z [B, S, N, D], goal [B, N, D] -> [B, S] (fp32)."""
    return (z.float() - goal.float()[:, None]).abs().mean(dim=(-2, -1))


def to_actions(mean: torch.Tensor) -> torch.Tensor:
    """Searched dims [..., A] (A = 3 or 4) -> 7-D actions [..., 7]: xyz, zero rotation, gripper (0 if A = 3)."""
    if mean.shape[-1] not in (3, 4):
        raise ValueError(f"expected [..., 3] or [..., 4] searched dims, got shape {tuple(mean.shape)}")
    out = mean.new_zeros((*mean.shape[:-1], ACTION_DIM))
    out[..., :3] = mean[..., :3]
    if mean.shape[-1] == 4:
        out[..., 6] = mean[..., 3]
    return out


def returned_actions(mean: torch.Tensor, config: PlannerConfig) -> torch.Tensor:
    """The robot actions of a plan: `to_actions(mean)` [..., 7], the gripper set to 0 wherever its magnitude is
    below config.gripper_deadband (Meta's planner: 0.25; ours: 0, off)."""
    actions = to_actions(mean)
    if config.gripper_deadband > 0 and mean.shape[-1] == 4:
        g = actions[..., 6]
        actions[..., 6] = torch.where(g.abs() < config.gripper_deadband, torch.zeros_like(g), g)
    return actions


def given_normals(
    normals: Normals | None, shape: tuple[int, int, int, int, int], device: torch.device
) -> Callable[[int], torch.Tensor] | None:
    """Checks a plan's given normals against shape = (iterations, B, S, H, A) and returns iteration ->
    [B, S, H, A] float32 on `device` (None when none are given). ValueError / TypeError name `normals`."""
    if normals is None:
        return None
    it_shape = list(shape[1:])
    if isinstance(normals, torch.Tensor):
        if not normals.is_floating_point() or tuple(normals.shape) != tuple(shape):
            raise ValueError(f"normals must be a float tensor [iterations, B, S, H, A] = {list(shape)}, got "
                             f"{normals.dtype} {list(normals.shape)}")
        z_all = normals.to(device, torch.float32)
        return lambda it: z_all[it]
    if not callable(normals):
        raise TypeError(f"normals must be a tensor [iterations, B, S, H, A] or a callable iteration -> [B, S, H, A], "
                        f"got {type(normals).__name__}")

    def at(it: int) -> torch.Tensor:
        z = normals(it)
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or list(z.shape) != it_shape:
            got = f"{z.dtype} {list(z.shape)}" if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"normals({it}) must return a float tensor [B, S, H, A] = {it_shape}, got {got}")
        return z.to(device, torch.float32)

    return at


def shift_plan(mean: torch.Tensor) -> torch.Tensor:
    """Warm start for the next control step: [B, H, A] -> the plan advanced by one step, 0 appended."""
    return torch.cat([mean[:, 1:], torch.zeros_like(mean[:, :1])], dim=1)


class GoalSequence:
    """Sub-goals per problem: latents [B, G, N, D]; `current()` is the goal each problem plans towards.

    `advance(mask)` moves the problems where mask [B] is True to their next sub-goal (the last one stays);
    `advance_if_reached(energy, threshold)` does so where the plan's energy is below the threshold. Both are
    tensor ops: no host sync.
    """

    def __init__(self, goals: torch.Tensor) -> None:
        if not isinstance(goals, torch.Tensor) or goals.dim() != 4 or goals.shape[1] < 1:
            got = tuple(goals.shape) if isinstance(goals, torch.Tensor) else type(goals).__name__
            raise ValueError(f"goals must be [B, G, N, D] with G >= 1 sub-goals, got {got}")
        self.goals = goals
        self.index = torch.zeros(goals.shape[0], dtype=torch.long, device=goals.device)

    @property
    def num_goals(self) -> int:
        return self.goals.shape[1]

    def current(self) -> torch.Tensor:
        """[B, N, D] the current sub-goal of each problem."""
        b = torch.arange(self.goals.shape[0], device=self.goals.device)
        return self.goals[b, self.index]

    def at_last(self) -> torch.Tensor:
        """[B] bool: the problem is at its last sub-goal."""
        return self.index == self.num_goals - 1

    def advance(self, mask: torch.Tensor | None = None) -> None:
        step = torch.ones_like(self.index) if mask is None else mask.to(self.index.device, torch.long)
        self.index = (self.index + step).clamp_max(self.num_goals - 1)

    def advance_if_reached(self, energy: torch.Tensor, threshold: float) -> None:
        self.advance(energy.to(self.index.device) < threshold)


class SubgoalSchedule:
    """When to move on to the next sub-goal image, for one episode (a host-side rule, used between MPC steps).

    The current sub-goal advances after `budgets[k]` steps on it (a step budget per sub-goal), or earlier when the
    observed latent distance to it has not improved by `min_gain` (relative) on its best so far for `patience`
    steps in a row (a plateau: planning toward it no longer helps); never past the last sub-goal.

        schedule = SubgoalSchedule((6, 2, 4))
        k = schedule.update(latent_distance_to_goal[schedule.index])  # before planning each step
    """

    def __init__(self, budgets: Sequence[int], min_gain: float = 0.02, patience: int = 2) -> None:
        if not budgets or any(int(b) < 1 for b in budgets):
            raise ValueError(f"budgets must be >= 1 step per sub-goal, got {list(budgets)}")
        if not 0 <= min_gain < 1 or patience < 1:
            raise ValueError(f"need 0 <= min_gain < 1 and patience >= 1, got {min_gain}, {patience}")
        self.budgets, self.min_gain, self.patience = tuple(int(b) for b in budgets), float(min_gain), int(patience)
        self.index, self.on_goal, self.best, self.stale = 0, 0, float("inf"), 0

    def update(self, distance: float) -> int:
        """Records this step's latent distance to the current sub-goal; returns the sub-goal to plan toward."""
        if distance < self.best * (1.0 - self.min_gain):
            self.best, self.stale = distance, 0
        else:
            self.stale += 1
        last = len(self.budgets) - 1
        if self.index < last and (self.on_goal >= self.budgets[self.index] or self.stale >= self.patience):
            self.index, self.on_goal, self.best, self.stale = self.index + 1, 0, float("inf"), 0
        self.on_goal += 1
        return self.index


def _check_problem(latent_shape: tuple[int, int], z_obs: Any, state: Any, z_goal: Any) -> int:
    n, d = latent_shape
    for name, t in (("z_obs", z_obs), ("state", state), ("z_goal", z_goal)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got {t.dtype}")
    if z_obs.dim() != 3 or tuple(z_obs.shape[1:]) != (n, d):
        raise ValueError(f"z_obs must be [B, N, D] = [B, {n}, {d}] (the world model's latents), got "
                         f"{tuple(z_obs.shape)}")
    b = z_obs.shape[0]
    if tuple(z_goal.shape) != (b, n, d):
        raise ValueError(f"z_goal must have the shape of z_obs, [B, N, D] = {(b, n, d)}, got {tuple(z_goal.shape)}")
    if tuple(state.shape) != (b, STATE_DIM):
        raise ValueError(f"state must be [B, {STATE_DIM}] = [{b}, {STATE_DIM}], got {tuple(state.shape)}")
    return b


def _check_values(z_obs: torch.Tensor, state: torch.Tensor, z_goal: torch.Tensor, init_mean: torch.Tensor | None):
    for name, t in (("z_obs", z_obs), ("state", state), ("z_goal", z_goal), ("init_mean", init_mean)):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds NaN or inf values")


class CEMPlanner:
    """CEM planner over any `PlanningModel` (`WorldModel`, or a model with the same `rollout`).

    Use: `planner.plan(z_obs [B, N, D], state [B, 7], z_goal [B, N, D])` -> `PlanResult`; with images,
    `planner.plan_images(obs, state, goal)` (needs a model with `encode_image_files`).
    """

    def __init__(
        self, model: PlanningModel, config: PlannerConfig | None = None, *, coarse_model: PlanningModel | None = None
    ) -> None:
        if not isinstance(model, PlanningModel):
            raise TypeError(f"model must implement PlanningModel (latent_shape, rollout), got {type(model).__name__}")
        self.model = model
        self.config = config or PlannerConfig()
        if not isinstance(self.config, PlannerConfig):
            raise TypeError(f"config must be a PlannerConfig, got {type(self.config).__name__}")
        max_h = getattr(model, "max_horizon", None)
        if max_h is not None and self.config.horizon > max_h:
            raise ValueError(f"PlannerConfig.horizon {self.config.horizon} exceeds the model's {max_h} time steps")
        self.coarse_model = self._coarse(coarse_model)

    def _coarse(self, coarse_model: PlanningModel | None) -> PlanningModel | None:
        """The model of the first `coarse_iterations` (None when there are none)."""
        cfg = self.config
        if cfg.coarse_iterations == 0:
            return None
        if coarse_model is not None:
            if not isinstance(coarse_model, PlanningModel):
                raise TypeError(f"coarse_model must implement PlanningModel, got {type(coarse_model).__name__}")
            if tuple(coarse_model.latent_shape) != tuple(self.model.latent_shape):
                raise ValueError(f"coarse_model latents {tuple(coarse_model.latent_shape)} != the model's "
                                 f"{tuple(self.model.latent_shape)}")
            return coarse_model
        with_dtype = getattr(self.model, "with_dtype", None)
        if with_dtype is None:
            raise ValueError(f"PlannerConfig.coarse_iterations = {cfg.coarse_iterations} needs a coarse_model, or "
                             "a model with with_dtype (a WorldModel) to make one in coarse_dtype")
        return with_dtype(cfg.coarse_dtype)

    def bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper) [A] of the searched dims."""
        cfg = self.config
        hi = [cfg.max_norm] * 3 + ([cfg.gripper_step] if cfg.gripper == "plan" else [])
        upper = torch.tensor(hi, dtype=torch.float32, device=device)
        return -upper, upper

    def initial(self, b: int, device: torch.device, init_mean: torch.Tensor | None = None):
        """(mean, std) [B, H, A] at the start of a plan: zeros (or init_mean) and the max step sizes."""
        cfg = self.config
        h, a = cfg.horizon, cfg.action_dims
        if init_mean is None:
            mean = torch.zeros(b, h, a, device=device)
        else:
            if not isinstance(init_mean, torch.Tensor) or tuple(init_mean.shape) != (b, h, a):
                got = tuple(init_mean.shape) if isinstance(init_mean, torch.Tensor) else type(init_mean).__name__
                raise ValueError(f"init_mean must be [B, H, A] = {(b, h, a)} (the searched dims), got {got}")
            lower, upper = self.bounds(device)
            mean = torch.minimum(torch.maximum(init_mean.to(device, torch.float32), lower), upper)
        std0 = [cfg.max_norm if cfg.init_std is None else cfg.init_std] * 3
        if a == 4:
            std0.append(cfg.gripper_std0)
        std = torch.tensor(std0, dtype=torch.float32, device=device).expand(b, h, a).contiguous()
        return mean.contiguous(), std

    @torch.inference_mode()
    def plan(
        self,
        z_obs: torch.Tensor,
        state: torch.Tensor,
        z_goal: torch.Tensor,
        *,
        init_mean: torch.Tensor | None = None,
        seed: int | None = None,
        normals: Normals | None = None,
    ) -> PlanResult:
        """Plan B problems at once.

        z_obs: [B, N, D] latents of the current observations; state: [B, 7] end-effector states;
        z_goal: [B, N, D] goal latents (e.g. `GoalSequence.current()`); init_mean: [B, H, A] warm start
        (e.g. `shift_plan(previous.mean)`); seed: overrides the config's.
        normals: given standard normals instead of Philox's (seed unused): a float tensor [iterations, B, S, H, A]
            (S = num_samples) or a callable iteration -> [B, S, H, A]; iteration i samples
            clamp(mean + std * normals_i) (then the ball, if any), e.g. to replay another planner's draws.
        """
        cfg = self.config
        b = _check_problem(self.model.latent_shape, z_obs, state, z_goal)
        seed = cfg.seed if seed is None else seed
        if not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2^63), got {seed!r}")
        dev = z_obs.device
        normals_at = given_normals(normals, (cfg.iterations, b, cfg.num_samples, cfg.horizon, cfg.action_dims), dev)
        validate = dev.type == "cpu" if cfg.validate is None else cfg.validate
        if validate:
            _check_values(z_obs, state, z_goal, init_mean)
        state = state.to(dev, torch.float32)
        z_goal = z_goal.to(dev, torch.float32)
        mean, std = self.initial(b, dev, init_mean)
        lower, upper = self.bounds(dev)
        ball = cfg.max_norm if cfg.bound == "ball" else None
        grip_dims = 1 if cfg.gripper == "plan" else 0
        std_m = cfg.std_momenta
        best, elite_mean, std_mean = [], [], []
        h, a = cfg.horizon, cfg.action_dims
        kept = None  # (elite samples [B, k, H, A], their energies [B, k], the model that scored them)
        evals = 0  # sequences rolled out, for stats["model_evals"]
        for it in range(cfg.iterations):
            model = self.coarse_model if it < cfg.coarse_iterations else self.model
            if normals_at is None:
                samples = cem_sample(mean, std, lower, upper, cfg.num_samples, seed=seed, offset=it,
                                     ball_radius=ball, ball_dims=3, validate=False)
            else:
                samples = cem_sample(mean, std, lower, upper, cfg.num_samples, ball_radius=ball, ball_dims=3,
                                     normals=normals_at(it), validate=validate)
            energies = l1_energy(model.rollout(z_obs, state, to_actions(samples)), z_goal)
            evals += cfg.num_samples
            if kept is not None:
                kept_samples, kept_energies, scorer = kept
                if scorer is not model:  # coarse -> main model: energies on one scale
                    kept_energies = l1_energy(model.rollout(z_obs, state, to_actions(kept_samples)), z_goal)
                    evals += kept_samples.shape[1]
                samples = torch.cat([samples, kept_samples], 1)
                energies = torch.cat([energies, kept_energies], 1)
            mean, std, idx = cem_refit(samples, energies, mean, std, cfg.topk, momentum_pos=cfg.momentum_pos,
                                       momentum_grip=cfg.momentum_grip, grip_dims=grip_dims, min_std=cfg.min_std,
                                       momentum_std_pos=std_m[0], momentum_std_grip=std_m[1],
                                       correction=cfg.std_correction)
            elite_e = energies.gather(1, idx)
            if cfg.keep_elites or (cfg.return_best and it == cfg.iterations - 1):
                kept = (samples.gather(1, idx[:, :, None, None].expand(-1, -1, h, a)), elite_e, model)
            best.append(elite_e[:, 0])
            elite_mean.append(elite_e.mean(1))
            std_mean.append(std.mean(dim=(1, 2)))
        if cfg.return_best:
            # One 2-sample rollout by the main model: the final mean and the best elite; keep the lower energy.
            cand = torch.stack([mean, kept[0][:, 0]], 1)  # [B, 2, H, A]
            e2 = l1_energy(self.model.rollout(z_obs, state, returned_actions(cand, cfg)), z_goal)
            pick = e2[:, 1] < e2[:, 0]
            mean = torch.where(pick[:, None, None], cand[:, 1], cand[:, 0])
            energy = torch.where(pick, e2[:, 1], e2[:, 0])
            actions = returned_actions(mean, cfg)
        else:
            actions = returned_actions(mean, cfg)
            energy = l1_energy(self.model.rollout(z_obs, state, actions[:, None]), z_goal)[:, 0]
        evals += 2 if cfg.return_best else 1
        stats = {"best": torch.stack(best, 1), "elite_mean": torch.stack(elite_mean, 1),
                 "std": torch.stack(std_mean, 1), "model_evals": torch.tensor(evals)}
        return PlanResult(mean=mean, actions=actions, energy=energy, std=std, stats=stats)

    def plan_images(
        self, obs: Any, state: torch.Tensor, goal: Any, **kwargs: Any
    ) -> PlanResult:
        """`plan` from images (paths, PIL images or HWC uint8 arrays; one or a list each) and states [B, 7]."""
        encode = getattr(self.model, "encode_image_files", None)
        if encode is None:
            raise TypeError("plan_images needs a model with encode_image_files (a WorldModel with an encoder)")
        obs_list = obs if isinstance(obs, (list, tuple)) else [obs]
        goal_list = goal if isinstance(goal, (list, tuple)) else [goal]
        if len(obs_list) != len(goal_list):
            raise ValueError(f"{len(obs_list)} observation images but {len(goal_list)} goal images")
        state = state if state.dim() == 2 else state[None]
        return self.plan(encode(list(obs_list)), state, encode(list(goal_list)), **kwargs)
