"""Goal-image-conditioned behaviour cloning on frozen V-JEPA 2 latents: the Octo-style baseline of the
manipulation evaluation (robot/simtools/task_eval.py `NAME=bc:FILE`).

    vjepa-fast train-bc --cache runs/ac-manip/latent_cache --encoder runs/ac-manip/world_model.safetensors \\
        --out runs/bc-manip --steps 4000

The policy reads the frozen encoder's latent of the current frame and of a goal frame, and the 7-D state, and
outputs the next action (dxyz [m], gripper change): per token a linear map D -> 16 of each latent, both
flattened with the state into a 3-layer MLP (hidden 512, GELU). Trained on the same episodes as the world model
(a latent cache of `train-ac`): from (frame t, goal = frame t + k, k uniform in 1..max_goal_offset, i.e.
hindsight relabelling of future frames as goals), regress action t = state t+1 - state t (xyz / 5 cm and the
gripper change, smooth L1). One forward per decision.

The file holds the encoder (so the policy encodes its own frames) and the head: `load_bc_policy(path)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_LOG = logging.getLogger(__name__)
XYZ_SCALE = 0.05  # m: the action bound; the head predicts xyz / XYZ_SCALE
BC_FORMAT = "vjepa_fast.bc/1"


@dataclass(frozen=True)
class BCConfig:
    tokens: int
    dim: int
    token_dim: int = 16
    hidden: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class GoalBCHead(nn.Module):
    """(z_obs [B, N, D], z_goal [B, N, D], state [B, 7]) -> [B, 4]: dxyz / XYZ_SCALE and the gripper change."""

    def __init__(self, cfg: BCConfig) -> None:
        super().__init__()
        self.config = cfg
        self.norm = nn.LayerNorm(cfg.dim)
        self.token = nn.Linear(cfg.dim, cfg.token_dim)
        width = 2 * cfg.tokens * cfg.token_dim + 7
        self.mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.hidden, 4))

    def forward(self, z_obs: torch.Tensor, z_goal: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        b = z_obs.shape[0]
        a = self.token(self.norm(z_obs.float())).reshape(b, -1)
        g = self.token(self.norm(z_goal.float())).reshape(b, -1)
        s = state.float().clone()
        s[:, 3:6] = torch.sin(s[:, 3:6])  # Euler angles near +-pi wrap: their sine is continuous
        return self.mlp(torch.cat([a, g, s], dim=1))


class ImageLatents:
    """Frames -> normalised latents [B, N, D] as `WorldModel.encode_image_files` makes them (eval preprocessing,
    each frame a 2-frame clip, layer norm without affine), for a policy without a predictor."""

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder = encoder.eval()
        img = encoder.config.img_size
        self.image_size = img if isinstance(img, int) else int(img[0])

    @torch.inference_mode()
    def encode_image_files(self, images: list[Any]) -> torch.Tensor:
        from vjepa_fast.constants import TARGET_LN_EPS
        from vjepa_fast.data.transforms import preprocess_image

        z = self.encoder(torch.stack([preprocess_image(im, self.image_size) for im in images]))
        return F.layer_norm(z.float(), (z.shape[-1],), eps=TARGET_LN_EPS)


class BCPolicy:
    """What robot/simtools/task_eval.py calls: `act(z_obs [1, N, D], state [7], z_goal [1, N, D]) -> action [7]`;
    `world_model` encodes frames (its encoder; no predictor)."""

    def __init__(self, head: GoalBCHead, world_model: Any) -> None:
        self.head, self.world_model = head.eval(), world_model

    @torch.inference_mode()
    def act(self, z_obs: torch.Tensor, state: np.ndarray, z_goal: torch.Tensor) -> np.ndarray:
        out = self.head(z_obs, z_goal, torch.as_tensor(np.asarray(state), dtype=torch.float32)[None])[0]
        out = out.double().numpy()
        return np.r_[out[:3] * XYZ_SCALE, 0.0, 0.0, 0.0, out[3]]


def save_bc_policy(path: str | Path, head: GoalBCHead, encoder: nn.Module, info: dict[str, Any] | None = None) -> Path:
    """One safetensors file: `encoder.*` (the frozen encoder) and `bc.*`, configs as metadata; atomic."""
    from safetensors.torch import save_file

    from vjepa_fast.fileio import temp_path

    tensors = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tensors.update({f"bc.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    meta = {"format": "pt", "vjepa_fast_bc": BC_FORMAT, "encoder_config": json.dumps(encoder.config.to_dict()),
            "bc_config": json.dumps(head.config.to_dict()), "info": json.dumps(info or {}, sort_keys=True)}
    out = Path(path)
    tmp = temp_path(out)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_bc_policy(path: str | Path) -> BCPolicy:
    from safetensors import safe_open

    from vjepa_fast.models import EncoderConfig, VideoEncoder

    p = Path(path)
    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("vjepa_fast_bc") != BC_FORMAT:
            raise ValueError(f"{p}: not a behaviour-cloning policy file (vjepa-fast train-bc writes them)")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    encoder = VideoEncoder(EncoderConfig.from_dict(json.loads(meta["encoder_config"])))
    encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
    head = GoalBCHead(BCConfig(**json.loads(meta["bc_config"])))
    head.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("bc.")})
    return BCPolicy(head, ImageLatents(encoder))


def _batch(cache: Any, episodes: list[int], rng: np.random.Generator, size: int, max_goal_offset: int
           ) -> tuple[torch.Tensor, ...]:
    from vjepa_fast.robotics.pose import actions_from_states

    zo, zg, st, act = [], [], [], []
    for _ in range(size):
        e = int(episodes[rng.integers(len(episodes))])
        n = cache.episode_length(e)
        t = int(rng.integers(n - 1))
        g = min(n - 1, t + int(rng.integers(1, max_goal_offset + 1)))
        z = cache.latents(e, [t, g]).float()
        s = cache.states(e, [t, t + 1])
        a = actions_from_states(s)[0]
        zo.append(z[0])
        zg.append(z[1])
        st.append(s[0].float())
        act.append(torch.cat([a[:3] / XYZ_SCALE, a[6:7]]).float())
    return torch.stack(zo), torch.stack(zg), torch.stack(st), torch.stack(act)


def train_bc(cache_dir: str | Path, encoder_file: str | Path, out_dir: str | Path, *, steps: int = 4000,
             batch_size: int = 64, lr: float = 1e-3, max_goal_offset: int = 6, val_fraction: float = 0.1,
             seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Trains the head on a latent cache made with `encoder_file`'s encoder (a world model or encoder file);
    writes out_dir/policy.safetensors and out_dir/metrics.json. Returns the metrics."""
    from vjepa_fast.checkpoints import load_safetensors
    from vjepa_fast.data.latent_cache import LatentCache

    enc = load_safetensors(encoder_file).encoder
    if enc is None:
        raise ValueError(f"{encoder_file} holds no encoder")
    cache = LatentCache(cache_dir, encoder=enc)
    train_eps, val_eps = cache.split(val_fraction, seed=seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = GoalBCHead(BCConfig(tokens=cache.tokens, dim=cache.dim))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    val = _batch(cache, val_eps, np.random.default_rng(seed + 1), 512, max_goal_offset)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="train-bc", unit="step")
    t0 = time.time()
    log = []
    for step in range(1, steps + 1):
        zo, zg, st, target = _batch(cache, train_eps, rng, batch_size, max_goal_offset)
        loss = F.smooth_l1_loss(head(zo, zg, st), target, beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step == 1 or step % 500 == 0 or step == steps:
            with torch.no_grad():
                pred = head(*val[:3])
                val_loss = F.smooth_l1_loss(pred, val[3], beta=0.1).item()
                grip_ok = ((pred[:, 3] > 0.1) == (val[3][:, 3] > 0.1)).float().mean().item()
            log.append({"step": step, "train_loss": loss.item(), "val_loss": val_loss, "val_grip_sign_acc": grip_ok})
    if bar is not None:
        bar.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {"cache": str(cache_dir), "encoder_file": str(encoder_file), "steps": steps, "batch_size": batch_size,
            "max_goal_offset": max_goal_offset, "episodes": len(cache)}
    save_bc_policy(out / "policy.safetensors", head, enc, info)
    metrics = {"log": log, "seconds": time.time() - t0, **info}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vjepa-fast train-bc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True, help="latent cache folder (train-ac builds one: OUT_DIR/latent_cache)")
    p.add_argument("--encoder", required=True, help="the .safetensors whose encoder made the cache")
    p.add_argument("--out", required=True, help="output folder (policy.safetensors, metrics.json)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-goal-offset", type=int, default=6, help="goals are frames 1..this many steps ahead")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if a.steps < 1 or a.batch_size < 1 or a.max_goal_offset < 1:
        print("train-bc: error: --steps, --batch-size and --max-goal-offset must be >= 1", file=sys.stderr)
        return 2
    try:
        m = train_bc(a.cache, a.encoder, a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                     max_goal_offset=a.max_goal_offset, seed=a.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"train-bc: error: {exc}", file=sys.stderr)
        return 2
    print(f"train-bc: {Path(a.out) / 'policy.safetensors'}; last: {m['log'][-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
