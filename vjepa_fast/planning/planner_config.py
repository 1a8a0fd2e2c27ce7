"""`PlannerConfig`: every option of the CEM planner (SPEC section 6) and its presets, ours and Meta's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vjepa_fast.planning.world_model import check_dtype_name

__all__ = ["BOUNDS", "GRIPPER_MODES", "META_CEM_NAMES", "PROBLEM_FIELDS", "PlannerConfig"]

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

# The fields that say which problem a planner solves (the actions it may return, and how a plan becomes the
# returned actions), as opposed to how it searches: `PlannerConfig.with_problem_of` copies them.
PROBLEM_FIELDS = ("horizon", "max_norm", "bound", "gripper", "gripper_step", "gripper_range", "gripper_deadband")


@dataclass(frozen=True)
class PlannerConfig:
    """Every option of the CEM planner (SPEC section 6). Presets: `paper()`, `cpu_small()`,
    `cpu_small_efficient()` (our CEM variant), `meta()` (Meta's algorithm) and `cpu_small_meta_efficient()` (Meta's
    problem, our search).

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

    gripper_range (ours, off by default): with gripper "plan", every sampled gripper change is clipped so that
        the gripper, starting from the state's (`state[:, 6]`, DROID's 0 open .. 1 closed), stays in [0, 1]
        along the sequence: a change the hand cannot make (opening an open hand) is never scored. Without it
        such changes, never seen in training, can win on the model's error alone.
    gripper_range_fit: with gripper_range, what the Gaussian is refit on: "raw" (default) the drawn gripper
        changes, scored clipped, and the returned actions clipped; "clipped" the clipped ones (before 2026-12-07),
        whose elites pile up at the reachable bound where the energy has no gripper signal, so the mean leans
        about +-0.4 toward the other state and a +-0.25 rule toggles the hand every step (MANIP_RECIPE.md try 9).

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
    gripper_range: bool = False
    gripper_range_fit: str = "raw"

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
        if self.gripper_range_fit not in ("raw", "clipped"):
            raise ValueError(f"PlannerConfig.gripper_range_fit must be 'raw' or 'clipped', got {self.gripper_range_fit!r}")
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
    def cpu_small_meta_efficient(cls, **overrides: Any) -> PlannerConfig:
        """Meta's planner's problem at cpu-small sizes (`meta(num_samples=200, topk=10, iterations=5, horizon=2)`:
        horizon 2, xyz in a 0.05 m box, the gripper planned within +-0.75, returned gripper 0 where |g| < 0.25)
        searched our way: 8 iterations of 32 samples (256 rollouts, not 1000), top-10, elites kept, the better of
        mean and best elite returned, our momenta, every iteration in fp32 (so the same plan on every CPU).
        `benchmarks/bench_planning.py` measures it side by side with Meta's algorithm (RESULTS.md)."""
        return cls.cpu_small_efficient(**{"num_samples": 32, "iterations": 8, "coarse_iterations": 0,
                                          "dtype": "float32"}).with_problem_of(
            cls.meta(num_samples=200, topk=10, iterations=5, horizon=2)).replace(**overrides)

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

    def with_problem_of(self, other: PlannerConfig) -> PlannerConfig:
        """This config's search (schedule, momenta, options) on `other`'s problem: its horizon, action bounds and
        gripper handling (`PROBLEM_FIELDS`). E.g. `PlannerConfig.cpu_small_efficient().with_problem_of(
        PlannerConfig.meta(...))` searches the actions Meta's planner may return, no others."""
        if not isinstance(other, PlannerConfig):
            raise TypeError(f"other must be a PlannerConfig, got {type(other).__name__}")
        return self.replace(**{f: getattr(other, f) for f in PROBLEM_FIELDS})
