"""Planners beyond CEM, behind one interface: `planner.plan(z_obs, state, z_goal) -> PlanResult`.

Every planner here searches the same action space as `CEMPlanner` (xyz deltas in a box or ball of radius
`max_norm`, plus the gripper delta when `gripper="plan"`; rotation held) and takes its sizes, bounds, seed and
dtype from the same `PlannerConfig`; what is particular to a planner is in its own small options class.

- `MPPIPlanner`: model-predictive path integral. Each iteration draws `num_samples` sequences around the mean
  (the CEM sampling op: same bounds), weights them by softmax(-(E - min E) / (temperature * std E)) (the
  temperature is in units of the population's energy spread, so it does not depend on the model's energy
  scale) and moves the mean to the weighted mean; the spread shrinks by `std_decay` per iteration.
- `ICEMPlanner`: improved CEM (Pinneri et al. 2020): coloured noise along the horizon (power spectrum
  1 / f^beta), the population shrinking by `decay` per iteration (never below 2 * topk), a `keep_fraction`
  of the elites carried into the next iteration, the current mean scored as a sample at the last iteration.
- `GradientPlanner`: Adam on the action sequence through the differentiable rollout of the AC predictor
  (`WorldModel.rollout_differentiable`), from the warm start (or 0) and `starts - 1` random starts in the box,
  projected back onto the bounds after every step; the best start is returned.
- `CEMGradPlanner`: `CEMPlanner`, then the gradient planner refines CEM's plan from its mean; the better of
  the two (by the main model) is returned.

`make_planner(name, model, config, **options)` builds any of them by name (`PLANNERS`): "cem", "mppi",
"icem", "gradient", "cem_grad". `PlanResult.stats` carries "best" [B, iterations] (lowest energy seen per
iteration) and "model_evals" (a 0-d tensor: sequences rolled out for this decision; a gradient step counts
one forward and one backward pass as 2).

No fused kernel of their own: MPPI's weighting and iCEM's coloured noise are a few element-wise ops on
[B, S, H, A] tensors, far below the rollout's cost (they use the CEM ops for sampling and refitting where
those apply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from vjepa_fast.ops import cem_refit, cem_sample
from vjepa_fast.planning.cem import CEMPlanner, clip_gripper_range
from vjepa_fast.planning.planner_config import PlannerConfig
from vjepa_fast.planning.plans import (
    PlanResult,
    check_problem,
    check_problem_values,
    l1_energy,
    resolve_seed,
    returned_actions,
    to_actions,
)
from vjepa_fast.planning.world_model import PlanningModel

__all__ = ["PLANNERS", "MPPIOptions", "ICEMOptions", "GradientOptions", "MPPIPlanner", "ICEMPlanner",
           "GradientPlanner", "CEMGradPlanner", "make_planner", "colored_normals", "mppi_weights",
           "parse_planner_options", "add_planner_arguments", "CountingPlanner", "planner_options"]

PLANNERS = ("cem", "mppi", "icem", "gradient", "cem_grad")


def _positive(name: str, v: Any, *, integer: bool = False, zero_ok: bool = False) -> None:
    ok = isinstance(v, int) and not isinstance(v, bool) if integer else isinstance(v, (int, float))
    if not ok or not (v >= 0 if zero_ok else v > 0) or not math.isfinite(v):
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>= 0' if zero_ok else '> 0'}, got {v!r}")


@dataclass(frozen=True)
class MPPIOptions:
    """temperature: of the softmax weights, in units of the population's energy std (smaller: greedier).
    std_decay: the sampling std is multiplied by it after every iteration (1: classic MPPI's fixed noise).
    momentum: new mean = momentum * old + (1 - momentum) * weighted mean."""

    temperature: float = 0.1
    std_decay: float = 0.7
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _positive("MPPIOptions.temperature", self.temperature)
        _positive("MPPIOptions.std_decay", self.std_decay)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"MPPIOptions.momentum must be in [0, 1), got {self.momentum!r}")


@dataclass(frozen=True)
class ICEMOptions:
    """beta: colour of the noise along the horizon (0 white, 2 the paper's default; a horizon of 1 is white
    whatever beta). decay: population of iteration i = num_samples / decay^i (>= 2 * topk). keep_fraction:
    share of the elites carried into the next iteration."""

    beta: float = 2.0
    decay: float = 1.25
    keep_fraction: float = 0.3

    def __post_init__(self) -> None:
        _positive("ICEMOptions.beta", self.beta, zero_ok=True)
        if not isinstance(self.decay, (int, float)) or not 1.0 <= self.decay < float("inf"):
            raise ValueError(f"ICEMOptions.decay must be a finite number >= 1, got {self.decay!r}")
        if not 0.0 <= self.keep_fraction <= 1.0:
            raise ValueError(f"ICEMOptions.keep_fraction must be in [0, 1], got {self.keep_fraction!r}")


@dataclass(frozen=True)
class GradientOptions:
    """steps: Adam steps per start. lr: Adam's learning rate in units of max_norm (the box's half-width).
    starts: parallel starts per problem (the warm start or 0, then random ones in the box)."""

    steps: int = 20
    lr: float = 0.1
    starts: int = 4

    def __post_init__(self) -> None:
        _positive("GradientOptions.steps", self.steps, integer=True)
        _positive("GradientOptions.lr", self.lr)
        _positive("GradientOptions.starts", self.starts, integer=True)


def colored_normals(shape: tuple[int, ...], beta: float, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals [..., H, A] coloured along H (dim -2) with power spectrum 1 / f^beta, rescaled to unit
    variance per sequence dim (beta = 0: white noise; H = 1: white whatever beta)."""
    white = torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu").to(device)
    h = shape[-2]
    if beta == 0 or h < 2:
        return white
    spec = torch.fft.rfft(white, dim=-2)
    f = torch.fft.rfftfreq(h, device=white.device)
    f[0] = f[1]  # the DC term gets the lowest frequency's weight (as the colorednoise package does)
    scale = f.pow(-beta / 2.0)
    scale = scale / scale.pow(2).mean().sqrt()
    out = torch.fft.irfft(spec * scale[:, None], n=h, dim=-2)
    return out / out.std(dim=-2, keepdim=True).clamp_min(1e-6)


