"""Typed training configs: dataclasses with named presets, TOML files and `key.sub=value` overrides."""

from __future__ import annotations

import dataclasses
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENCODER_PRESETS = ("tiny", "small", "vit_large", "vit_huge", "vit_giant")


@dataclass
class DataConfig:
    """Where clips come from and how they are cut (SPEC section 4)."""

    sources: list[str] = field(default_factory=list)  # video/image files, robot episodes, folders, .txt lists
    weights: list[float] = field(default_factory=list)  # one per source (default: equal)
    manifest: str = ""  # JSON/CSV manifest of (path, weight); replaces sources/weights when set
    num_frames: int = 16
    fps: float = 4.0
    crop_size: int = 256
    num_workers: int = 4
    pin_memory: bool = True


@dataclass
class OptimConfig:
    """AdamW and the warmup-constant(-cooldown) learning-rate schedule; EMA momentum of the target."""

    lr_start: float = 1e-4
    lr_peak: float = 5.25e-4
    lr_final: float = 1e-6  # reached at the end of the cooldown
    warmup_steps: int = 12_000
    weight_decay: float = 0.04  # not applied to biases and 1-D parameters
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    ema_momentum: float = 0.99925


@dataclass
class CooldownConfig:
    """Progressive resolution: after the main phase, `steps` more at longer/larger clips, LR decaying linearly."""

    steps: int = 0  # 0: no cooldown phase
    num_frames: int = 64
    crop_size: int = 256


@dataclass
class PretrainConfig:
    model: str = "vit_large"  # encoder preset: tiny, small, vit_large, vit_huge, vit_giant
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    steps: int = 240_000  # main-phase optimizer steps
    global_batch_size: int = 3072  # clips per optimizer step over all processes and accumulation steps
    grad_accum: int = 1
    # "auto": bf16 autocast where the device does bf16 natively (GPU; CPU with AMX / AVX512_BF16), else fp32;
    # "bf16": always; "none": fp32. Weights, optimizer state and EMA stay fp32.
    amp: str = "auto"
    activation_checkpointing: bool = True
    parallel: str = "auto"  # auto (ddp when launched by torchrun), none, ddp, fsdp
    attn_impl: str = "sdpa"
    seed: int = 0
    out_dir: str = "runs/pretrain"
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    init_from: str = ""  # Meta official checkpoint (.pt) to continue from
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.model not in ENCODER_PRESETS:
            raise ValueError(f"model must be one of {ENCODER_PRESETS}, got {self.model!r}")
        for name in ("steps", "global_batch_size", "grad_accum", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cooldown.steps < 0:
            raise ValueError(f"cooldown.steps must be >= 0, got {self.cooldown.steps}")
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be auto, bf16 or none, got {self.amp!r}")
        if self.parallel not in ("auto", "none", "ddp", "fsdp"):
            raise ValueError(f"parallel must be auto, none, ddp or fsdp, got {self.parallel!r}")
        if not 0.0 <= self.optim.ema_momentum <= 1.0:
            raise ValueError(f"optim.ema_momentum must be in [0, 1], got {self.optim.ema_momentum}")
        if self.optim.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.optim.warmup_steps}")
        d = self.data
        if d.weights and d.sources and len(d.weights) != len(d.sources):
            raise ValueError(f"data.weights has {len(d.weights)} entries for {len(d.sources)} data.sources")
        for name, frames, crop in (("data", d.num_frames, d.crop_size),
                                   ("cooldown", self.cooldown.num_frames, self.cooldown.crop_size)):
            if frames < 2 or frames % 2:
                raise ValueError(f"{name}.num_frames must be an even number >= 2 (tubelet 2), got {frames}")
            if crop < 16 or crop % 16:
                raise ValueError(f"{name}.crop_size must be a multiple of 16 (patch 16), got {crop}")

    @property
    def total_steps(self) -> int:
        return self.steps + self.cooldown.steps

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def tiny_cpu(cls, **overrides: Any) -> PretrainConfig:
        """A 96-wide, 2-block encoder on 4-frame 64 px clips: trains in minutes on 2 CPU cores."""
        cfg = cls(
            model="tiny",
            data=DataConfig(num_frames=4, fps=4.0, crop_size=64, num_workers=0, pin_memory=False),
            optim=OptimConfig(lr_start=2e-4, lr_peak=1e-3, lr_final=1e-5, warmup_steps=20, ema_momentum=0.99),
            cooldown=CooldownConfig(steps=0, num_frames=8, crop_size=64),
            steps=300, global_batch_size=8, amp="none", activation_checkpointing=False, parallel="auto",
            out_dir="runs/pretrain-tiny", save_every=100, keep_last=2, log_every=5,
        )
        return apply_overrides(cfg, overrides)

    @classmethod
    def vit_large(cls, **overrides: Any) -> PretrainConfig:
        """The paper's ViT-L recipe: 16 frames 256 px, 240k steps, cooldown 12k steps at 64 frames."""
        cfg = cls(model="vit_large", cooldown=CooldownConfig(steps=12_000, num_frames=64, crop_size=256))
        return apply_overrides(cfg, overrides)

    @classmethod
    def vit_huge(cls, **overrides: Any) -> PretrainConfig:
        cfg = cls(model="vit_huge", cooldown=CooldownConfig(steps=12_000, num_frames=64, crop_size=256))
        return apply_overrides(cfg, overrides)

    @classmethod
    def vit_giant(cls, **overrides: Any) -> PretrainConfig:
        """ViT-g (1B): FSDP2, cooldown at 64 frames and 384 px."""
        cfg = cls(model="vit_giant", parallel="fsdp",
                  cooldown=CooldownConfig(steps=12_000, num_frames=64, crop_size=384))
        return apply_overrides(cfg, overrides)


