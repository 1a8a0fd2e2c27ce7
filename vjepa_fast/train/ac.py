"""V-JEPA 2-AC post-training (SPEC section 5): the teacher-forcing + rollout objective, a resumable training
loop over a latent cache, and held-out evaluation.

    vjepa-fast train-ac --config ac.toml            (the CLI calls `main(argv)`)
    torchrun --nproc-per-node 8 -m vjepa_fast.train.ac --config ac.toml

Objective (bit-compatible with Meta's droid training step; checked on the shared fixture):
    h = normalised frame latents [B, T*N, D] (the latent cache stores layer_norm(encoder(frame)), no affine)
    teacher forcing: tf_z = LN(P(h[:, :-N], a[:, :T-1], s[:, :T-1]))     predicts frames 1..T-1
    rollout:         z = [h_0, tf_z_1]; for k = 2..R: z += LN(P(z, a[:, :k], s[:, :k]))[last frame]
    tf_loss = mean|tf_z - h[:, N:]|,  ar_loss = mean|z[:, N:] - h[:, N:(R+1)N]|,  loss = tf_loss + ar_loss
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vjepa_fast.models import ACKVCache, ACPredictorConfig, ActionConditionedPredictor
from vjepa_fast.precision import AMP_CHOICES, amp_dtype
from vjepa_fast.train.optim import param_groups
from vjepa_fast.train.schedule import warmup_constant_cooldown
from vjepa_fast.constants import TARGET_LN_EPS  # re-exported: train.ac.TARGET_LN_EPS

__all__ = [
    "ac_forward",
    "ac_losses",
    "warmup_constant_decay",
    "ACTrainConfig",
    "ACEvalResult",
    "evaluate_ac",
    "train_ac",
    "ac_peak_memory",
    "main",
]

_LOG = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- objective


def _ln(z: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(z, (z.size(-1),), eps=TARGET_LN_EPS)


def _check_batch(latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, n: int) -> int:
    if latents.dim() != 3 or latents.shape[1] % n:
        raise ValueError(f"latents must be [B, T*N, D] with N = {n}, got {tuple(latents.shape)}")
    t = latents.shape[1] // n
    if t < 2:
        raise ValueError(f"need at least 2 frames per clip, got {t}")
    b = latents.shape[0]
    if actions.dim() != 3 or tuple(actions.shape[:2]) != (b, t - 1):
        raise ValueError(f"actions must be [B, T-1, A] = [{b}, {t - 1}, A], got {tuple(actions.shape)}")
    if states.dim() != 3 or tuple(states.shape[:2]) not in ((b, t), (b, t - 1)):
        raise ValueError(f"states must be [B, T, A] = [{b}, {t}, A], got {tuple(states.shape)}")
    return t


def ac_forward(
    predictor: nn.Module, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, rollout_steps: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced and autoregressive predictions of the droid training step.

    latents: [B, T*N, D] normalised frame latents (t-major); actions: [B, T-1, 7]; states: [B, T, 7]
    (the last state is unused). rollout_steps R (clamped to T-1).
    Returns tf_z [B, (T-1)*N, D] (predictions of frames 1..T-1) and ar_z [B, R*N, D] (frames 1..R).
    """
    n = _unwrap(predictor).config.tokens_per_frame
    t = _check_batch(latents, actions, states, n)
    r = max(1, min(int(rollout_steps), t - 1))
    tf_z = _ln(predictor(latents[:, :-n], actions, states[:, : t - 1]))
    z = torch.cat([latents[:, :n], tf_z[:, :n]], dim=1)
    for k in range(2, r + 1):
        nxt = _ln(predictor(z, actions[:, :k], states[:, :k]))[:, -n:]
        z = torch.cat([z, nxt], dim=1)
    return tf_z, z[:, n:]


