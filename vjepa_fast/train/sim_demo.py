"""The simulator demo world model: a frozen small encoder (random weights, fixed seed: no pretrained encoder
is available offline) + a tiny AC predictor trained on episodes recorded by `robot/collect.py`, exported as
ONE safetensors file (encoder + predictor) that `robot/run_mpc.py --predictor FILE` loads.

    python -m vjepa_fast.train.sim_demo --episodes data/sim_random --out runs/sim_demo \\
        --export robot/assets/sim_demo_world_model.safetensors

Steps: (1) optionally probe candidate encoders (how well the latent L1 distance between two frames ranks
their end-effector distance: the planner's energy is exactly that L1 to the goal latent); (2) encode every
frame once into a latent cache, with the SAME preprocessing the planner uses at run time
(`data.transforms.preprocess_image`: resize the short side to crop*256/224, centre crop); (3) `train_ac`
(teacher forcing + 2-step rollout) on a train split, held-out evaluation vs the copy baselines;
(4) export encoder + predictor.
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

from vjepa_fast.data.episodes import FramePreprocess, find_episodes, read_episode
from torch import nn

from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor, EncoderConfig, VideoEncoder

_LOG = logging.getLogger("sim_demo")

# Encoder candidates: (preset, overrides). Random weights from a fixed seed; the tiny ViT at 128 px gives
# 8x8 tokens of width 96.
ENCODERS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny64": ("tiny", {}),
    "tiny128": ("tiny", {"img_size": 128}),
    "cpu_small128": ("cpu_small", {}),
}


@dataclass(frozen=True)
class PlannerPreprocess(FramePreprocess):
    """The run-time (planner) preprocessing, `preprocess_image`: short side -> size*256/224, centre crop,
    ImageNet normalisation. A FramePreprocess so the latent cache records it (and refuses a mismatch)."""

    crop_aspect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": "eval_resize_center_crop"}

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        from vjepa_fast.data.transforms import preprocess_frames

        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        return preprocess_frames(frames, self.size).permute(1, 0, 2, 3).contiguous()  # [F, 3, s, s]


def make_encoder(name: str, seed: int = 0) -> VideoEncoder:
    """A candidate of ENCODERS (random weights from `seed`), or the encoder in a .safetensors file (e.g. the
    `encoder.safetensors` that `vjepa-fast pretrain` writes)."""
    if name.endswith(".safetensors"):
        from vjepa_fast.checkpoints import load_safetensors

        if not Path(name).is_file():
            raise ValueError(f"encoder file {name} does not exist")
        enc = load_safetensors(name).encoder
        if enc is None:
            raise ValueError(f"{name} holds no encoder")
        return enc.eval()
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)} or give a .safetensors file")
    preset, overrides = ENCODERS[name]
    torch.manual_seed(seed)
    return VideoEncoder(getattr(EncoderConfig, preset)(**overrides)).eval()


def _img_size(enc: VideoEncoder) -> int:
    img = enc.config.img_size
    return img if isinstance(img, int) else int(img[0])


@torch.no_grad()
def probe_encoder(encoder: VideoEncoder, episodes: list[str], max_frames: int = 240, seed: int = 0) -> dict[str, float]:
    """Spearman rank correlation between latent L1 distance and end-effector xyz distance over all pairs of
    up to `max_frames` frames (higher = the planner's energy better reflects how far the arm is)."""
    from scipy.stats import spearmanr

    from vjepa_fast.data.latent_cache import FrameEncoder

    pre = PlannerPreprocess(size=_img_size(encoder))
    fe = FrameEncoder(encoder, batch_size=32)
    zs, xyz = [], []
    for path in episodes:
        ep = read_episode(path)
        zs.append(fe(pre(ep.frames(list(range(ep.num_frames))))).flatten(1))
        xyz.append(ep.states[:, :3].double())
    z, p = torch.cat(zs), torch.cat(xyz)
    if len(z) > max_frames:
        keep = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:max_frames]
        z, p = z[keep], p[keep]
    iu = torch.triu_indices(len(z), len(z), 1)
    dz = torch.cdist(z, z, p=1)[iu[0], iu[1]] / z.shape[1]
    dp = torch.cdist(p, p)[iu[0], iu[1]]
    near = dp < 0.1  # what the planner sees: goals a few steps away
    return {"spearman_all": float(spearmanr(dz, dp).statistic),
            "spearman_within_10cm": float(spearmanr(dz[near], dp[near]).statistic),
            "pairs": int(len(dz))}


