"""V-JEPA 2 self-supervised pretraining (SPEC sections 3-4), from one CPU process to many GPU nodes.

    vjepa-fast pretrain --preset tiny_cpu data.sources='["clips/"]'
    torchrun --nproc_per_node 8 -m vjepa_fast.cli pretrain --config vitl.toml

A step: the target encoder (EMA of the context encoder, no gradient) encodes the full clip and its output is
layer-normed; per mask config the context encoder sees the context tokens, the predictor predicts the target
tokens, L1 against the targets; average over configs; AdamW; then the fused EMA update of the target. The
run is a pure function of (config, seed): data keys, augmentation, masks and the LR are functions of the
step, so a resumed run continues bit for bit.

`objective = "vjepa2_1"` trains a V-JEPA 2.1 encoder with its objective instead: the targets are the target
encoder's four taps, each layer-normed; the loss adds lambda x L1 on the predictor's context outputs
(optionally distance-weighted, lambda ramped); with `v21.image_sources`, each step also trains on a batch of
single images (1-frame clips, the image path), weighted `v21.image_ratio` against the video loss as Meta's
image ranks are in its gradient average.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vjepa_fast.data.video import VideoClipDataset, WeightedMixtureSampler, count_skips, load_manifest
from vjepa_fast.masks import MultiBlockMaskGenerator
from vjepa_fast.models import EncoderConfig, MaskedPredictor, PredictorConfig, VideoEncoder
from vjepa_fast.models.layers import Block
from vjepa_fast.ops import ema_update_
from vjepa_fast.precision import amp_dtype
from vjepa_fast.train.checkpointing import CheckpointManager, full_state_dict
from vjepa_fast.train.config import PretrainConfig, to_dict
from vjepa_fast.train.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    init_distributed,
    local_tensor,
    shard_like,
    wrap_model,
)
from vjepa_fast.train.metrics import MetricsLogger, plot_metrics
from vjepa_fast.train.objective import (
    context_lambda,
    hierarchical_targets,
    jepa21_loss,
    jepa_loss,
    normalized_targets,
)
from vjepa_fast.train.optim import param_groups
from vjepa_fast.train.schedule import warmup_constant_cooldown

_LOG = logging.getLogger(__name__)
METRICS = ("loss", "loss_short", "loss_long", "lr", "target_std", "clips_per_s", "step_s", "skipped")


class JEPAStudent(nn.Module):
    """The trained pair (context encoder + predictor) as one module, so DDP/FSDP2 wrap it once."""

    def __init__(self, encoder: VideoEncoder, predictor: MaskedPredictor) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, clips: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                targets: torch.Tensor, v21: dict[str, Any] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """v21: None for V-JEPA 2's loss; else the keyword arguments of `jepa21_loss` (context_weight, ...)."""
        if v21 is None:
            return jepa_loss(self.encoder, self.predictor, targets, clips, pairs)
        total, _, _, per_config = jepa21_loss(self.encoder, self.predictor, targets, clips, pairs, **v21)
        return total, per_config


def model_configs(cfg: PretrainConfig, num_frames: int, crop: int) -> tuple[EncoderConfig, PredictorConfig]:
    if cfg.objective == "vjepa2_1":
        name = "vjepa2_1_tiny" if cfg.model == "tiny" else f"vjepa2_1_{cfg.model}_384"
        enc = getattr(EncoderConfig, name)(img_size=crop, num_frames=num_frames, attn_impl=cfg.attn_impl)
        if cfg.model == "tiny":
            return enc, PredictorConfig.vjepa2_1_tiny(img_size=crop, num_frames=num_frames, attn_impl=cfg.attn_impl)
        # The 4-level predictor of the hub's g/G (24 blocks, 384 wide, 8 mask tokens), for every size: the
        # released B/L predictors are distillation heads, not pretraining ones.
        return enc, PredictorConfig.for_encoder(enc, version="vjepa2_1", num_mask_tokens=8, depth=24, num_levels=4)
    enc = getattr(EncoderConfig, cfg.model)(img_size=crop, num_frames=num_frames, attn_impl=cfg.attn_impl)
    if cfg.model == "tiny":
        pred = PredictorConfig.tiny(img_size=crop, num_frames=num_frames, attn_impl=cfg.attn_impl)
    elif cfg.model == "small":
        pred = PredictorConfig.small(img_size=crop, num_frames=num_frames, attn_impl=cfg.attn_impl)
    else:
        pred = PredictorConfig.for_encoder(enc)
    return enc, pred


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # per step run in this call
    target_std: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    out_dir: Path | None = None


