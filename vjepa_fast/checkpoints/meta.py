"""Meta's official V-JEPA 2 / V-JEPA 2-AC .pt files: `load_official` and the layouts it understands.

Pretraining files hold 'module.backbone.' names under encoder / target_encoder / predictor; AC files hold
'module.' names under encoder / predictor. Files are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vjepa_fast.checkpoints.common import (
    CheckpointError,
    OfficialModels,
    PathLike,
    _clean_state_dict,
    _torch_load,
)
from vjepa_fast.checkpoints.inference import _build_models
from vjepa_fast.models.config import ACPredictorConfig, EncoderConfig, PredictorConfig

logger = logging.getLogger(__name__)


def load_official(
    path: PathLike,
    *,
    encoder_key: str = "target_encoder",
    encoder_config: EncoderConfig | None = None,
    predictor_config: PredictorConfig | ACPredictorConfig | None = None,
    attn_impl: str = "sdpa",
    map_location: Any = "cpu",
) -> OfficialModels:
    """Load one of Meta's official V-JEPA 2 / V-JEPA 2-AC .pt files.

    Handles the pretraining layout ('module.backbone.' names under encoder / target_encoder / predictor)
    and the AC layout ('module.' names under encoder / predictor). `encoder_key` picks the encoder entry
    ("target_encoder", the EMA weights used by the evals, or "encoder", the hub's choice); an AC file without
    a target encoder falls back to "encoder" (its encoder is frozen, so both are the same). The predictor kind
    follows from the keys. Sizes are inferred from shapes for the released widths (1024/1280/1408); for
    others pass `encoder_config` / `predictor_config`. vitg-384.pt needs the 384 px grid for its predictor:
    pass `PredictorConfig.vit_giant_384()` (shapes cannot tell 256 from 384).
    """
    if encoder_key not in ("target_encoder", "encoder"):
        raise ValueError(f"encoder_key must be 'target_encoder' or 'encoder', got {encoder_key!r}")
    p = Path(path)
    ckpt = _torch_load(p, map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{p}: top level is a {type(ckpt).__name__}, expected a dict with encoder weights")
    pred_sd = _clean_state_dict(ckpt["predictor"], f"{p}['predictor']") if "predictor" in ckpt else None
    is_ac = pred_sd is not None and "action_encoder.weight" in pred_sd
    key = encoder_key
    if key not in ckpt:
        other = "encoder" if key == "target_encoder" else "target_encoder"
        if is_ac and other in ckpt:
            logger.info("%s has no %r entry; using %r (the AC encoder is frozen)", p, key, other)
            key = other
        else:
            found = sorted(k for k in ckpt if isinstance(k, str))
            raise CheckpointError(f"{p}: no {encoder_key!r} entry; top-level keys are {found}")
    enc_sd = _clean_state_dict(ckpt[key], f"{p}[{key!r}]")
    return _build_models(
        enc_sd,
        pred_sd,
        encoder_config=encoder_config,
        predictor_config=predictor_config,
        attn_impl=attn_impl,
        enc_source=f"{p}[{key!r}]",
        pred_source=f"{p}['predictor']",
    )

