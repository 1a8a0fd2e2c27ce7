"""Atomic, resumable training checkpoints through torch.distributed.checkpoint (DCP), for both trainers
(pretraining: student + target encoder + AdamW; train-ac: the AC predictor + AdamW).

One code path for 1 process, DDP and FSDP2: every rank writes its shards of the model and optimizer state
into `step_XXXXXXXX.tmp/`; after a barrier rank 0 renames it to `step_XXXXXXXX/` and updates `latest`
(write-then-rename), so a kill at any moment leaves the previous checkpoint intact and never a partial one
under a final name. DCP reshards on load, so a run resumes on a different number of processes.
Per-rank RNG states go beside the shards (tensors and plain numbers only, so they load with
`weights_only=True`); `meta.json` holds the step, config and data position.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from vjepa_fast.train.distributed import DistContext, barrier
from vjepa_fast.fileio import atomic_write_text

_LOG = logging.getLogger(__name__)
_PREFIX = "step_"


def rng_state() -> dict[str, Any]:
    """torch / numpy / python / CUDA RNG states as tensors and plain numbers (safe to `torch.load` with
    weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    if isinstance(n, dict):
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
    else:  # checkpoints written before the RNG state was made of tensors
        np.random.set_state(n)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_rng_file(path: Path) -> dict[str, Any] | None:
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - an older file with a pickled numpy state: refuse to unpickle it
        _LOG.warning("%s is an older RNG file that only loads unsafely (pickled numpy state): RNG streams "
                     "restart", path)
        return None


@contextmanager
def _quiet_single_process(ctx: DistContext):
    """DCP warns on every save and load without a process group that it assumes one process: it is one."""
    with warnings.catch_warnings():
        if not ctx.distributed:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


class CheckpointManager:
    """Saves and restores {student (encoder+predictor), target encoder, optimizer} plus run state."""

    def __init__(self, directory: str | Path, ctx: DistContext, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.dir = Path(directory)
        self.ctx = ctx
        self.keep_last = keep_last
        if ctx.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
        barrier(ctx)

    # ------------------------------------------------------------------------------------------- query
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (unfinished `.tmp` folders are not checkpoints)."""
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)
                 and not p.name.endswith(".tmp") and (p / "meta.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))

    def latest(self) -> Path | None:
        pointer = self.dir / "latest"
        if pointer.is_file():
            candidate = self.dir / pointer.read_text().strip()
            if (candidate / "meta.json").is_file():
                return candidate
        found = self.checkpoints()
        return found[-1] if found else None

    # -------------------------------------------------------------------------------------------- save
    def save(self, step: int, student: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer,
             meta: dict[str, Any]) -> Path:
        """Pretraining: the student (encoder + predictor, which `optimizer` updates), the target encoder."""
        return self.save_state(step, {"student": student, "target": target}, optimizer, meta, trained="student")

    def save_state(self, step: int, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer,
                   meta: dict[str, Any], *, trained: str) -> Path:
        """Saves `modules` (name -> module; `optimizer` updates modules[trained]) and the run state as
        `step_XXXXXXXX/`. Every rank must call it."""
        name = f"{_PREFIX}{step:08d}"
        final, tmp = self.dir / name, self.dir / (name + ".tmp")
        if self.ctx.is_main and tmp.exists():
            shutil.rmtree(tmp)  # left over from a run killed while saving
        barrier(self.ctx)
        model_sd, optim_sd = get_state_dict(modules[trained], optimizer)
        state = {trained: model_sd, "optim": optim_sd}
        state.update({k: get_model_state_dict(m) for k, m in modules.items() if k != trained})
        with _quiet_single_process(self.ctx):
            dcp.save(state, checkpoint_id=str(tmp))
        torch.save(rng_state(), tmp / f"rng_rank{self.ctx.rank}.pt")
        barrier(self.ctx)
        if self.ctx.is_main:
            atomic_write_text(tmp / "meta.json", json.dumps({"step": step, **meta}, indent=1, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            atomic_write_text(self.dir / "latest", name)
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.ctx)
        _LOG.info("saved checkpoint %s", final)
        return final

    # -------------------------------------------------------------------------------------------- load
    def load(self, path: Path, student: nn.Module, target: nn.Module,
             optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Pretraining: restores student, target and optimizer in place; returns meta.json."""
        return self.load_state(path, {"student": student, "target": target}, optimizer, trained="student")

    def load_state(self, path: Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, *,
                   trained: str) -> dict[str, Any]:
        """Restores the states saved by `save_state` in place; returns meta.json. RNG is restored when this
        rank saved one on the same number of processes."""
        meta = json.loads((path / "meta.json").read_text())
        model_sd, optim_sd = get_state_dict(modules[trained], optimizer)
        # Parameters that never received a gradient (e.g. mask tokens of unused indices) have no Adam state
        # in the file; the fresh template has one for every parameter. Model keys stay strict.
        saved = set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)
        for fqn in [k for k in optim_sd.get("state", {}) if f"optim.state.{k}.step" not in saved]:
            del optim_sd["state"][fqn]
        state = {trained: model_sd, "optim": optim_sd}
        state.update({k: get_model_state_dict(m) for k, m in modules.items() if k != trained})
        with _quiet_single_process(self.ctx):
            dcp.load(state, checkpoint_id=str(path))
        set_model_state_dict(modules[trained], state[trained])
        set_optimizer_state_dict(modules[trained], optimizer, state["optim"], options=StateDictOptions(strict=False))
        for k, m in modules.items():
            if k != trained:
                set_model_state_dict(m, state[k])
        rng_file = path / f"rng_rank{self.ctx.rank}.pt"
        saved_world = int(meta.get("world_size", self.ctx.world_size))
        if rng_file.is_file() and saved_world == self.ctx.world_size:
            rng = _load_rng_file(rng_file)
            if rng is not None:
                set_rng_state(rng)
        elif saved_world != self.ctx.world_size:
            _LOG.warning("resuming on %d processes from a checkpoint of %d: RNG streams restart",
                         self.ctx.world_size, saved_world)
        return meta


def load_module_state(path: str | Path, module: nn.Module, key: str = "model") -> nn.Module:
    """Loads the weights saved under `key` ("model" for train-ac, "student" / "target" for pretraining) of a
    checkpoint folder into `module` in place, without an optimizer or a process group (e.g. to export)."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no meta.json)")
    state = {key: get_model_state_dict(module)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(module, state[key])
    return module


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU state dict (gathers FSDP2 shards; every rank must call it)."""
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
