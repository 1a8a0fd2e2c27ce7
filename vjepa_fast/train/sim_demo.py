"""DEPRECATED: the simulator demo recipe is now `vjepa-fast train-ac --preset sim_tiny` (configs/ac_sim_tiny.toml).

train-ac builds the latent cache from the episode folders itself (with the planner's preprocessing,
`data.preprocess = "planner"`), starts the predictor at the copy baseline (`init = "identity"`) and exports
OUT_DIR/world_model.safetensors with the camera and data box recorded. The pieces this module held moved:

    PlannerPreprocess, episode_box, episode_cameras -> vjepa_fast.data.episodes
    identity_init                                  -> vjepa_fast.train.ac
    action_inference                               -> vjepa_fast.diagnostics
    probe_encoder                                  -> vjepa_fast.diagnostics.energy_quality (vjepa-fast energy-quality)
    make_encoder(name)                             -> vjepa_fast.diagnostics.encoder_from_spec("name=random:tiny")

`python -m vjepa_fast.train.sim_demo ...`, `DemoConfig` and `run` still work for a while: they warn and run
train-ac with the same settings (cache and checkpoints now under --out, in train-ac's layout).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_MOVED = {
    "PlannerPreprocess": "vjepa_fast.data.episodes",
    "episode_box": "vjepa_fast.data.episodes",
    "episode_cameras": "vjepa_fast.data.episodes",
    "identity_init": "vjepa_fast.train.ac",
    "action_inference": "vjepa_fast.diagnostics",
}
_REMOVED = {
    "probe_encoder": "vjepa_fast.diagnostics.energy_quality (or `vjepa-fast energy-quality`)",
    "make_encoder": "vjepa_fast.diagnostics.encoder_from_spec('name=random:tiny') or a .safetensors file",
    "ENCODERS": "encoder specs random:PRESET[@IMG] (data.encoder of train-ac)",
}
# The old random-encoder names, as train-ac encoder specs (same presets, seed 0).
_ENCODER_SPECS = {"tiny64": "random:tiny", "tiny128": "random:tiny@128", "cpu_small128": "random:cpu_small"}


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"vjepa_fast.train.sim_demo.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        _deprecated(name, f"{_MOVED[name]}.{name}")
        return getattr(importlib.import_module(_MOVED[name]), name)
    if name in _REMOVED:
        raise AttributeError(f"vjepa_fast.train.sim_demo.{name} was removed: use {_REMOVED[name]}")
    raise AttributeError(f"module 'vjepa_fast.train.sim_demo' has no attribute {name!r}")


@dataclass
class DemoConfig:
    """DEPRECATED: the settings of the old recipe; `run` maps them onto ACTrainConfig.sim_tiny."""

    episodes: str
    out: str = "runs/sim_demo"
    encoder: str = "tiny64"
    encoder_seed: int = 0
    predictor_depth: int = 4
    predictor_width: int = 128
    predictor_heads: int = 2
    frames_per_clip: int = 5
    rollout_steps: int = 2
    batch_size: int = 16
    total_steps: int = 1500
    lr_peak: float = 1e-3
    val_fraction: float = 0.15
    seed: int = 0
    threads: int = 1
    init: str = "identity"
    resume: bool = True
    device: str = "auto"

    def to_train_ac(self):
        """The equivalent ACTrainConfig (the old recipe's schedule: warmup 1/10, decay the last 1/3)."""
        from vjepa_fast.train.config import ACTrainConfig, apply_overrides

        if self.encoder_seed != 0:
            raise ValueError("encoder_seed != 0 is not supported any more: random encoders use seed 0")
        if self.init not in ("identity", "random"):
            raise ValueError(f"init must be 'identity' or 'random', got {self.init!r}")
        encoder = _ENCODER_SPECS.get(self.encoder, self.encoder)
        over = {"data.sources": [self.episodes], "data.encoder": encoder, "out_dir": self.out,
                "predictor_overrides": {"depth": self.predictor_depth, "predictor_embed_dim": self.predictor_width,
                                        "num_heads": self.predictor_heads,
                                        "num_frames": 2 * max(8, self.frames_per_clip)},
                "init": "identity" if self.init == "identity" else "", "frames_per_clip": self.frames_per_clip,
                "rollout_steps": self.rollout_steps, "batch_size": self.batch_size, "total_steps": self.total_steps,
                "warmup_steps": max(1, self.total_steps // 10), "decay_steps": max(1, self.total_steps // 3),
                "lr_start": self.lr_peak / 10, "lr_peak": self.lr_peak, "val_fraction": self.val_fraction,
                "seed": self.seed, "device": self.device, "resume": self.resume,
                "ckpt_every": max(1, min(250, self.total_steps))}
        return apply_overrides(ACTrainConfig.sim_tiny(), over)


def run(cfg: DemoConfig, *, probe: list[str] | None = None, export: str | None = None) -> dict[str, Any]:
    """DEPRECATED: `train_ac(cfg.to_train_ac())`, the held-out action inference, and a copy of the world
    model to `export`. Returns a summary dict (also OUT/summary.json)."""
    import torch

    from vjepa_fast.data.latent_cache import CachedClipDataset
    from vjepa_fast.diagnostics import action_inference
    from vjepa_fast.train.ac import prepare_latent_cache, train_ac

    warnings.warn("vjepa_fast.train.sim_demo.run is deprecated: use `vjepa-fast train-ac --preset sim_tiny`",
                  DeprecationWarning, stacklevel=2)
    if probe:
        raise ValueError("probe= was removed: use `vjepa-fast energy-quality` (diagnostic (a))")
    torch.set_num_threads(cfg.threads)
    tcfg = cfg.to_train_ac()
    res = train_ac(tcfg)
    cache, _ = prepare_latent_cache(tcfg)
    _, val_eps = cache.split(tcfg.val_fraction, seed=tcfg.seed)
    from vjepa_fast.checkpoints import load_safetensors

    predictor = load_safetensors(res["files"]["predictor"]).predictor
    summary: dict[str, Any] = {"config": asdict(cfg), "episodes": len(cache), "heldout": res["eval"].to_dict(),
                               "action_inference": action_inference(predictor, CachedClipDataset(
                                   cache, frames_per_clip=2, episodes=val_eps)),
                               "files": res["files"]}
    if export:
        src = Path(res["files"]["world_model"])
        if Path(export).resolve() != src.resolve():
            shutil.copyfile(src, export)
        summary["export"] = {"path": str(export), "bytes": Path(export).stat().st_size}
    (Path(tcfg.out_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    """DEPRECATED command line (the old flags); prefer `vjepa-fast train-ac --preset sim_tiny KEY=VALUE ...`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", required=True)
    p.add_argument("--out", default="runs/sim_demo")
    p.add_argument("--encoder", default="tiny64")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--frames-per-clip", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", default="identity", choices=["identity", "random"])
    p.add_argument("--export", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).warning("python -m vjepa_fast.train.sim_demo is deprecated: use `vjepa-fast "
                                        "train-ac --preset sim_tiny` (configs/ac_sim_tiny.toml)")
    cfg = DemoConfig(episodes=a.episodes, out=a.out, encoder=a.encoder, predictor_depth=a.depth,
                     predictor_width=a.width, frames_per_clip=a.frames_per_clip, batch_size=a.batch_size,
                     total_steps=a.steps, lr_peak=a.lr, threads=a.threads, init=a.init, resume=not a.no_resume,
                     device=a.device)
    s = run(cfg, export=a.export)
    print(json.dumps({k: v for k, v in s.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
