"""Latent cache for V-JEPA 2-AC training: every frame encoded once by the frozen encoder, read by memory map.

Each frame is encoded alone as a 2-frame clip (the frame repeated into one tubelet) and layer-normed without
affine (eps 1e-5), as SPEC section 5 prescribes for both the predictor's input and its targets; the cache
stores these NORMALISED latents. Training then reads latents, not pixels.

On disk (a folder, built in a temporary folder and renamed into place, so a crash never leaves a
half-written cache that looks valid):

    header.json   {"format": "vjepa_fast.latent_cache", "version": 1, "encoder": sha256 of the encoder's
                   config and weights, "encoder_config": {...}, "preprocess": {...}, "frame_stride": int,
                   "dtype": "bfloat16" | "float16", "tokens": N, "dim": D, "num_frames": total,
                   "episodes": [{"key", "offset", "length", "source"}], "skipped": {reason: count}}
    latents.bin   raw [num_frames, N, D] in `dtype` (little-endian); row offset+j = frame j of an episode
    states.npy    float64 [num_frames, 7], the robot state of each cached frame

Cached frame j of an episode is source frame j * frame_stride. For DROID either cache every row
(frame_stride 1) and train with frame_step 4 (every window phase, as the reference), or cache every 4th row
(frame_stride 4, 4x cheaper) and train with frame_step 1 (windows start on multiples of 4 rows only).

Opening a cache with the encoder (or its fingerprint) and the preprocessing you train with refuses a stale
cache with `StaleCacheError`. `FrameEncoder` is the on-the-fly path (same encoding, from pixels, e.g. with
augmentation); cached and on-the-fly latents agree up to the storage dtype's rounding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vjepa_fast.data.episode_clips import clip_starts
from vjepa_fast.data.episodes import episode_fingerprint
from vjepa_fast.data.preprocess import FramePreprocess
from vjepa_fast.data.robot_episode import EpisodeSkipped, RobotEpisode
from vjepa_fast.robotics.pose import actions_from_states
from vjepa_fast.constants import TARGET_LN_EPS  # re-exported: data.latent_cache.TARGET_LN_EPS
from vjepa_fast.fileio import atomic_write_text

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "StaleCacheError",
    "encoder_fingerprint",
    "FrameEncoder",
    "build_latent_cache",
    "ensure_latent_cache",
    "LatentCache",
    "CachedClipDataset",
]

_LOG = logging.getLogger(__name__)

CACHE_FORMAT = "vjepa_fast.latent_cache"
CACHE_VERSION = 1

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class StaleCacheError(ValueError):
    """The cache was made with another encoder, preprocessing or layout than the one asked for."""


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 (hex) of an encoder's config (if it has one) and every tensor of its state dict (name, dtype,
    shape, bytes). ViT-g (1B parameters) hashes in a few seconds."""
    h = hashlib.sha256()
    config = getattr(encoder, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FrameEncoder:
    """Frozen-encoder frame latents: frames [..., 3, H, W] (preprocessed) -> [..., N, D], layer-normed
    without affine (eps 1e-5). Each frame is encoded alone as a one-tubelet clip, in batches.

    amp_dtype: autocast dtype (torch.bfloat16 on GPU is the reference's choice; None = the encoder's dtype).
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        batch_size: int = 64,
        amp_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder = encoder.eval().requires_grad_(False)
        self.batch_size, self.amp_dtype = batch_size, amp_dtype
        self.device = torch.device(device) if device is not None else next(encoder.parameters()).device

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() < 4 or frames.shape[-3] != 3:
            raise ValueError(f"frames must be [..., 3, H, W], got {getattr(frames, 'shape', type(frames))}")
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        outs = []
        for i in range(0, flat.shape[0], self.batch_size):
            x = flat[i : i + self.batch_size].to(self.device, non_blocking=True)
            ctx = (
                torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()
            )
            with ctx:
                z = self.encoder(x)  # a 4-D image batch becomes one tubelet by repetition
            outs.append(F.layer_norm(z.float(), (z.size(-1),), eps=TARGET_LN_EPS))
        out = torch.cat(outs)
        return out.view(*lead, *out.shape[1:])


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))


def _to_storage(z: torch.Tensor, dtype: str) -> np.ndarray:
    """float [M, N, D] -> numpy uint16 bits of bf16 / fp16 (numpy has no bf16)."""
    return z.to(_DTYPES[dtype]).view(torch.int16).cpu().numpy().view(np.uint16)


def build_latent_cache(
    out_dir: str | os.PathLike,
    sources: Iterable[str | RobotEpisode],
    encoder: nn.Module,
    *,
    preprocess: FramePreprocess,
    reader: Callable[[str], RobotEpisode] | None = None,
    frame_stride: int = 1,
    dtype: str = "bfloat16",
    batch_size: int = 64,
    chunk_frames: int = 128,
    amp_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    min_frames: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    extra_header: dict[str, Any] | None = None,
) -> LatentCache:
    """Encode every (frame_stride-th) frame of every episode once and store the normalised latents.

    sources: episode paths (read with `reader`, e.g. `read_episode` or `read_droid_episode`) or RobotEpisodes.
    Episodes that fail to read or decode, or have fewer than `min_frames` cached frames, are skipped and
    counted (header "skipped"). chunk_frames: frames decoded at once (bounds memory for 720p video).
    extra_header: more keys for header.json (e.g. what `ensure_latent_cache` checks freshness with).
    Returns the opened LatentCache.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if not isinstance(preprocess, FramePreprocess):
        raise TypeError("preprocess must be a FramePreprocess (it is recorded in the cache header)")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"latent cache {out} exists (overwrite=False)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fe = FrameEncoder(encoder, batch_size=batch_size, amp_dtype=amp_dtype, device=device)
    episodes: list[dict[str, Any]] = []
    states: list[np.ndarray] = []
    skipped: Counter = Counter()
    offset, tokens, dim = 0, None, None
    items = list(sources)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="encoding episodes", unit="ep")
    try:
        with open(tmp / "latents.bin", "wb") as f:
            for src in items:
                try:
                    ep = src if isinstance(src, RobotEpisode) else reader(str(src)) if reader else None
                    if ep is None:
                        raise TypeError("sources are paths: pass reader= (e.g. read_episode)")
                    rows = list(range(0, ep.num_frames, frame_stride))
                    if len(rows) < min_frames:
                        raise EpisodeSkipped("too_short", ep.key, f"{len(rows)} cached frames < {min_frames}")
                    parts = []
                    for c in range(0, len(rows), chunk_frames):
                        z = fe(preprocess(ep.frames(rows[c : c + chunk_frames])))
                        parts.append(_to_storage(z, dtype))
                except EpisodeSkipped as e:
                    skipped[e.reason] += 1
                    _LOG.warning("skipping episode %s", e)
                    continue
                block = np.concatenate(parts)
                if tokens is None:
                    tokens, dim = int(block.shape[1]), int(block.shape[2])
                elif block.shape[1:] != (tokens, dim):
                    raise ValueError(f"episode {ep.key} gives latents {block.shape[1:]}, others {(tokens, dim)}")
                f.write(np.ascontiguousarray(block).tobytes())
                states.append(ep.states[rows].numpy().astype(np.float64))
                episodes.append({"key": ep.key, "offset": offset, "length": len(rows), "source": ep.source})
                offset += len(rows)
        if not episodes:
            raise ValueError(f"no episode could be cached (skipped: {dict(skipped)})")
        np.save(tmp / "states.npy", np.concatenate(states))
        enc_cfg = getattr(encoder, "config", None)
        header = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "encoder": encoder_fingerprint(encoder),
            "encoder_config": enc_cfg.to_dict() if hasattr(enc_cfg, "to_dict") else None,
            "preprocess": preprocess.to_dict(),
            "frame_stride": frame_stride,
            "dtype": dtype,
            "amp_dtype": None if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
            "tokens": tokens,
            "dim": dim,
            "num_frames": offset,
            "normalized": True,
            "episodes": episodes,
            "skipped": dict(skipped),
            **(extra_header or {}),
        }
        _write_json(tmp / "header.json", header)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            shutil.rmtree(old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _LOG.info("latent cache %s: %d episodes, %d frames, skipped %s", out, len(episodes), offset, dict(skipped))
    return LatentCache(out)


def ensure_latent_cache(
    out_dir: str | os.PathLike,
    episodes: Sequence[str],
    encoder: nn.Module,
    *,
    preprocess: FramePreprocess,
    reader: Callable[[str], RobotEpisode],
    frame_stride: int = 1,
    dtype: str = "bfloat16",
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> tuple[LatentCache, bool]:
    """The latent cache of `episodes` (paths) at `out_dir`: reused when fresh, else (re)built.

    Fresh means: the same episode files in the same order (`episode_fingerprint`: paths, sizes and
    modification times of the files holding their states), the same encoder weights and config, the same
    preprocessing, frame_stride and storage dtype. Returns (cache, rebuilt).
    """
    stamp = {"episodes_sha256": episode_fingerprint(episodes), "episode_sources": len(episodes)}
    out = Path(out_dir)
    fingerprint = encoder_fingerprint(encoder)
    if (out / "header.json").is_file():
        try:
            header = json.loads((out / "header.json").read_text())
        except ValueError:
            header = {}
        why = None
        if header.get("format") != CACHE_FORMAT or header.get("version") != CACHE_VERSION:
            why = "another cache format"
        elif header.get("episodes_sha256") != stamp["episodes_sha256"]:
            why = "the episodes changed (added, removed or re-recorded)"
        elif header.get("encoder") != fingerprint:
            why = "another encoder"
        elif header.get("preprocess") != preprocess.to_dict():
            why = "other preprocessing"
        elif header.get("frame_stride") != frame_stride or header.get("dtype") != dtype:
            why = "another frame_stride or storage dtype"
        if why is None:
            _LOG.info("latent cache %s is fresh (same episodes, encoder and preprocessing): reused", out)
            return LatentCache(out, fingerprint=fingerprint, preprocess=preprocess, frame_stride=frame_stride), False
        _LOG.info("latent cache %s is stale (%s): rebuilding it", out, why)
    else:
        _LOG.info("no latent cache at %s: encoding %d episodes once", out, len(episodes))
    cache = build_latent_cache(out, episodes, encoder, preprocess=preprocess, reader=reader,
                               frame_stride=frame_stride, dtype=dtype, batch_size=batch_size, amp_dtype=amp_dtype,
                               device=device, overwrite=True, progress=progress, extra_header=stamp)
    return cache, True


class LatentCache:
    """A built cache, memory-mapped read-only.

    encoder / fingerprint, preprocess, frame_stride: what you will train with; any mismatch with the header
    raises StaleCacheError (say which field and both values). Leave them None to skip a check.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        encoder: nn.Module | None = None,
        fingerprint: str | None = None,
        preprocess: FramePreprocess | None = None,
        frame_stride: int | None = None,
    ) -> None:
        self.path = Path(path)
        hp = self.path / "header.json"
        if not hp.is_file():
            raise FileNotFoundError(f"no latent cache at {self.path} (header.json missing: not built, or interrupted)")
        self.header = json.loads(hp.read_text())
        if self.header.get("format") != CACHE_FORMAT or self.header.get("version") != CACHE_VERSION:
            raise StaleCacheError(
                f"{self.path}: format {self.header.get('format')!r} v{self.header.get('version')!r}, "
                f"expected {CACHE_FORMAT} v{CACHE_VERSION}; rebuild the cache"
            )
        if encoder is not None:
            fingerprint = encoder_fingerprint(encoder)
        if fingerprint is not None and fingerprint != self.header["encoder"]:
            raise StaleCacheError(
                f"{self.path} was encoded by another encoder (cache {self.header['encoder'][:12]}..., "
                f"yours {fingerprint[:12]}...); rebuild it with build_latent_cache(..., overwrite=True)"
            )
        if preprocess is not None and preprocess.to_dict() != self.header["preprocess"]:
            raise StaleCacheError(
                f"{self.path} used preprocessing {self.header['preprocess']}, you asked for {preprocess.to_dict()}"
            )
        if frame_stride is not None and frame_stride != self.header["frame_stride"]:
            raise StaleCacheError(f"{self.path} has frame_stride {self.header['frame_stride']}, you asked for {frame_stride}")
        self.tokens, self.dim = int(self.header["tokens"]), int(self.header["dim"])
        self.num_frames = int(self.header["num_frames"])
        self.dtype = _DTYPES[self.header["dtype"]]
        self.episodes: list[dict[str, Any]] = self.header["episodes"]
        self.keys = [e["key"] for e in self.episodes]
        self._latents: np.memmap | None = None
        self._states: np.ndarray | None = None

    def _open(self) -> None:
        # Opened lazily so the object pickles cheaply into DataLoader workers (each maps the file itself).
        if self._latents is None:
            self._latents = np.memmap(
                self.path / "latents.bin", dtype=np.uint16, mode="r", shape=(self.num_frames, self.tokens, self.dim)
            )
            self._states = np.load(self.path / "states.npy", mmap_mode="r")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_latents": None, "_states": None}

    def __len__(self) -> int:
        return len(self.episodes)

    def episode_length(self, episode: int) -> int:
        return int(self.episodes[episode]["length"])

    def latents(self, episode: int, frames: Sequence[int]) -> torch.Tensor:
        """[len(frames), N, D] in the storage dtype (bf16/fp16) of cached frames of one episode."""
        self._open()
        e = self.episodes[episode]
        idx = np.asarray(frames, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= e["length"]):
            raise IndexError(f"frame {idx.max()} out of range for episode {episode} of {e['length']} cached frames")
        bits = np.ascontiguousarray(self._latents[e["offset"] + idx])
        return torch.from_numpy(bits.view(np.int16)).view(self.dtype)

    def states(self, episode: int, frames: Sequence[int] | None = None) -> torch.Tensor:
        """float64 [len, 7] robot states of cached frames of one episode (all if frames is None)."""
        self._open()
        e = self.episodes[episode]
        rows = np.arange(e["length"]) if frames is None else np.asarray(frames, dtype=np.int64)
        return torch.from_numpy(np.array(self._states[e["offset"] + rows]))

    def split(self, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
        """(train, held-out) episode indices: a seeded shuffle of the episodes, at least one held out."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(self) < 2:
            raise ValueError("need at least 2 episodes to hold some out")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = min(len(self) - 1, max(1, round(val_fraction * len(self))))
        return sorted(perm[n_val:]), sorted(perm[:n_val])


class CachedClipDataset(Dataset):
    """Clips of cached latents: every window of `frames_per_clip` cached frames at `frame_step`.

    Sample: {"latents": float32 [F, N, D] (normalised), "states": float32 [F, 7], "actions": float32 [F-1, 7]
    (actions_from_states, computed in float64), "episode": int, "start": int}.
    episodes: the cache's episode indices to use (a train/held-out split); None = all.
    """

    def __init__(
        self,
        cache: LatentCache,
        *,
        frames_per_clip: int = 8,
        frame_step: int = 1,
        episodes: Sequence[int] | None = None,
    ) -> None:
        if frames_per_clip < 2:
            raise ValueError(f"frames_per_clip must be >= 2, got {frames_per_clip}")
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.cache, self.frames_per_clip, self.frame_step = cache, frames_per_clip, frame_step
        self.episode_ids = list(range(len(cache))) if episodes is None else [int(e) for e in episodes]
        counts = [clip_starts(cache.episode_length(e), frames_per_clip, frame_step) for e in self.episode_ids]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            raise ValueError(
                f"no cached episode holds a clip of {frames_per_clip} frames at step {frame_step} "
                f"({(frames_per_clip - 1) * frame_step + 1} cached frames)"
            )

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def window(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)}")
        i = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.episode_ids[i], int(index - self._offsets[i])

    def __getitem__(self, index: int) -> dict[str, Any]:
        ep, start = self.window(int(index))
        idx = [start + k * self.frame_step for k in range(self.frames_per_clip)]
        states = self.cache.states(ep, idx)
        return {
            "latents": self.cache.latents(ep, idx).float(),
            "states": states.float(),
            "actions": actions_from_states(states).float(),
            "episode": ep,
            "start": start,
        }