def ac_losses(
    predictor: nn.Module, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, rollout_steps: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tf_loss, ar_loss): L1 of `ac_forward`'s predictions against the normalised latents (loss exp 1).

    latents [B, T*N, D], actions [B, T-1, 7], states [B, T, 7]; the training loss is their sum.
    """
    n = _unwrap(predictor).config.tokens_per_frame
    tf_z, ar_z = ac_forward(predictor, latents, actions, states, rollout_steps)
    tf_loss = (tf_z - latents[:, n:]).abs().mean()
    ar_loss = (ar_z - latents[:, n : n + ar_z.shape[1]]).abs().mean()
    return tf_loss, ar_loss


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


# ----------------------------------------------------------------------------------------------- schedule


def warmup_constant_decay(
    step: int, *, lr_start: float, lr_peak: float, lr_final: float, warmup_steps: int, decay_steps: int,
    total_steps: int,
) -> float:
    """Linear warmup lr_start -> lr_peak over `warmup_steps`, constant, then linear decay to lr_final over the
    last `decay_steps` of `total_steps` (the V-JEPA 2-AC recipe: 7.5e-5 -> 4.25e-4, constant, -> 0)."""
    return warmup_constant_cooldown(step, lr_start=lr_start, lr_peak=lr_peak, lr_final=lr_final,
                                    warmup_steps=warmup_steps, constant_until=total_steps - decay_steps,
                                    cooldown_steps=decay_steps)


# ----------------------------------------------------------------------------------------------- evaluation


@dataclass
class ACEvalResult:
    """Held-out L1 per horizon k = 1..K (lists indexed k-1).

    teacher_forcing[k]: predict frame k from ground-truth frames 0..k-1 (one step ahead);
    rollout[k]: predict frame k autoregressively from frame 0 only (k steps ahead; rollout[1] = tf[1]);
    copy_1step[k] = |h_{k-1} - h_k| and copy_kstep[k] = |h_0 - h_k|: the "predict no change" baselines.
    """

    teacher_forcing: list[float]
    rollout: list[float]
    copy_1step: list[float]
    copy_kstep: list[float]
    num_clips: int

    def table(self) -> str:
        lines = [f"held-out L1 over {self.num_clips} clips",
                 f"{'k':>3} | {'teacher-forcing':>15} {'copy h(k-1)':>12} {'gain':>6} | "
                 f"{'rollout':>8} {'copy h(0)':>10} {'gain':>6}"]
        for k in range(len(self.rollout)):
            tf, c1, ar, ck = self.teacher_forcing[k], self.copy_1step[k], self.rollout[k], self.copy_kstep[k]
            lines.append(f"{k + 1:>3} | {tf:>15.4f} {c1:>12.4f} {1 - tf / c1:>6.1%} | "
                         f"{ar:>8.4f} {ck:>10.4f} {1 - ar / ck:>6.1%}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def plot(self, path: str | os.PathLike) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ks = list(range(1, len(self.rollout) + 1))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ks, self.teacher_forcing, "o-", label="teacher forcing")
        ax.plot(ks, self.rollout, "s-", label="rollout")
        ax.plot(ks, self.copy_1step, "o--", color="gray", label="copy previous latent")
        ax.plot(ks, self.copy_kstep, "s--", color="black", label="copy first latent")
        ax.set_xlabel("k (steps ahead)")
        ax.set_ylabel("held-out L1")
        ax.set_xticks(ks)
        ax.legend()
        fig.tight_layout()
        p = Path(path)
        fig.savefig(p, dpi=100)
        plt.close(fig)
        return p


@torch.no_grad()
def evaluate_ac(
    predictor: nn.Module,
    dataset: Dataset,
    max_steps: int | None = None,
    *,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
) -> ACEvalResult:
    """Teacher-forcing and rollout L1 for k = 1..K on a clip dataset of latents (e.g. CachedClipDataset over
    held-out episodes), with the copy-the-latent baselines. K = max_steps (default and at most T-1)."""
    model = _unwrap(predictor)
    was_training = model.training
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    n = model.config.tokens_per_frame
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    sums: dict[str, torch.Tensor] | None = None
    count = 0
    k_max = None
    for bi, batch in enumerate(loader):
        if max_batches is not None and bi >= max_batches:
            break
        h = batch["latents"].to(dev)  # [B, T, N, D]
        a, s = batch["actions"].to(dev), batch["states"].to(dev)
        b, t = h.shape[:2]
        k_max = t - 1 if max_steps is None else min(int(max_steps), t - 1)
        if sums is None:
            sums = {name: torch.zeros(k_max, dtype=torch.float64) for name in ("tf", "ar", "c1", "ck")}
        ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with ctx:
            tf = _ln(model(h[:, :k_max].flatten(1, 2), a[:, :k_max], s[:, :k_max]).float()).view(b, k_max, n, -1)
            cache = ACKVCache()
            z = h[:, 0]
            preds = []
            for k in range(k_max):  # the KV cache keeps each rollout step to one new frame of compute
                z = _ln(model(z, a[:, k : k + 1], s[:, k : k + 1], cache=cache).float())
                preds.append(z)
        ar = torch.stack(preds, dim=1)
        target = h[:, 1 : k_max + 1]
        per = lambda x: (x - target).abs().mean(dim=(2, 3)).sum(0).double().cpu()  # noqa: E731
        sums["tf"] += per(tf)
        sums["ar"] += per(ar)
        sums["c1"] += per(h[:, :k_max])
        sums["ck"] += per(h[:, :1].expand(-1, k_max, -1, -1))
        count += b
    model.train(was_training)
    if not count:
        raise ValueError("evaluate_ac: the dataset gave no clip")
    mean = {k: (v / count).tolist() for k, v in sums.items()}
    return ACEvalResult(mean["tf"], mean["ar"], mean["c1"], mean["ck"], count)


# ----------------------------------------------------------------------------------------------- config


@dataclass
class ACTrainConfig:
    """Everything a `train-ac` run needs; load from a JSON or TOML file with `ACTrainConfig.load(path)`.

    predictor: a preset of ACPredictorConfig ("vit_giant", "tiny") plus `predictor_overrides`; its embed_dim
    and token grid must match the cache. init: None (from scratch), Meta's vjepa2-ac-vitg.pt, or a
    vjepa_fast safetensors file holding an AC predictor. Steps count optimizer steps; one step is
    grad_accum micro-batches of batch_size clips per rank.
    """

    cache: str
    out_dir: str = "runs/ac"
    predictor: str = "vit_giant"
    predictor_overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    val_fraction: float = 0.1
    frames_per_clip: int = 8
    frame_step: int = 1
    rollout_steps: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    total_steps: int = 1000
    warmup_steps: int = 100
    decay_steps: int = 100
    lr_start: float = 7.5e-5
    lr_peak: float = 4.25e-4
    lr_final: float = 0.0
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amp: str = "auto"  # "auto" (bf16 autocast where the device does bf16 natively, else fp32), "bf16", "none"
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at the end only
    eval_max_steps: int | None = None
    eval_batches: int | None = None
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {AMP_CHOICES}, got {self.amp!r}")
        for name in ("batch_size", "grad_accum", "total_steps", "frame_step", "rollout_steps", "log_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2, got {self.frames_per_clip}")
        if not hasattr(ACPredictorConfig, self.predictor):
            raise ValueError(f"unknown ACPredictorConfig preset {self.predictor!r} (e.g. 'vit_giant', 'tiny')")
        self.betas = tuple(self.betas)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> ACTrainConfig:
        p = Path(path)
        if p.suffix == ".toml":
            from vjepa_fast.train.config import tomllib

            data = tomllib.loads(p.read_text())
        else:
            data = json.loads(p.read_text())
        data = {**data, **overrides}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown train-ac config keys in {p}: {unknown}")
        return cls(**data)

    def predictor_config(self) -> ACPredictorConfig:
        return getattr(ACPredictorConfig, self.predictor)(**self.predictor_overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d


# ----------------------------------------------------------------------------------------------- data order


class _ClipBatches:
    """Endless per-rank batches of clip indices: epoch e is a permutation seeded by (seed, e), cut into global
    batches of batch_size * world (the tail is dropped); rank r takes its slice. Starting at micro-batch
    `start` (= micro-batches already consumed) resumes the exact order."""

    def __init__(self, num: int, batch_size: int, world: int, rank: int, seed: int, start: int = 0) -> None:
        self.num, self.batch, self.world, self.rank, self.seed, self.start = num, batch_size, world, rank, seed, start
        self.per_epoch = num // (batch_size * world)
        if self.per_epoch < 1:
            raise ValueError(f"{num} training clips < one global batch of {batch_size * world}")

    def __iter__(self):
        c, epoch, perm = self.start, None, None
        while True:
            e, b = divmod(c, self.per_epoch)
            if e != epoch:
                epoch = e
                perm = torch.randperm(self.num, generator=torch.Generator().manual_seed(self.seed * 100_003 + e))
            g = perm[b * self.batch * self.world : (b + 1) * self.batch * self.world]
            yield g[self.rank * self.batch : (self.rank + 1) * self.batch].tolist()
            c += 1


# ----------------------------------------------------------------------------------------------- checkpoints


def _ckpt_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def _list_ckpts(out_dir: Path) -> list[Path]:
    d = _ckpt_dir(out_dir)
    return sorted(d.glob("step_*.pt")) if d.is_dir() else []


def _save_ckpt(out_dir: Path, state: dict[str, Any], step: int, keep: int) -> Path:
    d = _ckpt_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"step_{step:08d}.pt"
    tmp = d / f".{path.name}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in _list_ckpts(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------- training


def _build_predictor(cfg: ACTrainConfig, tokens: int, dim: int) -> ActionConditionedPredictor:
    pcfg = cfg.predictor_config()
    if cfg.init:
        from vjepa_fast.checkpoints import load_official, load_safetensors

        init = Path(cfg.init)
        models = load_safetensors(init) if init.suffix == ".safetensors" else load_official(init)
        if models.kind != "ac" or models.predictor is None:
            raise ValueError(f"init {init} holds no action-conditioned predictor (kind {models.kind!r})")
        model = models.predictor
        if model.config.embed_dim != pcfg.embed_dim or model.config.predictor_embed_dim != pcfg.predictor_embed_dim:
            raise ValueError(f"init {init} predictor config {model.config} differs from the configured {pcfg}")
        # Keep the file's weights but the configured grid / max steps / attention implementation.
        new = ActionConditionedPredictor(pcfg)
        new.load_state_dict(model.state_dict())
        model = new
    else:
        torch.manual_seed(cfg.seed)
        model = ActionConditionedPredictor(pcfg)
    if pcfg.embed_dim != dim or pcfg.tokens_per_frame != tokens:
        raise ValueError(
            f"predictor expects {pcfg.tokens_per_frame} tokens of width {pcfg.embed_dim} per frame, the cache holds "
            f"{tokens} of width {dim}: set predictor_overrides (embed_dim, img_size)"
        )
    if cfg.frames_per_clip > pcfg.max_steps:
        raise ValueError(f"frames_per_clip {cfg.frames_per_clip} > predictor max_steps {pcfg.max_steps}")
    return model


def _plot_curves(log_csv: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [float(r["tf_loss"]) for r in rows], label="teacher forcing")
    ax.plot(steps, [float(r["ar_loss"]) for r in rows], label="rollout")
    ax.set_xlabel("step")
    ax.set_ylabel("L1")
    ax.legend()
    fig.tight_layout()
    tmp = png.with_name(f".{png.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)


def train_ac(cfg: ACTrainConfig, *, max_steps: int | None = None) -> dict[str, Any]:
    """Train (or resume) an AC predictor on a latent cache; returns {"step", "eval", "out_dir", "checkpoint"}.

    max_steps: stop after this many optimizer steps in total (for tests and preemption drills); the LR
    schedule still follows cfg.total_steps. With cfg.resume the run continues from the newest checkpoint in
    out_dir/checkpoints bit-exactly (model, AdamW, step, data position, RNG).
    Launched by torchrun (WORLD_SIZE > 1), it runs DDP (NCCL on GPU, gloo on CPU); rank 0 writes files.
    """
    from vjepa_fast.data.latent_cache import CachedClipDataset, LatentCache

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    out = Path(cfg.out_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    cache = LatentCache(cfg.cache)
    train_eps, val_eps = cache.split(cfg.val_fraction, seed=cfg.seed)
    train_ds = CachedClipDataset(cache, frames_per_clip=cfg.frames_per_clip, frame_step=cfg.frame_step,
                                 episodes=train_eps)
    val_ds = CachedClipDataset(cache, frames_per_clip=cfg.frames_per_clip, frame_step=cfg.frame_step,
                               episodes=val_eps)
    model = _build_predictor(cfg, cache.tokens, cache.dim).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr_start, betas=cfg.betas, eps=cfg.eps)
    step = 0
    ckpts = _list_ckpts(out) if cfg.resume else []
    if ckpts:
        state = torch.load(ckpts[-1], map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        _set_rng_state(state["rng"])
        if is_main:
            _LOG.info("resumed from %s (step %d)", ckpts[-1], step)
    else:
        torch.manual_seed(cfg.seed + 1 + rank)
    train_model: nn.Module = model
    if distributed:
        # static_graph: the unused extrinsics_encoder gets no gradient, the same every step, and the
        # predictor runs twice per step (teacher forcing, then the rollout).
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
        )
    batches = _ClipBatches(len(train_ds), cfg.batch_size, world, rank, cfg.seed, start=step * cfg.grad_accum)
    loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    it = iter(loader)
    train_amp = amp_dtype(cfg.amp, device, what="train-ac autocast")
    amp = torch.autocast(device.type, dtype=train_amp) if train_amp is not None else nullcontext()
    log_csv, eval_csv = out / "log.csv", out / "eval.csv"
    if is_main and not log_csv.exists():
        log_csv.write_text("step,lr,loss,tf_loss,ar_loss,seconds\n")
    end = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
    bar = None
    if is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=step, desc="train-ac", unit="step", dynamic_ncols=True)
    last_ckpt = ckpts[-1] if ckpts else None  # a resumed run that has nothing left to do returns it
    acc = torch.zeros(2, dtype=torch.float64)
    acc_n = 0
    t0 = time.perf_counter()
    model.train()
    while step < end:
        lr = warmup_constant_decay(step, lr_start=cfg.lr_start, lr_peak=cfg.lr_peak, lr_final=cfg.lr_final,
                                   warmup_steps=cfg.warmup_steps, decay_steps=cfg.decay_steps,
                                   total_steps=cfg.total_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        step_losses = torch.zeros(2, device=device)
        for micro in range(cfg.grad_accum):
            batch = next(it)
            z = batch["latents"].to(device, non_blocking=True).flatten(1, 2)
            a = batch["actions"].to(device, non_blocking=True)
            s = batch["states"].to(device, non_blocking=True)
            sync = nullcontext() if (not distributed or micro == cfg.grad_accum - 1) else train_model.no_sync()
            with sync:
                with amp:
                    tf_loss, ar_loss = ac_losses(train_model, z, a, s, cfg.rollout_steps)
                    loss = (tf_loss + ar_loss) / cfg.grad_accum
                loss.backward()
            step_losses += torch.stack([tf_loss.detach(), ar_loss.detach()]).float() / cfg.grad_accum
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if distributed:
            torch.distributed.all_reduce(step_losses, op=torch.distributed.ReduceOp.AVG)
        acc += step_losses.double().cpu()
        acc_n += 1
        if bar is not None:
            bar.update(1)
        if is_main and (step % cfg.log_every == 0 or step == end):
            tf_m, ar_m = (acc / acc_n).tolist()
            with open(log_csv, "a") as f:
                f.write(f"{step},{lr:.6g},{tf_m + ar_m:.6f},{tf_m:.6f},{ar_m:.6f},{time.perf_counter() - t0:.2f}\n")
            if bar is not None:
                bar.set_postfix(tf=f"{tf_m:.4f}", ar=f"{ar_m:.4f}", lr=f"{lr:.2e}")
            acc.zero_()
            acc_n = 0
        if step % cfg.ckpt_every == 0 or step == end:
            if is_main:
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                         "rng": _rng_state(), "config": json.dumps(cfg.to_dict()),
                         "predictor_config": json.dumps(model.config.to_dict())}
                last_ckpt = _save_ckpt(out, state, step, cfg.keep_checkpoints)
                _plot_curves(log_csv, out / "curves.png")
            if distributed:
                torch.distributed.barrier()
        if is_main and cfg.eval_every and step % cfg.eval_every == 0 and step != end:
            _run_eval(model, val_ds, cfg, device, step, eval_csv)
    if bar is not None:
        bar.close()
    result: dict[str, Any] = {"step": step, "out_dir": str(out), "checkpoint": str(last_ckpt) if last_ckpt else None}
    if is_main:
        result["eval"] = _run_eval(model, val_ds, cfg, device, step, eval_csv, final=True)
    if distributed:
        torch.distributed.barrier()
    return result


def _run_eval(model, val_ds, cfg, device, step, eval_csv, final: bool = False) -> ACEvalResult:
    # Evaluation autocasts only on the GPU: on a CPU the k-step L1 is compared against fp32 baselines.
    eval_amp = amp_dtype(cfg.amp, device, what="train-ac autocast") if device.type == "cuda" else None
    res = evaluate_ac(model, val_ds, cfg.eval_max_steps, batch_size=cfg.batch_size, device=device,
                      amp_dtype=eval_amp, max_batches=cfg.eval_batches)
    new = not eval_csv.exists()
    with open(eval_csv, "a") as f:
        if new:
            f.write("step,k,teacher_forcing,rollout,copy_1step,copy_kstep\n")
        for k in range(len(res.rollout)):
            f.write(f"{step},{k + 1},{res.teacher_forcing[k]:.6f},{res.rollout[k]:.6f},"
                    f"{res.copy_1step[k]:.6f},{res.copy_kstep[k]:.6f}\n")
    _LOG.info("step %d\n%s", step, res.table())
    if final:
        out = eval_csv.parent
        (out / "eval_table.txt").write_text(res.table() + "\n")
        res.plot(out / "eval.png")
    return res


# ----------------------------------------------------------------------------------------------- memory


def ac_peak_memory(
    config: ACPredictorConfig | None = None, *, batch: int = 8, frames: int = 8, amp: bool = True,
    device: str = "cuda", rollout_steps: int = 2,
) -> dict[str, float]:
    """Peak GPU memory (GiB) of one training step (forward + backward + AdamW) of `ac_losses` at the given
    shapes; default: the official predictor (ViT-g widths), batch 8, 8 frames of 256 + 2 tokens."""
    if not torch.cuda.is_available():
        raise RuntimeError("ac_peak_memory needs a CUDA device")
    config = config or ACPredictorConfig.vit_giant()
    dev = torch.device(device)
    model = ActionConditionedPredictor(config).to(dev)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1e-4)
    n = config.tokens_per_frame
    z = _ln(torch.randn(batch, frames * n, config.embed_dim, device=dev))
    a = torch.randn(batch, frames - 1, config.action_dim, device=dev)
    s = torch.randn(batch, frames, config.action_dim, device=dev)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()
    for _ in range(2):  # the second step has AdamW state allocated: that is the steady-state peak
        torch.cuda.reset_peak_memory_stats(dev)
        with ctx:
            tf, ar = ac_losses(model, z, a, s, rollout_steps)
        (tf + ar).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)
    return {"peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


# ----------------------------------------------------------------------------------------------- CLI


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """`vjepa-fast train-ac --config FILE [--set key=value ...] [--eval-only]`."""
    parser = argparse.ArgumentParser(prog="vjepa-fast train-ac", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="JSON or TOML file with ACTrainConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (VALUE parsed as JSON when possible)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule unchanged)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides = {}
    for item in args.set:
        if "=" not in item or not re.match(r"^[A-Za-z_]\w*=", item):
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = ACTrainConfig.load(args.config, **overrides)
    result = train_ac(cfg, max_steps=args.max_steps)
    if "eval" in result:
        print(result["eval"].table())
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
