"""Typed training configs with named presets: `vjepa-fast pretrain` (PretrainConfig), `vjepa-fast train-ac`
(ACTrainConfig); `vjepa-fast probe`'s ProbeConfig lives in `vjepa_fast.probes.config`. The mechanism (re-exported
here) is `vjepa_fast.config`, the same for every command:

    vjepa-fast COMMAND [--preset NAME] [--config FILE] [KEY=VALUE ...] [--set KEY=VALUE ...] [--print-config]

Precedence, lowest first: the dataclass defaults < the preset (`--preset`, else the file's own top-level
`preset = "..."`, else the command's default preset) < the file < the command line. Values use TOML syntax
(`steps=500`, `data.sources=["a", "b"]`, `amp="bfloat16"`; bare words are strings). Unknown keys are refused
with the closest valid names; `--help` lists every key with its default; `--print-config` prints the
resolved config as TOML and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vjepa_fast import config as _config
from vjepa_fast.config import (  # noqa: F401 - the mechanism's names, re-exported from their old home
    apply_overrides,
    config_from_args,
    config_keys,
    describe_keys,
    from_dict,
    parse_override,
    read_config_file,
    to_dict,
    to_toml,
)
from vjepa_fast.config.core import tomllib  # noqa: F401 - the TOML parser (tomli on Python 3.10)
from vjepa_fast.precision import AMP_RENAMED, canonical_amp, check_dtype_name

# Names that moved up to vjepa_fast.probes (above train: importing them here would be an upward import).
_MOVED_TO_PROBES = ("ProbeConfig", "ProbeDataConfig", "PROBE_PRESETS", "PROBE_TASKS")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_PROBES:
        raise AttributeError(f"vjepa_fast.train.config.{name} moved to vjepa_fast.probes.config.{name}: import it "
                             "from there")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

T = TypeVar("T")

ENCODER_PRESETS = ("tiny", "small", "vit_large", "vit_huge", "vit_giant")
# objective = "vjepa2_1": the V-JEPA 2.1 encoders (EncoderConfig.vjepa2_1_*; tiny = the 2.1 fixtures' size).
V21_ENCODER_PRESETS = ("tiny", "vit_base", "vit_large", "vit_giant", "vit_gigantic")
OBJECTIVES = ("vjepa2", "vjepa2_1")


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
class V21ObjectiveConfig:
    """V-JEPA 2.1's objective (`objective = "vjepa2_1"`): L1 on the masked tokens against the target encoder's
    four layer-normed taps, plus lambda x L1 on the context tokens, optionally divided per token by
    sqrt(distance to the nearest masked token); lambda ramps from 0 at lambda_start to its value at
    lambda_end. Image batches (1-frame clips through the image patch embedding) go beside the video ones."""

    lambda_video: float = 0.5  # context-loss weight on video batches
    lambda_image: float = 0.5  # context-loss weight on image batches
    lambda_progressive: bool = True  # ramp lambda between lambda_start and lambda_end (Meta's default)
    lambda_start: int = 15_000  # optimizer steps
    lambda_end: int = 30_000
    weight_distance: bool = True  # divide each context token's error by sqrt(distance to the nearest target)
    image_sources: list[str] = field(default_factory=list)  # image files, folders or list files (none: video only)
    image_weights: list[float] = field(default_factory=list)
    image_ratio: float = 0.25  # share of each step's loss from image batches (Meta: a quarter of the ranks)
    image_batch_size: int = 0  # images per optimizer step over all processes (0: global_batch_size)
    image_crop_size: int = 0  # 0: data.crop_size


@dataclass
class PretrainConfig:
    # encoder preset: tiny, small, vit_large, vit_huge, vit_giant (objective vjepa2); tiny, vit_base,
    # vit_large, vit_giant, vit_gigantic (objective vjepa2_1: the V-JEPA 2.1 models)
    model: str = "vit_large"
    objective: str = "vjepa2"  # vjepa2 (SPEC section 4) or vjepa2_1 (V-JEPA 2.1, settings in [v21])
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    v21: V21ObjectiveConfig = field(default_factory=V21ObjectiveConfig)
    steps: int = 240_000  # main-phase optimizer steps
    global_batch_size: int = 3072  # clips per optimizer step over all processes and accumulation steps
    grad_accum: int = 1
    # "auto": bf16 autocast where the device does bf16 natively (GPU; CPU with AMX / AVX512_BF16), else fp32;
    # "bfloat16": always ("bf16" reads too); "none": fp32. Weights, optimizer state and EMA stay fp32.
    amp: str = "auto"
    activation_checkpointing: bool = True
    parallel: str = "auto"  # auto (ddp when launched by torchrun), none, ddp, fsdp
    attn_impl: str = "sdpa"  # sdpa (RoPE pass + PyTorch SDPA) or fused (the Triton RoPE attention kernel)
    seed: int = 0
    out_dir: str = "runs/pretrain"
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    init_from: str = ""  # Meta official checkpoint (.pt) to continue from
    tensorboard: bool = True
    RENAMED_KEYS = {"bf16": AMP_RENAMED}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        presets = V21_ENCODER_PRESETS if self.objective == "vjepa2_1" else ENCODER_PRESETS
        if self.model not in presets:
            raise ValueError(f"model must be one of {presets} with objective {self.objective!r}, got {self.model!r}")
        v = self.v21
        if not 0.0 <= v.image_ratio < 1.0:
            raise ValueError(f"v21.image_ratio must be in [0, 1), got {v.image_ratio}")
        if v.lambda_progressive and v.lambda_end <= v.lambda_start:
            raise ValueError(f"v21.lambda_end ({v.lambda_end}) must be > v21.lambda_start ({v.lambda_start})")
        if v.image_weights and len(v.image_weights) != len(v.image_sources):
            raise ValueError(f"v21.image_weights has {len(v.image_weights)} entries for "
                             f"{len(v.image_sources)} v21.image_sources")
        if v.image_batch_size < 0 or v.image_crop_size < 0 or (v.image_crop_size and v.image_crop_size % 16):
            raise ValueError("v21.image_batch_size must be >= 0 and v21.image_crop_size 0 or a multiple of 16, "
                             f"got {v.image_batch_size} and {v.image_crop_size}")
        for name in ("steps", "global_batch_size", "grad_accum", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cooldown.steps < 0:
            raise ValueError(f"cooldown.steps must be >= 0, got {self.cooldown.steps}")
        self.amp = canonical_amp(self.amp)
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

    @classmethod
    def v21_tiny_cpu(cls, **overrides: Any) -> PretrainConfig:
        """The V-JEPA 2.1 objective on the tiny 2.1 encoder (48 wide, 12 blocks) and 4-frame 64 px clips; the
        context loss from the first step (no ramp) so that a short run exercises it."""
        cfg = cls.tiny_cpu(**{"objective": "vjepa2_1", "out_dir": "runs/pretrain-v21-tiny",
                              "v21.lambda_progressive": False})
        return apply_overrides(cfg, overrides)

    @classmethod
    def v21_vit_large(cls, **overrides: Any) -> PretrainConfig:
        """V-JEPA 2.1 ViT-L from scratch with its own objective; see configs/pretrain_v21_vitl.toml for which
        settings are the paper's and which are guesses."""
        cfg = cls(model="vit_large", objective="vjepa2_1",
                  cooldown=CooldownConfig(steps=12_000, num_frames=64, crop_size=384))
        return apply_overrides(cfg, overrides)


