"""The `vjepa-fast probe` config: ProbeConfig (frozen encoder, labelled videos, attentive probe, optimisation) and
its presets, on the one config mechanism (`vjepa_fast.config`: TOML files, `key.sub=value` overrides)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vjepa_fast.config import apply_overrides, from_dict
from vjepa_fast.precision import AMP_RENAMED, canonical_amp, check_dtype_name
from vjepa_fast.train.config import register_presets

__all__ = ["ProbeConfig", "ProbeDataConfig", "PROBE_PRESETS", "PROBE_TASKS"]


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
    amp: str = "auto"  # auto (bf16 autocast where the device does bf16 natively, else fp32), bfloat16, none
    device: str = "auto"  # auto (cuda:LOCAL_RANK when there is a GPU), cpu, cuda, cuda:1 ...
    seed: int = 0
    recall_k: int = 5  # the k of recall@k and top-k accuracy reported beside top-1
    eval_every: int = 1  # epochs between evaluations on val_csv (0: only at the end)
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest checkpoint in out_dir/checkpoints
    progress: bool = True
    RENAMED_KEYS = {"bf16": AMP_RENAMED}

    def __post_init__(self) -> None:
        if isinstance(self.data, Mapping):
            self.data = from_dict(ProbeDataConfig, self.data, "data")
        d = self.data
        if d.task not in PROBE_TASKS:
            raise ValueError(f"data.task must be one of {PROBE_TASKS}, got {d.task!r}")
        self.amp = canonical_amp(self.amp)
        check_dtype_name(self.cache_dtype, "cache_dtype", auto=False)
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
register_presets(ProbeConfig, PROBE_PRESETS)
