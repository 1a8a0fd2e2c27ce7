"""Meta's official V-JEPA 2 / V-JEPA 2-AC / V-JEPA 2.1 .pt files: `load_official` and the layouts it knows.

Pretraining files hold 'module.backbone.' names under encoder / target_encoder / predictor; AC files hold
'module.' names under encoder / predictor; V-JEPA 2.1 training files (and the hub's g/G) hold 2.1 models
under encoder / target_encoder / predictor, the hub's distilled B/L files under ema_encoder / predictor.
Files are read with `torch.load(..., weights_only=True)`.
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
from vjepa_fast.checkpoints.inference import _build_models, is_v21_encoder
from vjepa_fast.models.config import ACPredictorConfig, EncoderConfig, PredictorConfig

logger = logging.getLogger(__name__)


ENCODER_KEYS = ("target_encoder", "encoder", "ema_encoder")


def load_official(
    path: PathLike,
    *,
    encoder_key: str | None = None,
    encoder_config: EncoderConfig | None = None,
    predictor_config: PredictorConfig | ACPredictorConfig | None = None,
    attn_impl: str | None = None,
    map_location: Any = "cpu",
) -> OfficialModels:
    """Load one of Meta's official V-JEPA 2, V-JEPA 2-AC or V-JEPA 2.1 .pt files.

    Layouts (recognised from the keys, reported in the result's `layout` and logged):
      "vjepa2_pretrain"     'module.backbone.' names under encoder / target_encoder / predictor;
      "vjepa2_ac"           'module.' names under encoder / predictor (an action-conditioned predictor);
      "vjepa2_1_train"      a V-JEPA 2.1 training file (its encoder has `norms_block.*`): encoder /
                            target_encoder / predictor, as `app/vjepa_2_1/train.py` saves and the hub's g/G
                            files are read;
      "vjepa2_1_distilled"  the hub's distilled 2.1 ViT-B/L files: ema_encoder / predictor.
    Other top-level entries (opt, scaler, epoch, ...) are ignored.

    `encoder_key` picks the encoder entry: None (default) takes "target_encoder" (the EMA weights the evals
    and the hub's g/G use), else "ema_encoder" (distilled files); "encoder" is the online encoder. An AC
    file without a target encoder falls back to "encoder" (its encoder is frozen, so both are the same).
    The predictor kind follows from the keys. Sizes are inferred from shapes for the released widths
    (V-JEPA 2: 1024/1280/1408 at 256 px; 2.1: 768/1024/1408/1664 at 384 px); for others pass
    `encoder_config` / `predictor_config` (for Meta's hyper-parameter dicts,
    `vjepa_fast.models.configs_from_meta`); they are checked against the shapes, except a 2.1 predictor's
    number of levels and output width, which the file's shapes fix (the distilled form has one level and
    the teacher's width). vitg-384.pt needs the 384 px grid for its predictor: pass
    `PredictorConfig.vit_giant_384()` (shapes cannot tell 256 from 384). `attn_impl` overrides the configs'
    attention implementation (None: the given configs' own; "sdpa" for inferred ones). Loading is strict: a
    missing, unexpected or misshapen key is a `CheckpointError` naming it.
    """
    if encoder_key is not None and encoder_key not in ENCODER_KEYS:
        raise ValueError(f"encoder_key must be None or one of {ENCODER_KEYS}, got {encoder_key!r}")
    p = Path(path)
    ckpt = _torch_load(p, map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{p}: top level is a {type(ckpt).__name__}, expected a dict with encoder weights")
    pred_sd = _clean_state_dict(ckpt["predictor"], f"{p}['predictor']") if "predictor" in ckpt else None
    is_ac = pred_sd is not None and "action_encoder.weight" in pred_sd
    key = encoder_key
    if key is None:
        key = next((k for k in ("target_encoder", "ema_encoder") if k in ckpt), "target_encoder")
    if key not in ckpt:
        other = "encoder" if key == "target_encoder" else "target_encoder"
        if is_ac and other in ckpt:
            logger.info("%s has no %r entry; using %r (the AC encoder is frozen)", p, key, other)
            key = other
        else:
            found = sorted(k for k in ckpt if isinstance(k, str))
            raise CheckpointError(f"{p}: no {key!r} entry; top-level keys are {found}")
    enc_sd = _clean_state_dict(ckpt[key], f"{p}[{key!r}]")
    if is_ac:
        layout = "vjepa2_ac"
    elif is_v21_encoder(enc_sd):
        layout = "vjepa2_1_distilled" if "ema_encoder" in ckpt else "vjepa2_1_train"
    else:
        layout = "vjepa2_pretrain"
    logger.info("%s: %s layout, encoder from %r", p, layout, key)
    models = _build_models(
        enc_sd,
        pred_sd,
        encoder_config=encoder_config,
        predictor_config=predictor_config,
        attn_impl=attn_impl,
        enc_source=f"{p}[{key!r}]",
        pred_source=f"{p}['predictor']",
    )
    models.layout = layout
    return models
