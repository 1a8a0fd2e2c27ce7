"""Typed training configs: dataclasses with named presets, TOML/JSON files and `key.sub=value` overrides.

One system for every config-driven command (`vjepa-fast pretrain`, `vjepa-fast train-ac`, `vjepa-fast probe`):

    vjepa-fast COMMAND [--preset NAME] [--config FILE] [KEY=VALUE ...] [--set KEY=VALUE ...]

Precedence, lowest first: the dataclass defaults < the preset (`--preset`, else the file's own top-level
`preset = "..."`, else the command's default preset) < the file < the command line. Values use TOML syntax
(`steps=500`, `data.sources=["a", "b"]`, `amp="bf16"`; bare words are strings). Unknown keys are refused
with the closest valid names; `--help` lists every key with its default; `--print-config` prints the
resolved config as TOML and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import logging
import os
import re
import types
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_LOG = logging.getLogger(__name__)

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
    # "bf16": always; "none": fp32. Weights, optimizer state and EMA stay fp32.
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
    amp: str = "auto"  # "auto" (bf16 autocast where the device does bf16 natively, else fp32), "bf16", "none"
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

    def __post_init__(self) -> None:
        from vjepa_fast.models import ACPredictorConfig
        from vjepa_fast.precision import AMP_CHOICES

        if isinstance(self.data, Mapping):
            self.data = from_dict(ACDataConfig, self.data, "data")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
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
        if d.cache_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"data.cache_dtype must be bfloat16 or float16, got {d.cache_dtype!r}")
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


# ------------------------------------------------------------------------------------ attentive probes
PROBE_TASKS = ("classification", "anticipation")


@dataclass
class ProbeDataConfig:
    """The labelled videos of `vjepa-fast probe` and how clips are cut from them.

    classification CSV: a header with `path,label` (label: an int class index, or a class name when
    `class_names` is set), one video per row; relative paths are read from the CSV's folder.
    anticipation CSV: `path,action_start_s,label`: the observed clip is `frames_per_clip` frames at `fps`
    ending `anticipation_s` before the labelled action starts (EK-100: 1 s).
    """

    train_csv: str = ""
    val_csv: str = ""
    task: str = "classification"  # classification, or anticipation (predict the action starting anticipation_s after the clip)
    class_names: list[str] = field(default_factory=list)  # optional: names of the classes (labels may then be names)
    num_classes: int = 0  # 0: max label + 1 over both CSVs (or len(class_names))
    frames_per_clip: int = 16
    frame_step: int = 4  # classification: source frames between two sampled frames
    fps: float = 8.0  # anticipation: sampling rate of the observed clip (frames per second)
    anticipation_s: float = 1.0  # anticipation: seconds between the clip end and the action start
    num_segments: int = 1  # temporal clips per video, spread over it; their tokens are concatenated per view
    num_views: int = 1  # spatial views (crops along the long side) averaged at test time (softmax); training draws one
    crop_size: int = 256
    num_workers: int = 0


@dataclass
class ProbeConfig:
    """Everything `vjepa-fast probe train|eval` needs: a frozen encoder, the labelled videos, the attentive probe
    (Meta's AttentiveClassifier: depth - 1 self-attention blocks + one cross-attention block, a linear head) and
    its optimisation (AdamW, linear warmup then cosine decay, per optimizer step)."""

    encoder: str = ""  # frozen encoder: .safetensors (ours), Meta's .pt, or random:PRESET[@IMG] (random weights, seed 0)
    out_dir: str = "runs/probe"
    data: ProbeDataConfig = field(default_factory=ProbeDataConfig)
    num_heads: int = 16  # probe heads (V-JEPA 2's evals: 16 for ViT-L, H and g)
    depth: int = 4  # probe blocks (V-JEPA 2's evals: 4)
    cache_features: bool = False  # encode every clip once (eval views) into cache_dir and train on the cached tokens
    cache_dir: str = ""  # default OUT_DIR/features
    cache_dtype: str = "float16"  # storage of cached tokens: float16, bfloat16 or float32
    epochs: int = 20
    batch_size: int = 4  # videos per step per process
    lr: float = 5e-4
    start_lr: float = 0.0
    final_lr: float = 0.0
    warmup_epochs: float = 0.0
    weight_decay: float = 0.01
    amp: str = "auto"  # auto (bf16 autocast where the device does bf16 natively, else fp32), bf16, none
    device: str = "auto"  # auto (cuda:LOCAL_RANK when there is a GPU), cpu, cuda, cuda:1 ...
    seed: int = 0
    recall_k: int = 5  # the k of recall@k and top-k accuracy reported beside top-1
    eval_every: int = 1  # epochs between evaluations on val_csv (0: only at the end)
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest checkpoint in out_dir/checkpoints
    progress: bool = True

    def __post_init__(self) -> None:
        from vjepa_fast.precision import AMP_CHOICES

        if isinstance(self.data, Mapping):
            self.data = from_dict(ProbeDataConfig, self.data, "data")
        d = self.data
        if d.task not in PROBE_TASKS:
            raise ValueError(f"data.task must be one of {PROBE_TASKS}, got {d.task!r}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        if self.cache_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"cache_dtype must be float16, bfloat16 or float32, got {self.cache_dtype!r}")
        for name in ("num_heads", "depth", "epochs", "batch_size", "keep_checkpoints", "recall_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("frames_per_clip", "frame_step", "num_segments", "num_views"):
            if getattr(d, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(d, name)}")
        if d.frames_per_clip % 2:
            raise ValueError(f"data.frames_per_clip must be even (tubelet 2), got {d.frames_per_clip}")
        if d.crop_size < 16 or d.crop_size % 16:
            raise ValueError(f"data.crop_size must be a multiple of 16 (patch 16), got {d.crop_size}")
        if d.fps <= 0 or d.anticipation_s < 0 or d.num_classes < 0:
            raise ValueError("data.fps must be > 0, data.anticipation_s >= 0 and data.num_classes >= 0")
        if self.eval_every < 0 or self.warmup_epochs < 0 or self.lr <= 0:
            raise ValueError("eval_every and warmup_epochs must be >= 0 and lr > 0")

    @property
    def features_dir(self) -> str:
        return self.cache_dir or str(Path(self.out_dir) / "features")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def synthetic_tiny(cls, **overrides: Any) -> ProbeConfig:
        """CPU seconds: a random tiny encoder (64 px, 8-frame clips) and a 2-block, 4-head probe on the synthetic
        moving-square videos (label = direction of motion, 4 classes), features cached once."""
        cfg = cls(
            encoder="random:tiny", out_dir="runs/probe-synthetic",
            data=ProbeDataConfig(train_csv="data/probe_synthetic/train.csv", val_csv="data/probe_synthetic/val.csv",
                                 class_names=["right", "left", "down", "up"], frames_per_clip=8, frame_step=1, num_segments=1, num_views=1, crop_size=64),
            num_heads=4, depth=2, cache_features=True, cache_dtype="float32", epochs=20, batch_size=16, lr=1e-3,
            start_lr=1e-4, final_lr=1e-5, warmup_epochs=2, weight_decay=0.01, amp="none", device="cpu",
            eval_every=0, keep_checkpoints=1,
        )
        return apply_overrides(cfg, overrides)

    @classmethod
    def ssv2_vitg(cls, **overrides: Any) -> ProbeConfig:
        """Something-Something v2 with ViT-g/16 at 384 px (the paper's 77.3% top-1): 64 frames at frame step 2,
        2 temporal clips x 3 spatial views at test time, a 4-block 16-head probe, 174 classes, bf16 where
        native. The optimisation values are ours (not Meta's sweep); to reproduce the number, evaluate Meta's
        released probe: `vjepa-fast probe eval --config configs/probe_ssv2_vitg.toml --checkpoint
        ssv2-vitg-384-64x2x3.pt`."""
        cfg = cls(
            encoder="vitg-384.pt", out_dir="runs/probe-ssv2-vitg",
            data=ProbeDataConfig(train_csv="ssv2_train.csv", val_csv="ssv2_val.csv", num_classes=174,
                                 frames_per_clip=64, frame_step=2, num_segments=2, num_views=3, crop_size=384,
                                 num_workers=8),
            num_heads=16, depth=4, epochs=20, batch_size=2, lr=5e-4, start_lr=0.0, final_lr=0.0, warmup_epochs=0,
            weight_decay=0.01, amp="auto",
        )
        return apply_overrides(cfg, overrides)

    @classmethod
    def ek100_vitg(cls, **overrides: Any) -> ProbeConfig:
        """EPIC-KITCHENS-100 action anticipation with ViT-g/16 at 384 px: 32 frames at 8 fps ending 1 s before the
        action (the paper: 39.7 class-mean recall@5 with Meta's verb/noun/action probe; this probe predicts the
        action class only)."""
        cfg = cls(
            encoder="vitg-384.pt", out_dir="runs/probe-ek100-vitg",
            data=ProbeDataConfig(train_csv="ek100_train_anticipation.csv", val_csv="ek100_val_anticipation.csv",
                                 task="anticipation", frames_per_clip=32, fps=8.0, anticipation_s=1.0,
                                 num_segments=1, num_views=1, crop_size=384, num_workers=8),
            num_heads=16, depth=4, epochs=20, batch_size=2, lr=5e-4, weight_decay=0.01, amp="auto",
        )
        return apply_overrides(cfg, overrides)


PROBE_PRESETS = {"synthetic_tiny": ProbeConfig.synthetic_tiny, "ssv2_vitg": ProbeConfig.ssv2_vitg,
                 "ek100_vitg": ProbeConfig.ek100_vitg}


# ------------------------------------------------------------------------------------ dict <-> dataclass
def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(value, inner, where)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a table/dict, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise TypeError(f"{where} must be a list of {len(items)} values, got {value!r}")
        return tuple(_convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a table/dict, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}
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


def config_keys(cls: type) -> list[str]:
    """Every dotted key of config dataclass `cls` (nested dataclasses expanded)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += [f"{f.name}.{k}" for k in config_keys(hints[f.name])]
        else:
            out.append(f.name)
    return out


def _unknown_key(key: str, root: type | None, here: Sequence[str]) -> ValueError:
    """ValueError naming the unknown dotted `key` and the closest valid keys."""
    valid = config_keys(root) if root is not None else list(here)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if not close:  # e.g. the right leaf in the wrong section
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] in difflib.get_close_matches(
            leaf, [v.rsplit(".", 1)[-1] for v in valid], n=3, cutoff=0.6)][:3]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown config key '{key}'{hint} (`--help` lists every key)")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "", root: type | None = None) -> T:
    """Builds dataclass `cls` from a (nested) dict; unknown keys and wrong types raise naming the key."""
    root = root or cls
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if "bf16" in unknown and "amp" in names:
        _renamed_bf16(f"{prefix}bf16")
    if unknown:
        if root is cls and where:  # a nested dataclass built on its own: keys relative to it
            raise _unknown_key(unknown[0], cls, ())
        raise _unknown_key(f"{prefix}{unknown[0]}", root, ())
    kwargs = {}
    for k, v in data.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, Mapping):
            kwargs[k] = from_dict(tp, v, f"{prefix}{k}", root)
        else:
            kwargs[k] = _convert(v, tp, f"{prefix}{k}")
    return cls(**kwargs)


