"""Optional feature cache: the frozen encoder's tokens of every probe video (all eval views), encoded once.

Layout: `<cache>/<split>/meta.json` (the fingerprint of what the tokens depend on: encoder file, CSV rows, clip
sampling) and `<cache>/<split>/{index:07d}.pt` (tokens [V, S * N, D] in the cache dtype). Each file is written
to a temporary name and renamed, so a killed build resumes where it stopped (files present are kept); a
changed fingerprint rebuilds the split. Under DDP each rank encodes every world-th video, then all wait.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from vjepa_fast.fileio import atomic_write_text
from vjepa_fast.precision import DTYPES
from vjepa_fast.probes.data import ProbeVideoDataset, encode_views

__all__ = ["FeatureCache", "ensure_feature_cache", "fingerprint"]

_LOG = logging.getLogger(__name__)


def fingerprint(encoder_spec: str, dataset: ProbeVideoDataset) -> str:
    """What the cached tokens depend on: the encoder (spec, and size + mtime of its file) and the sampling."""
    enc: dict[str, Any] = {"spec": encoder_spec}
    if not encoder_spec.startswith("random:") and Path(encoder_spec).is_file():
        st = Path(encoder_spec).stat()
        enc.update(size=st.st_size, mtime=int(st.st_mtime))
    d = dataset
    data = {"rows": [(s.path, s.label, s.action_start_s) for s in d.samples], "task": d.task,
            "frames_per_clip": d.frames_per_clip, "frame_step": d.frame_step, "fps": d.fps,
            "anticipation_s": d.anticipation_s, "num_segments": d.num_segments, "num_views": d.num_views,
            "crop": d.crop}
    return hashlib.sha256(json.dumps({"encoder": enc, "data": data}, sort_keys=True).encode()).hexdigest()[:16]


class FeatureCache(Dataset):
    """Cached tokens of one split: item i -> {"tokens": [V, S*N, D] float32, "label", "index"}."""

    def __init__(self, folder: str | os.PathLike, labels: list[int]) -> None:
        self.dir = Path(folder)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        tokens = torch.load(self.dir / f"{i:07d}.pt", weights_only=True).float()
        return {"tokens": tokens, "label": self.labels[i], "index": i}


def ensure_feature_cache(folder: str | os.PathLike, dataset: ProbeVideoDataset, encoder: nn.Module, *,
                         encoder_spec: str, device: torch.device, amp_dtype: torch.dtype | None, dtype: str,
                         rank: int = 0, world: int = 1, batch_size: int = 4, num_workers: int = 0,
                         progress: bool = True) -> FeatureCache:
    """Builds (or completes, or reuses) the cache of `dataset` (its eval views: train=False) in `folder`."""
    folder = Path(folder)
    fp = fingerprint(encoder_spec, dataset)
    meta_file = folder / "meta.json"
    if rank == 0:
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("fingerprint") != fp:
            _LOG.info("feature cache %s is stale (encoder or data changed): rebuilding", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_file, json.dumps({"fingerprint": fp, "encoder": encoder_spec, "dtype": dtype,
                                                 "videos": len(dataset)}, indent=1))
    if world > 1:
        torch.distributed.barrier()
    todo = [i for i in range(rank, len(dataset), world) if not (folder / f"{i:07d}.pt").is_file()]
    if todo:
        loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers)
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"features {folder.name}", unit="video", dynamic_ncols=True)
        for batch in loader:
            tokens = encode_views(encoder, batch["frames"], device=device, amp_dtype=amp_dtype)
            for j, i in enumerate(batch["index"].tolist()):
                out = folder / f"{i:07d}.pt"
                tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
                torch.save(tokens[j].to(DTYPES[dtype]).cpu().clone(), tmp)
                os.replace(tmp, out)
            if bar is not None:
                bar.update(len(batch["index"]))
        if bar is not None:
            bar.close()
    if world > 1:
        torch.distributed.barrier()
    return FeatureCache(folder, [s.label for s in dataset.samples])