PRETRAIN_PRESETS = {"tiny_cpu": PretrainConfig.tiny_cpu, "vit_large": PretrainConfig.vit_large,
                    "vit_huge": PretrainConfig.vit_huge, "vit_giant": PretrainConfig.vit_giant,
                    "v21_tiny_cpu": PretrainConfig.v21_tiny_cpu, "v21_vit_large": PretrainConfig.v21_vit_large}


# ------------------------------------------------------------------------------------ V-JEPA 2-AC training
AC_PREPROCESS = ("planner", "droid")


@dataclass
class ACDataConfig:
    """Where `train-ac` gets its latents: a latent cache it builds from episodes (or one built before)."""

    sources: list[str] = field(default_factory=list)  # episode folders (robot/collect.py, robot/simtools/generate.py), DROID trajectory folders, folders of either, .txt lists
    weights: list[float] = field(default_factory=list)  # one per source: relative share of training clips (default: as many as each has)
    encoder: str = ""  # frozen encoder that makes the latents: .safetensors, Meta's .pt, or random:PRESET[@IMG]
    preprocess: str = "planner"  # planner: the run-time planner's resize + centre crop (plan with this model); droid: SPEC 8 crop 1.35 + squash
    frame_stride: int = 1  # cache every n-th source frame (DROID: 4 = 3.75 Hz, then frame_step 1)
    cache_dtype: str = "bfloat16"  # storage of the cached latents: bfloat16 or float16
    encode_batch_size: int = 32  # frames per encoder forward while building the cache


