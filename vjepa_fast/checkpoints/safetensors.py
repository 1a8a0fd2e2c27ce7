"""Our safetensors format: an encoder and/or predictor with their configs as JSON metadata.

`save_safetensors` writes it (atomically, with an optional `info` dict of facts about the model),
`safetensors_info` reads that dict from the header, `load_safetensors` rebuilds the models from the stored
configs. The third-party `safetensors` library is imported absolutely, so this module does not shadow it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from vjepa_fast.checkpoints.common import (
    AnyConfig,
    CheckpointError,
    OfficialModels,
    PathLike,
    _build,
    _first_line,
    _read_safetensors,
)
from vjepa_fast.models.ac_predictor import ActionConditionedPredictor
from vjepa_fast.models.config import ACPredictorConfig, EncoderConfig, PredictorConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor

FORMAT_KEY = "vjepa_fast_format"
FORMAT_VERSION = "1"
INFO_KEY = "vjepa_fast_info"  # JSON facts about the model (camera, recipe), see save_safetensors(info=...)

_KIND_OF_CONFIG = {EncoderConfig: "encoder", PredictorConfig: "masked", ACPredictorConfig: "ac"}


def _roles(model_or_models: Any, config: AnyConfig | None) -> dict[str, nn.Module]:
    if isinstance(model_or_models, OfficialModels):
        roles = {"encoder": model_or_models.encoder, "predictor": model_or_models.predictor}
    elif isinstance(model_or_models, Mapping):
        roles = dict(model_or_models)
        bad = set(roles) - {"encoder", "predictor"}
        if bad:
            raise ValueError(f"model_or_models keys must be 'encoder' and/or 'predictor', got {sorted(bad)}")
    elif isinstance(model_or_models, VideoEncoder):
        roles = {"encoder": model_or_models}
    elif isinstance(model_or_models, (MaskedPredictor, ActionConditionedPredictor)):
        roles = {"predictor": model_or_models}
    else:
        raise TypeError(
            "model_or_models must be a VideoEncoder, a predictor, an OfficialModels or a dict of them, "
            f"got {type(model_or_models).__name__}"
        )
    roles = {k: v for k, v in roles.items() if v is not None}
    if not roles:
        raise ValueError("nothing to save: no encoder and no predictor")
    for role, module in roles.items():
        ok = (VideoEncoder,) if role == "encoder" else (MaskedPredictor, ActionConditionedPredictor)
        if not isinstance(module, ok):
            raise TypeError(f"{role} must be a {' or '.join(c.__name__ for c in ok)}, got {type(module).__name__}")
    if config is not None and len(roles) != 1:
        raise ValueError("config= is only accepted with a single module (each module of a group saves its own)")
    return roles


def save_safetensors(path: PathLike, model_or_models: Any, config: AnyConfig | None = None, *,
                     info: dict[str, Any] | None = None) -> Path:
    """Save an encoder and/or predictor in our safetensors format, configs as JSON metadata.

    model_or_models: a VideoEncoder, a MaskedPredictor / ActionConditionedPredictor, an OfficialModels, or a
    dict {"encoder": ..., "predictor": ...}. `config` (single module only) overrides `module.config`, e.g.
    to store another attn_impl; it must describe the same shapes. `info`: JSON-serialisable facts about the
    model (e.g. the camera it was trained on, how it was made), read back with `safetensors_info`. The write is
    atomic (temp file + rename).
    """
    from safetensors.torch import save_file

    roles = _roles(model_or_models, config)
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"format": "pt", FORMAT_KEY: FORMAT_VERSION}
    if info:
        metadata[INFO_KEY] = json.dumps(info, sort_keys=True)
    for role, module in roles.items():
        cfg = config if config is not None else module.config
        if type(cfg) is not type(module.config):
            raise TypeError(f"config for the {role} must be a {type(module.config).__name__}, got {type(cfg).__name__}")
        metadata[f"{role}_config"] = json.dumps(cfg.to_dict())
        if role == "predictor":
            metadata["predictor_kind"] = _KIND_OF_CONFIG[type(cfg)]
        for k, v in module.state_dict().items():
            tensors[f"{role}.{k}"] = v.detach().to("cpu").contiguous()
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600; an exported model is a file like any other
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def safetensors_info(path: PathLike) -> dict[str, Any]:
    """The `info` dict stored by `save_safetensors` ({} when none), read from the header without the tensors."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(INFO_KEY)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{p}: not a readable safetensors file: {_first_line(exc)}") from exc
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{p}: bad {INFO_KEY} metadata: {exc}") from exc
    return info if isinstance(info, dict) else {}


def load_safetensors(path: PathLike, *, attn_impl: str | None = None, map_location: Any = "cpu") -> OfficialModels:
    """Load a file written by `save_safetensors`; the stored configs rebuild the models.

    attn_impl: overrides the stored attention implementation when given.
    """
    p = Path(path)
    tensors, metadata = _read_safetensors(p, map_location)
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: not a vjepa_fast safetensors file (metadata {FORMAT_KEY!r} is {metadata.get(FORMAT_KEY)!r}, "
            f"expected {FORMAT_VERSION!r}); for HF folders use load_hf"
        )
    parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "predictor": {}}
    for k, v in tensors.items():
        role, _, name = k.partition(".")
        if role not in parts:
            raise CheckpointError(f"{p}: unexpected key {k!r} (expected 'encoder.*' or 'predictor.*')")
        parts[role][name] = v
    built: dict[str, nn.Module | None] = {"encoder": None, "predictor": None}
    kind = "encoder"
    for role in ("encoder", "predictor"):
        raw = metadata.get(f"{role}_config")
        if raw is None:
            if parts[role]:
                raise CheckpointError(f"{p}: {role} tensors present but no '{role}_config' metadata")
            continue
        if role == "encoder":
            cls, cfg_cls = VideoEncoder, EncoderConfig
        else:
            kind = metadata.get("predictor_kind", "")
            if kind not in ("masked", "ac"):
                raise CheckpointError(f"{p}: predictor_kind metadata is {kind!r}, expected 'masked' or 'ac'")
            if kind == "masked":
                cls, cfg_cls = MaskedPredictor, PredictorConfig
            else:
                cls, cfg_cls = ActionConditionedPredictor, ACPredictorConfig
        try:
            cfg = cfg_cls.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{p}: bad {role}_config metadata: {exc}") from exc
        if attn_impl is not None:
            cfg = cfg.replace(attn_impl=attn_impl)
        built[role] = _build(cls, cfg, parts[role], f"{p} ({role})")
    return OfficialModels(built["encoder"], built["predictor"], kind)  # type: ignore[arg-type]