@torch.no_grad()
def action_inference(predictor: ActionConditionedPredictor, dataset: Any, step: float = 0.025,
                     max_transitions: int | None = 600) -> dict[str, float]:
    """What the planner needs from the predictor: for each held-out transition (z_t, z_t+1), the xyz action on
    a 5x5x5 grid (+-2 * step) whose one-step prediction is closest (L1) to z_t+1, compared with the true
    action. Returns the per-axis sign accuracy (over |true| > 0.02 m; chance 0.5) and the mean error (m).

    dataset: CachedClipDataset with frames_per_clip=2 (held-out episodes). max_transitions: at most this many,
    evenly spaced over the dataset (None: all).
    """
    import itertools

    import torch.nn.functional as F

    predictor = predictor.eval()
    grid = torch.tensor(list(itertools.product([-2 * step, -step, 0.0, step, 2 * step], repeat=3)))
    hit, cnt, err = torch.zeros(3), torch.zeros(3), []
    n = len(dataset)
    picks = range(n) if max_transitions is None or n <= max_transitions else \
        sorted({int(i) for i in np.linspace(0, n - 1, max_transitions)})
    for i in picks:
        b = dataset[i]
        z0, z1, true = b["latents"][0], b["latents"][1], b["actions"][0]
        a = torch.zeros(len(grid), 1, 7)
        a[:, 0, :3] = grid
        a[:, 0, 3:] = true[3:]  # rotation / gripper as executed (held)
        s = b["states"][:1].expand(len(grid), 1, 7)
        pred = predictor(z0.expand(len(grid), -1, -1), a, s)
        e = (F.layer_norm(pred, (pred.shape[-1],), eps=1e-5) - z1).abs().mean((1, 2))
        best = grid[e.argmin()]
        mask = true[:3].abs() > 0.02
        hit += ((best.sign() == true[:3].sign()) & mask).float()
        cnt += mask.float()
        err.append(float((best - true[:3]).norm()))
    acc = (hit / cnt.clamp(min=1)).tolist()
    return {"sign_accuracy_x": acc[0], "sign_accuracy_y": acc[1], "sign_accuracy_z": acc[2],
            "mean_error_m": float(np.mean(err)), "transitions": len(err)}


