"""What a train-ac run is built from: the frozen encoder and the latent cache of its episodes, the clip
sampler (epochs seeded for exact resumption, per-source weights), and the predictor (random, the identity
init, or a checkpoint). vjepa_fast.train.ac runs the loop on them and re-exports the public names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from vjepa_fast.models import ActionConditionedPredictor
from vjepa_fast.precision import amp_dtype
from vjepa_fast.train.config import ACTrainConfig

__all__ = ["identity_init", "load_frozen_encoder", "prepare_latent_cache", "check_clips_fit"]

_LOG = logging.getLogger("vjepa_fast.train.ac")


# ----------------------------------------------------------------------------------------------- init


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
    if dim > width - 1:
        raise ValueError(f"identity init needs predictor_embed_dim > embed_dim, got {width} <= {dim}")
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


def _build_predictor(cfg: ACTrainConfig, tokens: int, dim: int) -> ActionConditionedPredictor:
    pcfg = cfg.predictor_config(tokens, dim)
    if cfg.init and cfg.init != "identity":
        from vjepa_fast.checkpoints import load_official, load_safetensors

        init = Path(cfg.init)
        if not init.is_file():
            raise FileNotFoundError(f"init {init} does not exist (init: '', 'identity' or a checkpoint file)")
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
        if cfg.init == "identity":
            identity_init(model, cfg.seed)
    if pcfg.embed_dim != dim or pcfg.tokens_per_frame != tokens:
        raise ValueError(
            f"predictor expects {pcfg.tokens_per_frame} tokens of width {pcfg.embed_dim} per frame, the cache holds "
            f"{tokens} of width {dim}: set predictor_overrides (embed_dim, img_size)"
        )
    if cfg.frames_per_clip > pcfg.max_steps:
        raise ValueError(f"frames_per_clip {cfg.frames_per_clip} > predictor max_steps {pcfg.max_steps}")
    return model


# ----------------------------------------------------------------------------------------------- data


def load_frozen_encoder(spec: str) -> nn.Module:
    """The frozen encoder `data.encoder` names: a .safetensors file (its encoder), Meta's .pt, or
    random:PRESET[@IMG] (random weights, seed 0)."""
    from vjepa_fast.diagnostics import encoder_from_spec

    try:
        return encoder_from_spec(f"encoder={spec}")[1].eval()
    except ValueError as exc:
        raise ValueError(f"data.encoder {spec!r}: {exc}") from exc


def _preprocess(cfg: ACTrainConfig, encoder: nn.Module):
    from vjepa_fast.data.episodes import FramePreprocess, PlannerPreprocess

    img = encoder.config.img_size
    size = img if isinstance(img, int) else int(img[0])
    return PlannerPreprocess(size=size) if cfg.data.preprocess == "planner" else FramePreprocess.droid(size)


def _source_episodes(cfg: ACTrainConfig) -> list[list[str]]:
    from vjepa_fast.data.episodes import expand_episode_source

    per_source = []
    for src in cfg.data.sources:
        eps = expand_episode_source(src)
        if not eps:
            raise ValueError(f"data source {src} holds no episode (our meta.json folders or DROID trajectory.h5)")
        per_source.append(eps)
    return per_source


def prepare_latent_cache(cfg: ACTrainConfig, *, is_main: bool = True, distributed: bool = False,
                         device: torch.device | None = None):
    """The LatentCache a run trains on: with `data.sources`, built (rank 0) when missing or stale and reused
    when fresh; without, the existing `cache`. Returns (cache, per-source episode lists or None)."""
    from vjepa_fast.data.episodes import read_robot_episode
    from vjepa_fast.data.latent_cache import LatentCache, ensure_latent_cache

    if not cfg.data.sources:
        if not cfg.cache:
            raise ValueError("set data.sources (episode folders to train on) or cache (a built latent cache)")
        return LatentCache(cfg.cache), None
    per_source = _source_episodes(cfg)
    episodes = [e for eps in per_source for e in eps]
    if len(set(episodes)) != len(episodes):
        raise ValueError("data.sources name an episode more than once: use data.weights to weight a source")
    if is_main:
        encoder = load_frozen_encoder(cfg.data.encoder)
        enc_device = device if device is not None and device.type == "cuda" else None
        enc_amp = amp_dtype(cfg.amp, device, what="latent-cache encoding") if enc_device is not None else None
        ensure_latent_cache(cfg.cache_dir, episodes, encoder, preprocess=_preprocess(cfg, encoder),
                            reader=read_robot_episode, frame_stride=cfg.data.frame_stride, dtype=cfg.data.cache_dtype,
                            batch_size=cfg.data.encode_batch_size, amp_dtype=enc_amp, device=enc_device,
                            progress=cfg.progress)
    if distributed:
        torch.distributed.barrier()  # the other ranks wait for rank 0's cache
    return LatentCache(cfg.cache_dir), per_source


def _clip_weights(cfg: ACTrainConfig, dataset: Dataset, cache, per_source: list[list[str]] | None):
    """Per-clip sampling weights [len(dataset)] so each source gets its data.weights share of the clips, or
    None (uniform over clips, every clip once per epoch) when no weights are set."""
    if not cfg.data.weights or per_source is None:
        return None
    group = {str(Path(e)): i for i, eps in enumerate(per_source) for e in eps}
    src_of_ep = [group.get(str(Path(k)), -1) for k in cache.keys]
    clip_src = torch.tensor([src_of_ep[dataset.window(i)[0]] for i in range(len(dataset))])
    w = torch.tensor(cfg.data.weights, dtype=torch.float64)
    counts = torch.bincount(clip_src.clamp(min=0), minlength=len(w)).double()
    present = counts > 0
    if not bool((w[present] > 0).any()):
        raise ValueError(f"data.weights {cfg.data.weights} give no weight to any source with training clips")
    per_clip = torch.where(clip_src >= 0, (w / counts.clamp(min=1))[clip_src.clamp(min=0)], torch.zeros(()))
    return per_clip / per_clip.sum()


class _ClipBatches:
    """Endless per-rank batches of clip indices: epoch e is a permutation seeded by (seed, e) (or, with
    per-clip `weights`, as many clips drawn with replacement by weight), cut into global batches of
    batch_size * world (the tail is dropped); rank r takes its slice. Starting at micro-batch `start`
    (= micro-batches already consumed) resumes the exact order."""

    def __init__(self, num: int, batch_size: int, world: int, rank: int, seed: int, start: int = 0,
                 weights: torch.Tensor | None = None) -> None:
        self.num, self.batch, self.world, self.rank, self.seed, self.start = num, batch_size, world, rank, seed, start
        self.weights = weights
        self.per_epoch = num // (batch_size * world)
        if self.per_epoch < 1:
            raise ValueError(f"{num} training clips < one global batch of {batch_size * world}")

    def _epoch(self, e: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + e)
        if self.weights is None:
            return torch.randperm(self.num, generator=g)
        return torch.multinomial(self.weights, self.num, replacement=True, generator=g)

    def __iter__(self):
        c, epoch, perm = self.start, None, None
        while True:
            e, b = divmod(c, self.per_epoch)
            if e != epoch:
                epoch = e
                perm = self._epoch(e)
            g = perm[b * self.batch * self.world : (b + 1) * self.batch * self.world]
            yield g[self.rank * self.batch : (self.rank + 1) * self.batch].tolist()
            c += 1


def check_clips_fit(cache: Any, cfg: ACTrainConfig, train_eps: Sequence[int], val_eps: Sequence[int]) -> None:
    """Refuse, with the way out, a cache whose episodes are too short for one training clip.

    A clip is `frames_per_clip` cached frames `frame_step` rows apart; cached row j is recorded frame
    j * data.frame_stride, and an episode of M moves records M + 1 frames.
    """
    rows_needed = (cfg.frames_per_clip - 1) * cfg.frame_step + 1
    stride = int(cache.header.get("frame_stride", cfg.data.frame_stride))
    moves_needed = (rows_needed - 1) * stride
    lengths = {e: cache.episode_length(e) for e in range(len(cache))}
    longest = max(lengths.values(), default=0)
    short = sum(n < rows_needed for n in lengths.values())
    for name, eps in (("training", train_eps), ("held-out", val_eps)):
        if eps and all(lengths[e] < rows_needed for e in eps):
            raise ValueError(
                f"no {name} episode is long enough for one clip: frames_per_clip={cfg.frames_per_clip} at "
                f"frame_step={cfg.frame_step} needs {rows_needed} cached frames, i.e. episodes of at least "
                f"{moves_needed} moves (recorded frames - 1) with data.frame_stride={stride}; the longest of the "
                f"{len(cache)} cached episodes has {longest} cached frames ({short} are too short). Record longer "
                f"episodes (robot/simtools/generate.py or robot/collect.py --steps {moves_needed} or more), or lower "
                f"frames_per_clip (e.g. frames_per_clip={max(2, longest)} on the command line; at least "
                f"rollout_steps + 1 = {cfg.rollout_steps + 1} trains the rollout loss fully) or frame_step.")
    if short:
        _LOG.warning("%d of %d cached episodes are shorter than one clip (%d cached frames) and are not used",
                       short, len(cache), rows_needed)