def mppi_weights(energies: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B, S] energies -> [B, S] weights summing to 1: softmax(-(E - min E) / (temperature * std E))."""
    e = energies.float()
    spread = e.std(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.softmax(-(e - e.min(dim=1, keepdim=True).values) / (temperature * spread), dim=1)


class _Base(CEMPlanner):
    """Shared set-up of the non-CEM planners: checks, bounds, the initial mean / std (CEMPlanner's)."""

    def _start(self, z_obs, state, z_goal, init_mean, seed):
        cfg = self.config
        b = check_problem(self.model.latent_shape, z_obs, state, z_goal)
        seed = resolve_seed(seed, cfg.seed)
        dev = z_obs.device
        if (dev.type == "cpu" if cfg.validate is None else cfg.validate):
            check_problem_values(z_obs, state, z_goal, init_mean)
        mean, std = self.initial(b, dev, init_mean)
        return b, seed, dev, state.to(dev, torch.float32), z_goal.to(dev, torch.float32), mean, std

    def _energy(self, z_obs, state, z_goal, searched: torch.Tensor) -> torch.Tensor:
        """[B, S, H, A] searched dims -> [B, S] energies of the returned actions by the main model."""
        return l1_energy(self.model.rollout(z_obs, state, returned_actions(searched, self.config)), z_goal)

    def _result(self, mean, std, energy, best: list[torch.Tensor], evals: int) -> PlanResult:
        stats = {"best": torch.stack(best, 1), "model_evals": torch.tensor(evals)}
        return PlanResult(mean=mean, actions=returned_actions(mean, self.config), energy=energy, std=std,
                          stats=stats)

    def _in_range(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """x [B, S, H, A] with the gripper changes clipped to the hand's range from `state` when the config asks
        for it (PlannerConfig.gripper_range, as CEM's samples are); x itself otherwise."""
        if self.config.gripper_range and self.config.gripper == "plan":
            return clip_gripper_range(x, state)
        return x

    def _project(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Onto the searched box (and the xyz ball with bound = "ball"), the gripper kept in its range."""
        lower, upper = self.bounds(x.device)
        x = torch.minimum(torch.maximum(x, lower), upper)
        if self.config.bound == "ball":
            xyz = x[..., :3]
            n = xyz.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            x = torch.cat([xyz * (self.config.max_norm / n).clamp(max=1.0), x[..., 3:]], -1)
        return self._in_range(x, state)


class MPPIPlanner(_Base):
    """Model-predictive path integral over the CEM action space (module docstring)."""

    def __init__(self, model: PlanningModel, config: PlannerConfig | None = None,
                 options: MPPIOptions | None = None) -> None:
        super().__init__(model, (config or PlannerConfig()).replace(coarse_iterations=0))
        self.options = options or MPPIOptions()

    @torch.inference_mode()
    def plan(self, z_obs, state, z_goal, *, init_mean=None, seed=None) -> PlanResult:
        cfg, opt = self.config, self.options
        b, seed, dev, state, z_goal, mean, std = self._start(z_obs, state, z_goal, init_mean, seed)
        lower, upper = self.bounds(dev)
        ball = cfg.max_norm if cfg.bound == "ball" else None
        best, evals = [], 0
        best_x, best_e = mean[:, None], None
        for it in range(cfg.iterations):
            x = self._in_range(cem_sample(mean, std, lower, upper, cfg.num_samples, seed=seed, offset=it,
                                          ball_radius=ball, ball_dims=3, validate=False), state)
            e = l1_energy(self.model.rollout(z_obs, state, to_actions(x)), z_goal)
            evals += cfg.num_samples
            w = mppi_weights(e, opt.temperature)
            new_mean = (w[:, :, None, None] * x).sum(1)
            mean = opt.momentum * mean + (1.0 - opt.momentum) * new_mean
            std = (std * opt.std_decay).clamp_min(cfg.min_std)
            i = e.argmin(1)
            e_min = e.gather(1, i[:, None])[:, 0]
            x_min = x[torch.arange(b, device=dev), i][:, None]
            if best_e is None:
                best_x, best_e = x_min, e_min
            else:
                better = e_min < best_e
                best_x = torch.where(better[:, None, None, None], x_min, best_x)
                best_e = torch.minimum(e_min, best_e)
            best.append(best_e)
        # The plan: the weighted mean, or the best sample seen when that scores lower (one 2-sample rollout).
        cand = torch.cat([mean[:, None], best_x], 1)
        e2 = self._energy(z_obs, state, z_goal, cand)
        evals += 2
        pick = e2[:, 1] < e2[:, 0]
        mean = torch.where(pick[:, None, None], cand[:, 1], cand[:, 0])
        return self._result(mean, std, torch.where(pick, e2[:, 1], e2[:, 0]), best, evals)


class ICEMPlanner(_Base):
    """Improved CEM (module docstring): coloured noise, shrinking population, elites carried over."""

    def __init__(self, model: PlanningModel, config: PlannerConfig | None = None,
                 options: ICEMOptions | None = None) -> None:
        super().__init__(model, (config or PlannerConfig()).replace(coarse_iterations=0))
        self.options = options or ICEMOptions()

    def population(self, it: int) -> int:
        """Samples drawn at iteration it: num_samples / decay^it, at least 2 * topk (and at most num_samples)."""
        cfg = self.config
        return min(cfg.num_samples, max(2 * cfg.topk, int(round(cfg.num_samples / self.options.decay**it))))

    @torch.inference_mode()
    def plan(self, z_obs, state, z_goal, *, init_mean=None, seed=None) -> PlanResult:
        cfg, opt = self.config, self.options
        b, seed, dev, state, z_goal, mean, std = self._start(z_obs, state, z_goal, init_mean, seed)
        lower, upper = self.bounds(dev)
        ball = cfg.max_norm if cfg.bound == "ball" else None
        h, a = cfg.horizon, cfg.action_dims
        gen = torch.Generator().manual_seed(seed)
        n_keep = int(round(opt.keep_fraction * cfg.topk))
        grip_dims = 1 if cfg.gripper == "plan" else 0
        std_m = cfg.std_momenta
        best, evals, kept = [], 0, None
        for it in range(cfg.iterations):
            n = self.population(it)
            z = colored_normals((b, n, h, a), opt.beta, gen, dev)
            x = cem_sample(mean, std, lower, upper, n, ball_radius=ball, ball_dims=3, normals=z, validate=False)
            if it == cfg.iterations - 1:
                x = torch.cat([x, mean[:, None]], 1)  # the mean itself competes at the end
            x = self._in_range(x, state)
            e = l1_energy(self.model.rollout(z_obs, state, to_actions(x)), z_goal)
            evals += x.shape[1]
            if kept is not None:
                x = torch.cat([x, kept[0]], 1)
                e = torch.cat([e, kept[1]], 1)
            mean, std, idx = cem_refit(x, e, mean, std, cfg.topk, momentum_pos=cfg.momentum_pos,
                                       momentum_grip=cfg.momentum_grip, grip_dims=grip_dims, min_std=cfg.min_std,
                                       momentum_std_pos=std_m[0], momentum_std_grip=std_m[1],
                                       correction=cfg.std_correction)
            elite_x = x.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))
            elite_e = e.gather(1, idx)
            kept = (elite_x[:, :n_keep], elite_e[:, :n_keep]) if n_keep else None
            best.append(elite_e[:, 0])
        # The plan: the best sequence seen (iCEM executes the best elite, not the mean).
        plan = elite_x[:, 0]
        energy = self._energy(z_obs, state, z_goal, plan[:, None])[:, 0]
        return self._result(plan, std, energy, best, evals + 1)


class GradientPlanner(_Base):
    """Adam on the action sequence through the AC predictor (module docstring). The model must have
    `rollout_differentiable(z0, state, actions)` (a `WorldModel` does)."""

    def __init__(self, model: PlanningModel, config: PlannerConfig | None = None,
                 options: GradientOptions | None = None) -> None:
        super().__init__(model, (config or PlannerConfig()).replace(coarse_iterations=0))
        if not callable(getattr(model, "rollout_differentiable", None)):
            raise TypeError(f"the gradient planner needs a model with rollout_differentiable (a WorldModel), got "
                            f"{type(model).__name__}")
        self.options = options or GradientOptions()

    def plan(self, z_obs, state, z_goal, *, init_mean=None, seed=None) -> PlanResult:
        cfg, opt = self.config, self.options
        b, seed, dev, state, z_goal, mean0, std = self._start(z_obs, state, z_goal, init_mean, seed)
        h, a, p = cfg.horizon, cfg.action_dims, opt.starts
        lower, upper = self.bounds(dev)
        gen = torch.Generator().manual_seed(seed)
        rand = (torch.rand((b, p, h, a), generator=gen).to(dev) * 2 - 1) * upper
        x0 = torch.cat([mean0[:, None], rand[:, 1:]], 1)
        best, evals = [], 0
        best_x = best_e = None
        with torch.inference_mode(False), torch.enable_grad():
            # Plain (non-inference) copies: under a caller's inference_mode tensors made there carry no autograd.
            z_obs_d, state_d, goal = z_obs.detach().clone(), state.detach().clone(), z_goal.detach().clone()
            x = self._project(x0.clone(), state).detach().requires_grad_(True)
            opt_ = torch.optim.Adam([x], lr=opt.lr * cfg.max_norm)
            for _ in range(opt.steps):
                scored = x.detach().clone()  # the sequences this step's energies belong to
                e = l1_energy(self.model.rollout_differentiable(z_obs_d, state_d, to_actions(x)), goal)  # [B, P]
                opt_.zero_grad(set_to_none=True)
                e.sum().backward()
                opt_.step()
                evals += 2 * p
                with torch.no_grad():
                    x.copy_(self._project(x, state))
                    e_d = e.detach()
                    i = e_d.argmin(1)
                    x_min = scored[torch.arange(b, device=dev), i][:, None]
                    e_min = e_d.gather(1, i[:, None])[:, 0]
                    if best_e is None:
                        best_x, best_e = x_min, e_min
                    else:
                        better = e_min < best_e
                        best_x = torch.where(better[:, None, None, None], x_min, best_x)
                        best_e = torch.minimum(e_min, best_e)
                    best.append(best_e.clone())
        with torch.inference_mode():
            cand = torch.cat([best_x, x.detach()], 1)  # the best scored sequence, and where each start ended
            e2 = self._energy(z_obs, state, z_goal, cand)
            evals += cand.shape[1]
            i = e2.argmin(1)
            plan = cand[torch.arange(b, device=dev), i]
            energy = e2.gather(1, i[:, None])[:, 0]
        return self._result(plan, std, energy, best, evals)


class CEMGradPlanner(CEMPlanner):
    """CEM, then Adam refines CEM's plan (module docstring); the better of the two is returned."""

    def __init__(self, model: PlanningModel, config: PlannerConfig | None = None,
                 options: GradientOptions | None = None) -> None:
        super().__init__(model, config)
        self.refiner = GradientPlanner(model, self.config, options or GradientOptions(starts=1))

    def plan(self, z_obs, state, z_goal, *, init_mean=None, seed=None, normals=None) -> PlanResult:
        cem = super().plan(z_obs, state, z_goal, init_mean=init_mean, seed=seed, normals=normals)
        ref = self.refiner.plan(z_obs, state, z_goal, init_mean=cem.mean, seed=seed)
        pick = ref.energy < cem.energy
        mean = torch.where(pick[:, None, None], ref.mean, cem.mean)
        stats = {"best": torch.cat([cem.stats["best"], torch.minimum(ref.stats["best"], cem.energy[:, None])], 1),
                 "model_evals": cem.stats["model_evals"] + ref.stats["model_evals"]}
        # each part's own actions: CEM's mean may be raw (PlannerConfig.gripper_range_fit), its actions clipped
        actions = torch.where(pick[:, None, None], ref.actions, cem.actions)
        return PlanResult(mean=mean, actions=actions, energy=torch.where(pick, ref.energy, cem.energy), std=cem.std,
                          stats=stats)


_OPTIONS = {"mppi": MPPIOptions, "icem": ICEMOptions, "gradient": GradientOptions, "cem_grad": GradientOptions}


def make_planner(name: str, model: PlanningModel, config: PlannerConfig | None = None, **options: Any):
    """The planner called `name` (one of PLANNERS) on `model` with the shared `config` and its own options
    (keyword arguments of MPPIOptions / ICEMOptions / GradientOptions; none for "cem")."""
    opts = planner_options(name, **options)
    if name == "cem":
        return CEMPlanner(model, config)
    cls = {"mppi": MPPIPlanner, "icem": ICEMPlanner, "gradient": GradientPlanner, "cem_grad": CEMGradPlanner}[name]
    return cls(model, config, opts)


def planner_options(name: str, **options: Any) -> MPPIOptions | ICEMOptions | GradientOptions | None:
    """The options object of planner `name` from keyword arguments (None for "cem"); ValueError naming an
    unknown planner, an unknown option or a bad value."""
    if name not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {name!r}")
    if name == "cem":
        if options:
            raise ValueError(f"the cem planner takes no planner options, got {sorted(options)}")
        return None
    kind = _OPTIONS[name]
    allowed = {f.name for f in fields(kind)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown {name} options {unknown}; {kind.__name__} has {sorted(allowed)}")
    return kind(**options)


def parse_planner_options(items: list[str] | tuple[str, ...], flag: str = "--planner-option") -> dict[str, Any]:
    """["temperature=0.05", "steps=30"] -> {"temperature": 0.05, "steps": 30} (ints stay ints); ValueError
    naming `flag` for an item that is not KEY=NUMBER."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE, e.g. temperature=0.05")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                raise ValueError(f"{flag} {item!r}: the value must be a number") from None
    return out


def add_planner_arguments(parser: Any) -> None:
    """`--planner` and `--planner-option` on an argparse parser (the commands that plan share them)."""
    parser.add_argument("--planner", default="cem", choices=PLANNERS,
                        help="cem (default), mppi (path-integral weights), icem (coloured noise, shrinking "
                             "population, elites kept), gradient (Adam through the AC predictor), cem_grad (CEM, "
                             "then Adam refines its plan); the sizes (samples, iterations, ...) are shared")
    parser.add_argument("--planner-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the chosen planner, repeatable: mppi temperature / std_decay / momentum; "
                             "icem beta / decay / keep_fraction; gradient and cem_grad steps / lr / starts")


class CountingPlanner:
    """Wraps a planner and counts its decisions and model evaluations (stats["model_evals"]) across calls."""

    def __init__(self, planner: Any) -> None:
        self.planner, self.decisions, self.model_evals = planner, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.planner, name)

    def plan(self, *args: Any, **kwargs: Any) -> PlanResult:
        res = self.planner.plan(*args, **kwargs)
        self.decisions += 1
        self.model_evals += int(res.stats.get("model_evals", 0))
        return res

    @property
    def evals_per_decision(self) -> float:
        return self.model_evals / self.decisions if self.decisions else float("nan")