@torch.no_grad()
def identity_init(predictor: nn.Module, seed: int = 0) -> nn.Module:
    """Start the predictor at the copy baseline: output(frame t) = input latent of frame t, whatever the action.

    predictor_embed = W (orthonormal columns, orthogonal to the all-ones vector, so the LayerNorm before
    predictor_proj only rescales W z), predictor_proj = W^T, and every block's residual branch (attn.proj,
    mlp.fc2) zero: each block is the identity. Training then only has to learn how the action changes the
    latent. From a random init, a tiny predictor on 624 frames was still at the per-token mean (held-out L1
    0.13 vs the copy baseline 0.075) after 550 steps: it had not learnt to pass the frame through.
    """
    emb, proj = predictor.predictor_embed, predictor.predictor_proj
    width, dim = emb.weight.shape
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(width, dim, generator=g, dtype=torch.float64)
    ones = torch.ones(width, 1, dtype=torch.float64) / width**0.5
    a -= ones @ (ones.T @ a)
    q, _ = torch.linalg.qr(a)  # [width, dim], orthonormal columns in the complement of ones
    emb.weight.copy_(q.float())
    emb.bias.zero_()
    proj.weight.copy_(q.T.float())
    proj.bias.zero_()
    for blk in predictor.predictor_blocks:
        for lin in (blk.attn.proj, blk.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
    return predictor


@dataclass
class DemoConfig:
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
    init: str = "identity"  # "identity" (start at the copy baseline) or "random"
    resume: bool = True  # reuse a fresh latent cache and continue training from the newest checkpoint
    device: str = "auto"  # "auto": cuda when there is one, else cpu


def episode_cameras(episodes: list[str]) -> list[str]:
    """The distinct cameras the episodes were recorded with (meta.json "camera"), sorted."""
    cams = set()
    for e in episodes:
        meta = json.loads((Path(e) / "meta.json").read_text())
        cams.add(str(meta.get("camera", "")))
    return sorted(cams)


def episode_box(episodes: list[str]) -> list[list[float]] | None:
    """[[x, y, z] low, [x, y, z] high]: the box the episodes' moves stayed in (their meta extra box_lo /
    box_hi, as robot/collect.py and robot/generate.py record it; the union over episodes), or None."""
    lo, hi = None, None
    for e in episodes:
        extra = json.loads((Path(e) / "meta.json").read_text()).get("extra", {})
        if "box_lo" not in extra or "box_hi" not in extra:
            return None
        a, b = np.asarray(extra["box_lo"], dtype=np.float64), np.asarray(extra["box_hi"], dtype=np.float64)
        lo = a if lo is None else np.minimum(lo, a)
        hi = b if hi is None else np.maximum(hi, b)
    return None if lo is None else [lo.tolist(), hi.tolist()]


def _cache_stamp(episodes: list[str], encoder: VideoEncoder, size: int) -> dict[str, Any]:
    """What the latent cache depends on: the episodes (paths and sizes of their state files) and the encoder
    (its config and a checksum of its weights) and the preprocessing size."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(encoder.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    eps = hashlib.sha256()
    for e in episodes:
        meta = Path(e) / "meta.json"
        eps.update(f"{e}:{meta.stat().st_size}".encode())
    return {"episodes": len(episodes), "episodes_sha256": eps.hexdigest(), "encoder_sha256": h.hexdigest(),
            "encoder_config": encoder.config.to_dict(), "size": size}


def run(cfg: DemoConfig, *, probe: list[str] | None = None, export: str | None = None) -> dict[str, Any]:
    """Probe (optional), cache, train, evaluate, export. Returns a summary dict (also out/summary.json)."""
    from vjepa_fast.checkpoints import save_safetensors
    from vjepa_fast.data.latent_cache import build_latent_cache
    from vjepa_fast.train.ac import ACTrainConfig, train_ac

    torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    eps = find_episodes(cfg.episodes)
    if not eps:
        raise ValueError(f"no episode under {cfg.episodes}")
    summary: dict[str, Any] = {"config": asdict(cfg), "episodes": len(eps)}
    if probe:
        summary["probe"] = {}
        for name in probe:
            t0 = time.perf_counter()
            summary["probe"][name] = {**probe_encoder(make_encoder(name, cfg.encoder_seed), eps),
                                      "seconds": round(time.perf_counter() - t0, 1)}
            _LOG.info("encoder probe %s: %s", name, summary["probe"][name])
    encoder = make_encoder(cfg.encoder, cfg.encoder_seed)
    size = _img_size(encoder)
    cameras = episode_cameras(eps)
    summary["cameras"] = cameras
    t0 = time.perf_counter()
    stamp = _cache_stamp(eps, encoder, size)
    stamp_file = out / "cache_stamp.json"
    fresh = (cfg.resume and (out / "cache").is_dir() and stamp_file.is_file()
             and json.loads(stamp_file.read_text()) == stamp)
    if fresh:
        from vjepa_fast.data.latent_cache import LatentCache

        cache = LatentCache(out / "cache")
        _LOG.info("latent cache %s is fresh (same episodes and encoder): reused", out / "cache")
    else:
        if stamp_file.exists():
            stamp_file.unlink()
        cache = build_latent_cache(out / "cache", eps, encoder, preprocess=PlannerPreprocess(size=size),
                                   reader=read_episode, dtype="float16", batch_size=32, overwrite=True, progress=True)
        stamp_file.write_text(json.dumps(stamp, sort_keys=True))
    summary["cache"] = {"frames": int(sum(cache.episode_length(e) for e in range(len(cache)))),
                        "tokens": cache.tokens, "dim": cache.dim, "seconds": round(time.perf_counter() - t0, 1),
                        "reused": bool(fresh)}
    num_frames = 2 * max(8, cfg.frames_per_clip)  # time steps = num_frames / tubelet (2)
    overrides = {"embed_dim": encoder.config.embed_dim, "img_size": size, "num_frames": num_frames,
                 "depth": cfg.predictor_depth, "predictor_embed_dim": cfg.predictor_width,
                 "num_heads": cfg.predictor_heads}
    init_file = None
    if cfg.init == "identity":
        torch.manual_seed(cfg.seed)
        init_file = str(out / "init_identity.safetensors")
        save_safetensors(init_file, identity_init(ActionConditionedPredictor(ACPredictorConfig.tiny(**overrides)),
                                                  cfg.seed))
    elif cfg.init != "random":
        raise ValueError(f"init must be 'identity' or 'random', got {cfg.init!r}")
    tcfg = ACTrainConfig(cache=str(out / "cache"), out_dir=str(out / "ac"), predictor="tiny",
                         predictor_overrides=overrides, init=init_file, val_fraction=cfg.val_fraction,
                         frames_per_clip=cfg.frames_per_clip, rollout_steps=cfg.rollout_steps,
                         batch_size=cfg.batch_size, total_steps=cfg.total_steps,
                         warmup_steps=max(1, cfg.total_steps // 10), decay_steps=max(1, cfg.total_steps // 3),
                         lr_start=cfg.lr_peak / 10, lr_peak=cfg.lr_peak, amp="none", seed=cfg.seed, device=device,
                         log_every=50, ckpt_every=max(1, min(250, cfg.total_steps)), keep_checkpoints=1,
                         resume=cfg.resume, progress=True)
    t0 = time.perf_counter()
    res = train_ac(tcfg)
    summary["train_seconds"] = round(time.perf_counter() - t0, 1)
    ev = res["eval"]
    summary["heldout"] = ev.to_dict()
    _LOG.info("held-out evaluation (%d clips)\n%s", ev.num_clips if hasattr(ev, "num_clips") else -1, ev.table())
    state = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)  # the export is on the CPU
    predictor = ActionConditionedPredictor(tcfg.predictor_config())
    predictor.load_state_dict(state["model"])
    from vjepa_fast.data.latent_cache import CachedClipDataset

    _, val_eps = cache.split(cfg.val_fraction, seed=cfg.seed)
    summary["action_inference"] = action_inference(predictor, CachedClipDataset(cache, frames_per_clip=2,
                                                                                episodes=val_eps))
    _LOG.info("held-out action inference: %s", summary["action_inference"])
    if export:
        info: dict[str, Any] = {"recipe": "vjepa_fast.train.sim_demo", "encoder": cfg.encoder,
                                "episodes": len(eps), "steps": cfg.total_steps}
        sims = [c.partition(":")[2] for c in cameras if c.startswith("sim:")]
        if len(sims) == 1 and len(cameras) == 1:
            info["camera"] = sims[0]  # robot/run_mpc.py --sim and sim-eval use it when no camera is given
        box = episode_box(eps)
        if box is not None:
            info["data_box"] = box  # robot/run_mpc.py warns about goals outside it
        path = save_safetensors(export, {"encoder": encoder, "predictor": predictor.eval()}, info=info)
        summary["export"] = {"path": str(path), "bytes": path.stat().st_size}
        _LOG.info("exported %s (%.2f MB)", path, path.stat().st_size / 1e6)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", required=True,
                   help="folder of episodes from robot/collect.py or robot/generate.py")
    p.add_argument("--out", default="runs/sim_demo")
    p.add_argument("--encoder", default="tiny64", metavar="NAME|FILE",
                   help=f"frozen encoder: a random-weights candidate {sorted(ENCODERS)} or a .safetensors file "
                        "holding an encoder (e.g. vjepa-fast pretrain's encoder.safetensors)")
    p.add_argument("--encoder-seed", type=int, default=0)
    p.add_argument("--probe", nargs="*", default=None, choices=sorted(ENCODERS),
                   help="encoders to probe first (latent distance vs end-effector distance)")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--frames-per-clip", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--init", default="identity", choices=["identity", "random"],
                   help="predictor start: the copy baseline (identity) or random")
    p.add_argument("--export", default=None, help="write encoder + predictor here (.safetensors)")
    p.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu or cuda")
    p.add_argument("--no-resume", action="store_true",
                   help="rebuild the latent cache and train from scratch even if --out holds a run")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = DemoConfig(episodes=a.episodes, out=a.out, encoder=a.encoder, encoder_seed=a.encoder_seed,
                     predictor_depth=a.depth, predictor_width=a.width, frames_per_clip=a.frames_per_clip,
                     batch_size=a.batch_size, total_steps=a.steps, lr_peak=a.lr, threads=a.threads, init=a.init,
                     resume=not a.no_resume, device=a.device)
    s = run(cfg, probe=a.probe, export=a.export)
    print(json.dumps({k: v for k, v in s.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
