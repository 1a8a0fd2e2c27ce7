"""Shared pieces of checkpoint I/O: the result type, the error type, file readers and strict loading.

`OfficialModels` (what a checkpoint holds), `CheckpointError` (every mismatch, a ValueError naming the file,
the entry and the keys at fault), the type aliases, the readers of .pt files (`torch.load(...,
weights_only=True)`, no pickled code runs) and of safetensors files, the cleaning of Meta's state dicts, and
`_load_strict` / `_build`, which build a model on the meta device and give it the file's tensors
(`load_state_dict(assign=True)`), so a 1B-parameter encoder is never randomly initialised just to be
overwritten; parameters keep the file's dtype.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn as nn

from vjepa_fast.models.ac_predictor import ActionConditionedPredictor
from vjepa_fast.models.config import ACPredictorConfig, EncoderConfig, PredictorConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor

PathLike = Union[str, os.PathLike]
Predictor = Union[MaskedPredictor, ActionConditionedPredictor]
AnyConfig = Union[EncoderConfig, PredictorConfig, ACPredictorConfig]

_IGNORED_KEYS = ("pos_embed", "predictor_pos_embed")  # absolute embeddings some files carry; RoPE needs none


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or whose tensors do not fit the requested model."""


@dataclass
class OfficialModels:
    """What a checkpoint holds: an encoder and an optional predictor.

    kind: "masked" (pretraining predictor), "ac" (action-conditioned predictor) or "encoder" (no predictor).
    layout: for Meta's files, the layout `load_official` recognised: "vjepa2_pretrain" (encoder /
        target_encoder / predictor), "vjepa2_ac", "vjepa2_1_train" (2.1 training file: encoder /
        target_encoder / predictor, the hub's g/G files) or "vjepa2_1_distilled" (the hub's distilled B/L:
        ema_encoder / predictor); "" for other sources.
    """

    encoder: VideoEncoder | None
    predictor: Predictor | None
    kind: str
    layout: str = ""

    def eval(self) -> OfficialModels:
        for m in (self.encoder, self.predictor):
            if m is not None:
                m.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> OfficialModels:
        for m in (self.encoder, self.predictor):
            if m is not None:
                m.to(*args, **kwargs)
        return self


# --------------------------------------------------------------------------------------------- reading files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _torch_load(path: PathLike, map_location: Any) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        # mmap keeps multi-GB files (optimizer state included) out of RAM until a tensor is touched.
        return torch.load(p, map_location=map_location, weights_only=True, mmap=True)
    except Exception as mmap_exc:  # noqa: BLE001 - re-raised below with the file named
        first = mmap_exc
    try:
        # Legacy (non-zip) files cannot be memory-mapped; retry plainly so real errors surface.
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln), None)
        if detail is not None:
            raise CheckpointError(
                f"{p}: refused by torch.load(weights_only=True): the pickle references code or classes "
                f"other than tensors and plain containers, so it is not loaded ({detail})"
            ) from exc
        if "Weights only load failed" in str(exc):
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "")
            reason = f"unreadable pickle: {detail}"
        else:
            reason = _first_line(exc)
        raise CheckpointError(
            f"{p}: not a readable PyTorch checkpoint (corrupt, truncated or another format): {reason}"
        ) from exc


def _clean_state_dict(sd: Any, source: str) -> dict[str, torch.Tensor]:
    """Strip the DDP 'module.' and MultiSeqWrapper 'backbone.' prefixes; drop pos_embed entries."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{source} is a {type(sd).__name__}, not a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is not a named tensor ({type(value).__name__})")
        name = key
        for prefix in ("module.", "backbone."):
            name = name.removeprefix(prefix)
        if name in _IGNORED_KEYS:
            continue
        out[name] = value
    return out


def _read_safetensors(path: Path, map_location: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    device = str(torch.device(map_location)) if map_location is not None else "cpu"
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {_first_line(exc)}"
        ) from exc
    return tensors, metadata


# ------------------------------------------------------------------------------------------ building modules


def _load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True, assign=True) with an error that names every mismatching key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)})")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})")
    if shapes:
        problems.append(f"wrong shapes [{'; '.join(shapes[:8])}]")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(sd, strict=True, assign=True)


def _build(cls: type[nn.Module], config: AnyConfig, sd: Mapping[str, torch.Tensor], source: str) -> Any:
    with torch.device("meta"):
        module = cls(config)
    _load_strict(module, sd, source)
    return module