def _renamed_bf16(key: str) -> None:
    raise ValueError(f"config key '{key}' was replaced by amp = \"auto\" | \"bf16\" | \"none\" (auto: bf16 "
                     "autocast where the device does bf16 natively, fp32 elsewhere)")


def to_dict(cfg: Any) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _set_path(data: dict[str, Any], dotted: str, value: Any, root: type) -> None:
    keys = dotted.split(".")
    node = data
    for i, k in enumerate(keys[:-1]):
        if k not in node or not isinstance(node[k], dict) or not _is_section(root, keys[: i + 1]):
            raise _unknown_key(dotted, root, ())
        node = node[k]
    if keys[-1] not in node:
        if keys[-1] == "bf16" and "amp" in node:
            _renamed_bf16(dotted)
        raise _unknown_key(dotted, root, ())
    node[keys[-1]] = value


def _is_section(root: type, keys: Sequence[str]) -> bool:
    tp: Any = root
    for k in keys:
        if not dataclasses.is_dataclass(tp):
            return False
        tp = typing.get_type_hints(tp).get(k)
    return dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict


def parse_override(text: str) -> tuple[str, Any]:
    """`key.sub=value` with TOML value syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    if "=" not in text or not re.match(r"^\s*[A-Za-z_][\w.]*\s*=", text):
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
        _set_path(data, key, value, type(cfg))
    return from_dict(type(cfg), data)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The table of a TOML (or, by suffix, JSON) config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of keys")
    return data


def presets_of(cls: type) -> dict[str, Callable[..., Any]]:
    """The named presets of a config class (PRETRAIN_PRESETS, AC_PRESETS, PROBE_PRESETS)."""
    return {PretrainConfig: PRETRAIN_PRESETS, ACTrainConfig: AC_PRESETS, ProbeConfig: PROBE_PRESETS}.get(cls, {})


# The preset a command starts from when neither --preset nor the file names one (None: the dataclass defaults).
_DEFAULT_PRESET: dict[type, str | None] = {PretrainConfig: "vit_large", ACTrainConfig: None, ProbeConfig: None}


def load_config(cls: type[T], *, path: str | os.PathLike | None = None, preset: str | None = None,
                overrides: Mapping[str, Any] | Sequence[str] = ()) -> T:
    """defaults < preset < file < overrides. The preset is `preset` (the command line's) if given, else the
    file's top-level `preset = "..."`, else the class's default preset (PretrainConfig: vit_large)."""
    presets = presets_of(cls)
    data = read_config_file(path) if path is not None else {}
    file_preset = data.pop("preset", None)
    name = preset or file_preset or _DEFAULT_PRESET.get(cls)
    if name is not None and name not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {name!r}")
    if preset and file_preset and preset != file_preset:
        _LOG.info("--preset %s replaces the config file's preset %r (the command line wins)", preset, file_preset)
    base = to_dict(presets[name]() if name is not None else cls())
    _merge(base, data)
    cfg = from_dict(cls, base)
    return apply_overrides(cfg, overrides)


def load_pretrain_config(path: str | Path | None = None, preset: str | None = None,
                         overrides: Sequence[str] = ()) -> PretrainConfig:
    """Pretraining config: defaults < preset (argument, else the file's `preset`, else vit_large) < file <
    command-line overrides."""
    return load_config(PretrainConfig, path=path, preset=preset, overrides=overrides)


def _merge(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v  # unknown keys are reported by from_dict


# ------------------------------------------------------------------------------------ help and TOML output
def _field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field in the class source (what --help shows beside the key)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in src.splitlines():
        m = re.match(r"^\s{4}(\w+):[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def describe_keys(cfg: Any) -> str:
    """One line per key: `key = value  # what it is` (the --help epilog)."""
    lines = []

    def walk(obj: Any, prefix: str) -> None:
        comments = _field_comments(type(obj))
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
                continue
            shown = "(none)" if v is None else _toml_value(v)
            c = comments.get(f.name, "")
            lines.append(f"  {prefix}{f.name} = {shown}" + (f"   # {c}" if c else ""))

    walk(cfg, "")
    return "\n".join(lines)


def to_toml(cfg: Any) -> str:
    """The config as a TOML file that `--config` loads back to the same config (None values left out)."""
    top, tables = [], []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            body = [f"{g.name} = {_toml_value(getattr(v, g.name))}" for g in dataclasses.fields(v)
                    if getattr(v, g.name) is not None]
            tables.append(f"[{f.name}]\n" + "\n".join(body))
        elif v is not None:
            top.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, default_preset: str | None) -> None:
    """--config, --preset, --set, positional KEY=VALUE overrides and --print-config, with every key and its
    default (the default preset's) listed in the help."""
    presets = presets_of(cls)
    parser.add_argument("--config", default=None, metavar="FILE", help="TOML (or JSON) config file")
    parser.add_argument("--preset", default=None, choices=sorted(presets) or None,
                        help=f"preset to start from (default: the file's `preset`, else {default_preset or 'none'})")
    parser.add_argument("--set", dest="set_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override, like the positional ones (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides in TOML syntax, e.g. total_steps=500 data.sources='[\"data/a\"]'")
    base = presets[default_preset]() if default_preset else cls()
    keys = describe_keys(base)
    parser.epilog = ((parser.epilog + "\n\n") if parser.epilog else "") + (
        f"config keys (defaults{' of preset ' + default_preset if default_preset else ''}; precedence: defaults < "
        f"preset < --config file < command line):\n{keys}")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_from_args(args: argparse.Namespace, cls: type[T]) -> T:
    """The config an add_config_arguments parser describes (prints it and exits on --print-config)."""
    cfg = load_config(cls, path=args.config, preset=args.preset,
                      overrides=list(args.overrides) + list(args.set_overrides))
    if args.print_config:
        print(to_toml(cfg), end="")
        raise SystemExit(0)
    return cfg