class Pretrainer:
    def __init__(self, cfg: PretrainConfig, ctx: DistContext | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.ctx = ctx or init_distributed(cfg.parallel)
        world, accum = self.ctx.world_size, cfg.grad_accum
        if cfg.global_batch_size % (world * accum):
            raise ValueError(f"global_batch_size {cfg.global_batch_size} must be divisible by processes x "
                             f"grad_accum = {world} x {accum}")
        self.micro_batch = cfg.global_batch_size // (world * accum)
        self.out_dir = Path(cfg.out_dir)
        self.sources, self.weights = self._sources()

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        enc_cfg, pred_cfg = model_configs(cfg, cfg.data.num_frames, cfg.data.crop_size)
        encoder, predictor = VideoEncoder(enc_cfg), MaskedPredictor(pred_cfg)
        target = copy.deepcopy(encoder)
        if cfg.init_from:
            self._load_official(cfg.init_from, encoder, target, predictor)
        self.encoder, self.predictor = encoder.to(self.ctx.device), predictor.to(self.ctx.device)
        self.target = target.to(self.ctx.device).requires_grad_(False)
        student = JEPAStudent(self.encoder, self.predictor)
        if cfg.activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
                CheckpointImpl,
                apply_activation_checkpointing,
                checkpoint_wrapper,
            )

            apply_activation_checkpointing(
                student, checkpoint_wrapper_fn=lambda m: checkpoint_wrapper(m, CheckpointImpl.NO_REENTRANT),
                check_fn=lambda m: isinstance(m, Block))
        self.student_raw = student
        self.student = wrap_model(student, self.ctx, (Block,))
        shard_like(self.target, self.ctx, (Block,))
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(param_groups(student, o.weight_decay), lr=o.lr_start,
                                           betas=(o.beta1, o.beta2), eps=o.eps)
        self.ckpt = CheckpointManager(self.out_dir / "checkpoints", self.ctx, keep_last=cfg.keep_last)
        self.metrics = MetricsLogger(self.out_dir, METRICS, tensorboard=cfg.tensorboard, enabled=self.ctx.is_main)
        self.step = 0

    # ------------------------------------------------------------------------------------------ set-up
    def _sources(self) -> tuple[list[str], list[float]]:
        d = self.cfg.data
        if d.manifest:
            specs = load_manifest(d.manifest)
            return [s.path for s in specs], [s.weight for s in specs]
        if not d.sources:
            raise ValueError("no training data: set data.sources (files, folders or list files) or data.manifest")
        return list(d.sources), list(d.weights) or [1.0] * len(d.sources)

    def _load_official(self, path: str, encoder: nn.Module, target: nn.Module, predictor: nn.Module) -> None:
        from vjepa_fast.checkpoints import load_official

        kw = {"encoder_config": encoder.config, "predictor_config": predictor.config}
        ctx_models = load_official(path, encoder_key="encoder", **kw)
        tgt_models = load_official(path, encoder_key="target_encoder", **kw)
        if ctx_models.predictor is None:
            raise ValueError(f"{path} has no masked predictor: it cannot continue pretraining")
        encoder.load_state_dict(ctx_models.encoder.state_dict())
        target.load_state_dict(tgt_models.encoder.state_dict())
        predictor.load_state_dict(ctx_models.predictor.state_dict())
        _LOG.info("initialised from official checkpoint %s", path)

    def phase(self, step: int) -> tuple[str, int, int, int]:
        """(name, first step, num_frames, crop) of the phase that `step` belongs to."""
        if step < self.cfg.steps:
            return "main", 0, self.cfg.data.num_frames, self.cfg.data.crop_size
        c = self.cfg.cooldown
        return "cooldown", self.cfg.steps, c.num_frames, c.crop_size

    def lr(self, step: int) -> float:
        o = self.cfg.optim
        return warmup_constant_cooldown(step, lr_start=o.lr_start, lr_peak=o.lr_peak, lr_final=o.lr_final,
                                        warmup_steps=o.warmup_steps, constant_until=self.cfg.steps,
                                        cooldown_steps=self.cfg.cooldown.steps)

    def _loader(self, step: int) -> tuple[DataLoader, MultiBlockMaskGenerator, WeightedMixtureSampler]:
        name, first, frames, crop = self.phase(step)
        d, cfg = self.cfg.data, self.cfg
        phase_seed = cfg.seed + (0 if name == "main" else 1_000_003)
        dataset = VideoClipDataset(self._specs(),
                                   num_frames=frames, fps=d.fps, crop_size=crop, train=True, seed=phase_seed)
        steps_per_epoch = max(1, math.ceil(len(dataset) / cfg.global_batch_size))
        sampler = WeightedMixtureSampler.for_dataset(
            dataset, steps_per_epoch * cfg.global_batch_size, seed=phase_seed, rank=self.ctx.rank,
            world_size=self.ctx.world_size)
        # The data position is a function of the step: each step consumes global_batch_size draws.
        done = step - first
        per_rank = cfg.global_batch_size // self.ctx.world_size
        sampler.load_state_dict({"epoch": done // steps_per_epoch, "index": (done % steps_per_epoch) * per_rank})
        loader = DataLoader(dataset, batch_size=self.micro_batch, sampler=sampler, num_workers=d.num_workers,
                            pin_memory=d.pin_memory and self.ctx.device.type == "cuda", drop_last=True,
                            persistent_workers=False)
        grid = (frames // 2, crop // 16, crop // 16)
        masks = MultiBlockMaskGenerator(grid, seed=phase_seed)
        if self.predictor.config.num_frames != frames or self.predictor.config.grid_hw != (crop // 16, crop // 16):
            # Progressive resolution: the predictor reads token indices on the new grid.
            self.predictor.config = self.predictor.config.replace(num_frames=frames, img_size=crop)
        return loader, masks, sampler

    def _image_loader(self, step: int) -> tuple[DataLoader, MultiBlockMaskGenerator, int] | None:
        """objective "vjepa2_1" with v21.image_sources: 1-frame clips of the image crop, and their masks on the
        (1, crop/16, crop/16) grid; None otherwise. Positions are functions of the step, as for the videos."""
        from vjepa_fast.data.video import SourceSpec

        v, cfg = self.cfg.v21, self.cfg
        if cfg.objective != "vjepa2_1" or not v.image_sources:
            return None
        crop = v.image_crop_size or cfg.data.crop_size
        world, accum = self.ctx.world_size, cfg.grad_accum
        total = v.image_batch_size or cfg.global_batch_size
        if total % (world * accum):
            raise ValueError(f"v21.image_batch_size {total} must be divisible by processes x grad_accum = "
                             f"{world} x {accum}")
        seed = cfg.seed + 2_000_003
        weights = list(v.image_weights) or [1.0] * len(v.image_sources)
        dataset = VideoClipDataset([SourceSpec(p, w) for p, w in zip(v.image_sources, weights)], num_frames=1,
                                   fps=None, crop_size=crop, train=True, seed=seed)
        steps_per_epoch = max(1, math.ceil(len(dataset) / total))
        sampler = WeightedMixtureSampler.for_dataset(dataset, steps_per_epoch * total, seed=seed,
                                                     rank=self.ctx.rank, world_size=world)
        sampler.load_state_dict({"epoch": step // steps_per_epoch,
                                 "index": (step % steps_per_epoch) * (total // world)})
        micro = total // (world * accum)
        loader = DataLoader(dataset, batch_size=micro, sampler=sampler, num_workers=cfg.data.num_workers,
                            pin_memory=cfg.data.pin_memory and self.ctx.device.type == "cuda", drop_last=True)
        return loader, MultiBlockMaskGenerator((1, crop // 16, crop // 16), seed=seed), micro

    def _specs(self) -> list[Any]:
        from vjepa_fast.data.video import SourceSpec

        return [SourceSpec(p, w) for p, w in zip(self.sources, self.weights)]

    # ----------------------------------------------------------------------------------------- resume
    def resume(self) -> bool:
        latest = self.ckpt.latest()
        if latest is None:
            return False
        meta = self.ckpt.load(latest, self.student_raw, self.target, self.optimizer)
        self.step = int(meta["step"])
        self.metrics.truncate_after(self.step)
        if self.ctx.is_main:
            _LOG.info("resumed from %s at step %d", latest, self.step)
        return True

    def save(self) -> Path:
        meta = {"world_size": self.ctx.world_size, "config": to_dict(self.cfg), "phase": self.phase(self.step)[0]}
        return self.ckpt.save(self.step, self.student_raw, self.target, self.optimizer, meta)

    # ------------------------------------------------------------------------------------------- train
    def _v21_kwargs(self, clips: torch.Tensor) -> dict[str, Any] | None:
        """jepa21_loss's settings for a batch (image or video) at the current step; None for V-JEPA 2."""
        if self.cfg.objective != "vjepa2_1":
            return None
        v = self.cfg.v21
        image = clips.shape[2] == 1
        lam = context_lambda(self.step, v.lambda_image if image else v.lambda_video, progressive=v.lambda_progressive,
                             start=v.lambda_start, end=v.lambda_end)
        g = clips.shape[-1] // self.encoder.config.patch_size  # Meta reads distances on crop // patch
        return {"context_weight": lam, "weight_distance": v.weight_distance, "grid_hw": (g, g)}

    def train_step(self, micro_batches: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]],
                   lr: float, ema_backend: str = "auto",
                   image_batches: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] | None = None
                   ) -> torch.Tensor:
        """One optimizer step over `grad_accum` micro-batches, then the EMA update; advances `self.step`.

        micro_batches: per micro-batch (clips [b, C, T, H, W], per mask config (context [b, Kc], target [b, Kt])).
        image_batches: objective "vjepa2_1" only: micro-batches of 1-frame clips [b, C, 1, H, W] (the image
            path); the step's loss is (1 - r) x video + r x image with r = v21.image_ratio.
        Returns [loss, loss_short, loss_long, target_std] of the video batches, averaged over micro-batches
        and processes (with the V-JEPA 2.1 objective loss_short / loss_long are the per-mask-config totals).
        """
        cfg, ctx = self.cfg, self.ctx
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        amp = amp_dtype(cfg.amp, ctx.device, what="pretraining autocast")
        autocast = torch.autocast(ctx.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None)
        sums = torch.zeros(4, device=ctx.device)
        image_batches = image_batches or []
        if image_batches and cfg.objective != "vjepa2_1":
            raise ValueError("image_batches need objective = 'vjepa2_1'")
        ratio = cfg.v21.image_ratio if image_batches else 0.0
        # (batch, multiplier, divisor, is_image): V-JEPA 2 keeps its exact loss / len(micro_batches).
        batches = [(b, 1.0 - ratio, len(micro_batches), False) for b in micro_batches]
        batches += [(b, ratio, len(image_batches), True) for b in image_batches]
        for j, ((clips, pairs), mult, div, is_image) in enumerate(batches):
            clips = clips.to(ctx.device, non_blocking=True)
            pairs = [(c.to(ctx.device), t.to(ctx.device)) for c, t in pairs]
            v21 = self._v21_kwargs(clips)
            with autocast, self._predictor_grid(clips):
                if v21 is None:
                    targets, h = normalized_targets(self.target, clips, return_features=True)
                else:
                    targets = h = hierarchical_targets(self.target, clips)
                if ctx.mode == "fsdp":
                    # FSDP2 keeps a root module's parameters gathered after forward (for backward); the
                    # target has no backward, so free them and keep its shards aligned for the EMA.
                    self.target.reshard()
                loss, per_config = self.student(clips, pairs, targets, v21)
            scaled = loss * mult / div
            if ctx.mode == "ddp" and j < len(batches) - 1:
                with self.student.no_sync():
                    scaled.backward()
            else:
                scaled.backward()
            if is_image:
                continue
            per = [x.detach().float() for x in per_config[:2]] + [loss.detach().float()] * (2 - len(per_config))
            # Collapse monitor: per-channel std across samples of the clip-averaged target features.
            spread = h.float().mean(1).std(0, unbiased=False).mean() if h.size(0) > 1 else h.new_zeros(())
            sums += torch.stack([loss.detach().float(), *per, spread.float()])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update_([local_tensor(p) for p in self.target.parameters()],
                    [local_tensor(p) for p in self.encoder.parameters()], cfg.optim.ema_momentum,
                    backend=ema_backend)
        self.step += 1
        return all_reduce_mean(sums / len(micro_batches), ctx)

    @contextlib.contextmanager
    def _predictor_grid(self, clips: torch.Tensor) -> Iterator[None]:
        """The predictor reads token indices on its configured square grid: for an image batch, the image
        crop's grid of one time step (Meta builds its image ranks' predictor at the image crop)."""
        pcfg = self.predictor.config
        if clips.shape[2] != 1 or clips.shape[-1] == pcfg.grid_hw[0] * pcfg.patch_size:
            yield
            return
        self.predictor.config = pcfg.replace(img_size=clips.shape[-1])
        try:
            yield
        finally:
            self.predictor.config = pcfg

    def train(self, max_steps: int | None = None, progress: bool = True) -> TrainResult:
        """Runs until the end of the schedule (or `max_steps` more steps); saves on the way and at the end."""
        cfg, ctx = self.cfg, self.ctx
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        result = TrainResult(step=self.step, out_dir=self.out_dir)
        skipped: Counter[str] = Counter()
        bar = None
        if progress and ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, desc=f"pretrain {cfg.model}", unit="step",
                       dynamic_ncols=True)
        loader = masks = it = None
        phase_name = None
        images = self._image_loader(self.step)
        img_it = iter(images[0]) if images is not None else None
        try:
            while self.step < end:
                name = self.phase(self.step)[0]
                if name != phase_name:
                    loader, masks, _ = self._loader(self.step)
                    it, phase_name = iter(loader), name
                t0 = time.perf_counter()
                lr = self.lr(self.step)
                micro = []
                for j in range(cfg.grad_accum):
                    try:
                        batch = next(it)
                    except StopIteration:  # the sampler moved on to the next epoch
                        it = iter(loader)
                        batch = next(it)
                    skipped.update(count_skips(batch))
                    world_mb = self.micro_batch * ctx.world_size
                    pairs = [(p.context[ctx.rank::ctx.world_size], p.target[ctx.rank::ctx.world_size])
                             for p in masks.for_step(world_mb, self.step * cfg.grad_accum + j)]
                    micro.append((batch["video"], pairs))
                image_micro = []
                if images is not None:
                    img_loader, img_masks, img_mb = images
                    for j in range(cfg.grad_accum):
                        try:
                            batch = next(img_it)
                        except StopIteration:
                            img_it = iter(img_loader)
                            batch = next(img_it)
                        skipped.update(count_skips(batch))
                        world_mb = img_mb * ctx.world_size
                        pairs = [(p.context[ctx.rank::ctx.world_size], p.target[ctx.rank::ctx.world_size])
                                 for p in img_masks.for_step(world_mb, self.step * cfg.grad_accum + j)]
                        image_micro.append((batch["video"], pairs))
                stats = self.train_step(micro, lr, image_batches=image_micro)
                loss_v, short_v, long_v, std_v = stats.tolist()
                dt = time.perf_counter() - t0
                result.losses.append(loss_v)
                result.target_std.append(std_v)
                if not math.isfinite(loss_v):
                    raise FloatingPointError(f"loss is {loss_v} at step {self.step}; last checkpoint is kept")
                if ctx.is_main and (self.step % cfg.log_every == 0 or self.step == end or self.step == 1):
                    self.metrics.log(self.step, {"loss": loss_v, "loss_short": short_v, "loss_long": long_v,
                                                 "lr": lr, "target_std": std_v, "step_s": dt,
                                                 "clips_per_s": cfg.global_batch_size / dt,
                                                 "skipped": sum(skipped.values())})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_v:.4f}", clips_s=f"{cfg.global_batch_size / dt:.1f}",
                                    lr=f"{lr:.2e}", std=f"{std_v:.3f}")
                if self.step % cfg.save_every == 0 or self.step == end:
                    self.save()
        except KeyboardInterrupt:
            if not ctx.distributed and self.step > 0:
                _LOG.warning("interrupted: saving step %d before exiting", self.step)
                self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
        result.step = self.step
        result.skipped = dict(skipped)
        if sum(skipped.values()) and ctx.is_main:
            _LOG.warning("skipped unreadable or too-short files %d times: %s", sum(skipped.values()), dict(skipped))
        self.finish()
        return result

    def finish(self) -> None:
        """Exports the target encoder (safetensors) and plots the curves."""
        from vjepa_fast.checkpoints import save_safetensors

        state = full_state_dict(self.target)
        if self.ctx.is_main:
            encoder = VideoEncoder(self.encoder.config)
            encoder.load_state_dict(state)
            save_safetensors(self.out_dir / "encoder.safetensors", encoder)
            plot_metrics(self.metrics.path, self.out_dir / "loss.png", ["loss", "target_std", "lr"],
                         title=f"V-JEPA 2 pretraining ({self.cfg.model})")
        barrier(self.ctx)


def pretrain(cfg: PretrainConfig, *, resume: bool = True, max_steps: int | None = None,
             progress: bool = True) -> TrainResult:
    trainer = Pretrainer(cfg)
    if resume:
        trainer.resume()
    try:
        return trainer.train(max_steps=max_steps, progress=progress)
    finally:
        trainer.metrics.close()
