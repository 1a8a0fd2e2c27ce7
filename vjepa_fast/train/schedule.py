"""Learning-rate schedules (pure functions of the step, so a resumed run continues exactly)."""

from __future__ import annotations


def warmup_constant_cooldown(step: int, *, lr_start: float, lr_peak: float, lr_final: float, warmup_steps: int,
                             constant_until: int, cooldown_steps: int) -> float:
    """V-JEPA 2's schedule: linear warmup lr_start -> lr_peak over `warmup_steps`, constant until step
    `constant_until`, then a linear decay toward lr_final over `cooldown_steps` (the cooldown phase)."""
    if step < warmup_steps:
        return lr_start + (lr_peak - lr_start) * step / warmup_steps
    if step < constant_until or cooldown_steps <= 0:
        return lr_peak
    frac = min(1.0, (step - constant_until) / cooldown_steps)
    return lr_peak + (lr_final - lr_peak) * frac