PRETRAIN_PRESETS = {"tiny_cpu": PretrainConfig.tiny_cpu, "vit_large": PretrainConfig.vit_large,
                    "vit_huge": PretrainConfig.vit_huge, "vit_giant": PretrainConfig.vit_giant}


# ------------------------------------------------------------------------------------ dict <-> dataclass
def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a table/dict, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Builds dataclass `cls` from a (nested) dict; unknown keys and wrong types raise naming the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if "bf16" in unknown and "amp" in names:
        _renamed_bf16(f"{where + '.' if where else ''}bf16")
    if unknown:
        raise ValueError(f"unknown config key '{where + '.' if where else ''}{unknown[0]}'; "
                         f"known keys{' of ' + where if where else ''}: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _renamed_bf16(key: str) -> None:
    raise ValueError(f"config key '{key}' was replaced by amp = \"auto\" | \"bf16\" | \"none\" (auto: bf16 "
                     "autocast where the device does bf16 natively, fp32 elsewhere)")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if k not in node or not isinstance(node[k], dict):
            raise ValueError(f"override {dotted!r}: {k!r} is not a config section")
        node = node[k]
    if keys[-1] not in node:
        if keys[-1] == "bf16" and "amp" in node:
            _renamed_bf16(dotted)
        raise ValueError(f"override {dotted!r}: unknown key {keys[-1]!r}; known: {sorted(node)}")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value` with TOML value syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value (e.g. optim.lr_peak=3e-4)")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Sequence[str]) -> T:
    """A new config with `{dotted.key: value}` (or ["dotted.key=value", ...]) applied and validated."""
    if not overrides:
        return cfg
    items = [parse_override(o) for o in overrides] if not isinstance(overrides, Mapping) else overrides.items()
    data = to_dict(cfg)
    for key, value in items:
        _set_path(data, key, value)
    return from_dict(type(cfg), data)


def load_pretrain_config(path: str | Path | None = None, preset: str | None = None,
                         overrides: Sequence[str] = ()) -> PretrainConfig:
    """Config from a TOML file (its optional top-level `preset = "..."` picks the starting point), a preset
    name, or both; then command-line overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    preset = data.pop("preset", None) or preset or "vit_large"
    if preset not in PRETRAIN_PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRETRAIN_PRESETS)}, got {preset!r}")
    base = to_dict(PRETRAIN_PRESETS[preset]())
    _merge(base, data, "")
    return apply_overrides(from_dict(PretrainConfig, base), overrides)


def _merge(base: dict[str, Any], new: Mapping[str, Any], where: str) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v  # unknown keys are reported by from_dict