@dataclass
class ACTrainConfig:
    """Everything a `train-ac` run needs (SPEC section 5).

    Latents come from `cache` (a latent-cache folder); when `data.sources` is set, train-ac builds that cache
    from the episodes with `data.encoder` first, or reuses it when it is fresh (same episodes, encoder,
    preprocessing). predictor: a preset of ACPredictorConfig ("vit_giant", "tiny") plus
    `predictor_overrides`; embed_dim and img_size default to the cache's width and token grid. init: "" (random,
    from `seed`), "identity" (start at the copy-the-latent baseline), Meta's vjepa2-ac-vitg.pt, or a vjepa_fast
    safetensors file holding an AC predictor. Steps count optimizer steps; one step is grad_accum
    micro-batches of batch_size clips per process.
    """

    cache: str = ""  # latent-cache folder (default with data.sources: OUT_DIR/latent_cache)
    out_dir: str = "runs/ac"
    data: ACDataConfig = field(default_factory=ACDataConfig)
    predictor: str = "vit_giant"  # ACPredictorConfig preset: vit_giant (the paper's 300M), tiny
    predictor_overrides: dict[str, Any] = field(default_factory=dict)  # ACPredictorConfig fields, e.g. {depth = 4}
    init: str | None = None  # "" / none: random; "identity": the copy baseline; or a checkpoint file
    val_fraction: float = 0.1  # held-out share of the episodes
    frames_per_clip: int = 8
    frame_step: int = 1  # rows of the cache between clip frames (DROID with frame_stride 1: 4)
    rollout_steps: int = 2
    batch_size: int = 8  # clips per micro-batch per process
    grad_accum: int = 1
    total_steps: int = 1000
    warmup_steps: int = 100
    decay_steps: int = 100  # linear decay to lr_final over the last decay_steps
    lr_start: float = 7.5e-5
    lr_peak: float = 4.25e-4
    lr_final: float = 0.0
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amp: str = "auto"  # "auto" (bf16 autocast where the device does bf16 natively, else fp32), "bfloat16", "none"
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto (cuda:LOCAL_RANK when there is a GPU), cpu, cuda, cuda:1 ...
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at the end only
    eval_max_steps: int | None = None  # horizons evaluated (default: frames_per_clip - 1)
    eval_batches: int | None = None  # held-out batches per evaluation (default: all)
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    resume: bool = True  # continue from the newest checkpoint in out_dir/checkpoints, bit for bit
    progress: bool = True
    RENAMED_KEYS = {"bf16": AMP_RENAMED}

    def __post_init__(self) -> None:
        from vjepa_fast.models import ACPredictorConfig

        if isinstance(self.data, Mapping):
            self.data = from_dict(ACDataConfig, self.data, "data")
        self.amp = canonical_amp(self.amp)
        for name in ("batch_size", "grad_accum", "total_steps", "frame_step", "rollout_steps", "log_every",
                     "keep_checkpoints", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2, got {self.frames_per_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not hasattr(ACPredictorConfig, self.predictor) or self.predictor.startswith("_"):
            raise ValueError(f"unknown ACPredictorConfig preset {self.predictor!r} (e.g. 'vit_giant', 'tiny')")
        self.betas = tuple(self.betas)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if self.init in ("", "none"):
            self.init = None
        d = self.data
        if d.weights and len(d.weights) != len(d.sources):
            raise ValueError(f"data.weights has {len(d.weights)} entries for {len(d.sources)} data.sources")
        if any(w < 0 for w in d.weights) or (d.weights and sum(d.weights) <= 0):
            raise ValueError(f"data.weights must be >= 0 with a positive sum, got {d.weights}")
        if d.preprocess not in AC_PREPROCESS:
            raise ValueError(f"data.preprocess must be one of {AC_PREPROCESS}, got {d.preprocess!r}")
        check_dtype_name(d.cache_dtype, "data.cache_dtype", choices=("bfloat16", "float16"), auto=False)
        if d.frame_stride < 1 or d.encode_batch_size < 1:
            raise ValueError("data.frame_stride and data.encode_batch_size must be >= 1")
        if d.sources and not d.encoder:
            raise ValueError("data.sources is set but data.encoder is empty: name the frozen encoder that makes "
                             "the latents (a .safetensors file, Meta's .pt, or random:PRESET)")

    @property
    def cache_dir(self) -> str:
        """Where the latent cache is (or will be built)."""
        return self.cache or str(Path(self.out_dir) / "latent_cache")

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> ACTrainConfig:
        """A config file (TOML or JSON) with top-level `{key: value}` overrides (dotted keys allowed)."""
        return load_config(ACTrainConfig, path=path, overrides=overrides)

    def predictor_config(self, tokens: int | None = None, dim: int | None = None):
        """The ACPredictorConfig; embed_dim and img_size follow a cache of `tokens` x `dim` latents per frame
        unless predictor_overrides sets them."""
        from vjepa_fast.models import ACPredictorConfig

        over = dict(self.predictor_overrides)
        base = getattr(ACPredictorConfig, self.predictor)()
        if dim is not None and "embed_dim" not in over:
            over["embed_dim"] = dim
        if tokens is not None and "img_size" not in over:
            grid = int(round(tokens ** 0.5))
            if grid * grid == tokens:
                over["img_size"] = grid * base.patch_size
        if "num_frames" not in over and base.num_frames // base.tubelet_size < self.frames_per_clip:
            over["num_frames"] = 2 * self.frames_per_clip
        return getattr(ACPredictorConfig, self.predictor)(**over)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def sim_tiny(cls, **overrides: Any) -> ACTrainConfig:
        """A tiny predictor (4 blocks, width 128) on episodes recorded on the embedded simulator, with the
        shipped pretrained tiny encoder: CPU minutes. The recipe of robot/assets/sim_demo_world_model."""
        cfg = cls(
            out_dir="runs/ac-sim-tiny",
            data=ACDataConfig(sources=["data/sim_random"], encoder="robot/assets/sim_demo_world_model.safetensors",
                              preprocess="planner", cache_dtype="float16"),
            predictor="tiny", predictor_overrides={"depth": 4, "predictor_embed_dim": 128, "num_heads": 2, "num_frames": 16},
            init="identity", val_fraction=0.15, frames_per_clip=5, rollout_steps=2, batch_size=16,
            total_steps=1500, warmup_steps=150, decay_steps=500, lr_start=1e-4, lr_peak=1e-3, amp="none",
            log_every=50, ckpt_every=250, keep_checkpoints=1,
        )
        return apply_overrides(cfg, overrides)

    @classmethod
    def manip_tiny(cls, **overrides: Any) -> ACTrainConfig:
        """The manipulation world model of the simulator (robot/simtools/generate_physics.py episodes with contact, the
        gripper in state and action): a 4-block, 128-wide predictor on a tiny encoder's 128 px latents (8x8
        tokens), 6-frame clips (5 actions), rollout loss over 2 steps; CPU tens of minutes."""
        cfg = cls(
            out_dir="runs/ac-manip",
            data=ACDataConfig(sources=["data/manip"], encoder="runs/manip/pretrain/encoder.safetensors",
                              preprocess="planner", cache_dtype="float16"),
            predictor="tiny", predictor_overrides={"depth": 4, "predictor_embed_dim": 128, "num_heads": 2,
                                                   "num_frames": 16},
            init="identity", val_fraction=0.05, frames_per_clip=6, rollout_steps=2, batch_size=16,
            total_steps=4000, warmup_steps=300, decay_steps=1000, lr_start=1e-4, lr_peak=1e-3, amp="auto",
            log_every=50, ckpt_every=250, keep_checkpoints=1,
        )
        return apply_overrides(cfg, overrides)

    @classmethod
    def droid_vit_giant(cls, **overrides: Any) -> ACTrainConfig:
        """The paper's V-JEPA 2-AC recipe (SPEC section 5): the 300M predictor on frozen ViT-g latents of raw
        DROID (left camera, every 4th row, 8-frame clips, 256 px), global batch 256 (32 x 8 GPUs), bf16,
        warmup 7.5e-5 -> 4.25e-4 over 4.5k steps, constant, linear decay to 0 over the last 4.5k; 94.5k steps."""
        cfg = cls(
            out_dir="runs/ac-droid-vitg",
            data=ACDataConfig(sources=["droid_list.txt"], encoder="vitg.pt", preprocess="droid", frame_stride=4,
                              cache_dtype="bfloat16", encode_batch_size=64),
            predictor="vit_giant", init=None, val_fraction=0.01, frames_per_clip=8, frame_step=1, rollout_steps=2,
            batch_size=32, total_steps=94_500, warmup_steps=4_500, decay_steps=4_500, lr_start=7.5e-5,
            lr_peak=4.25e-4, lr_final=0.0, weight_decay=0.04, amp="auto", num_workers=4, log_every=50,
            ckpt_every=1000, keep_checkpoints=3,
        )
        return apply_overrides(cfg, overrides)


AC_PRESETS = {"sim_tiny": ACTrainConfig.sim_tiny, "manip_tiny": ACTrainConfig.manip_tiny,
              "droid_vit_giant": ACTrainConfig.droid_vit_giant}


# The named presets of each config class, and the preset a command starts from when neither --preset nor the
# file names one (None: the dataclass defaults). Configs above this layer register theirs (register_presets).
_PRESETS: dict[type, dict[str, Callable[..., Any]]] = {PretrainConfig: PRETRAIN_PRESETS, ACTrainConfig: AC_PRESETS}
_DEFAULT_PRESET: dict[type, str | None] = {PretrainConfig: "vit_large", ACTrainConfig: None}


def register_presets(cls: type, presets: Mapping[str, Callable[..., Any]], default: str | None = None) -> None:
    """Makes `presets` the named presets of `cls` for load_config / add_config_arguments (e.g. ProbeConfig's)."""
    _PRESETS[cls] = dict(presets)
    _DEFAULT_PRESET[cls] = default


def presets_of(cls: type) -> dict[str, Callable[..., Any]]:
    """The named presets of a config class (PRETRAIN_PRESETS, AC_PRESETS, and those registered)."""
    return _PRESETS.get(cls, {})


def load_config(cls: type[T], *, path: str | os.PathLike | None = None, preset: str | None = None,
                overrides: Mapping[str, Any] | Sequence[str] = ()) -> T:
    """defaults < preset < file < overrides. The preset is `preset` (the command line's) if given, else the
    file's top-level `preset = "..."`, else the class's default preset (PretrainConfig: vit_large)."""
    return _config.load_config(cls, path=path, preset=preset, overrides=overrides, presets=presets_of(cls),
                               default_preset=_DEFAULT_PRESET.get(cls))


def load_pretrain_config(path: str | Path | None = None, preset: str | None = None,
                         overrides: Sequence[str] = ()) -> PretrainConfig:
    """Pretraining config: defaults < preset (argument, else the file's `preset`, else vit_large) < file <
    command-line overrides."""
    return load_config(PretrainConfig, path=path, preset=preset, overrides=overrides)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, default_preset: str | None) -> None:
    """--config, --preset, --set, positional KEY=VALUE overrides and --print-config for a training config, with
    every key and its default (the default preset's) listed in the help (`vjepa_fast.config.add_config_arguments`
    with the class's presets)."""
    _config.add_config_arguments(parser, cls, default_preset, presets=presets_of(cls))
