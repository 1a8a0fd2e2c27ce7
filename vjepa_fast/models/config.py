"""Typed configurations of the V-JEPA 2 networks, with named presets, in one place: EncoderConfig
(`models/encoder_config.py`), PredictorConfig and ACPredictorConfig (`models/predictor_config.py`).

Shapes of every parameter depend only on the widths, depths and patch sizes; `img_size` and `num_frames`
matter for the predictors (the token grid their RoPE positions are read on, and the number of time steps
the action-conditioned predictor accepts). The encoder reads its token grid from the input.
"""

from vjepa_fast.models.encoder_config import (  # noqa: F401  (re-exported: the one place to import from)
    GIANT_MLP_RATIO,
    GIGANTIC_MLP_RATIO,
    V21_LEVELS,
    V21_PREDICTOR_DEPTHS,
    VERSIONS,
    VJEPA2,
    VJEPA2_1,
    EncoderConfig,
    _as_hw,
    _check_version,
    _ConfigBase,
    rope_pretrained_grid,
)
from vjepa_fast.models.predictor_config import ACPredictorConfig, PredictorConfig  # noqa: F401

__all__ = ["EncoderConfig", "PredictorConfig", "ACPredictorConfig", "VJEPA2", "VJEPA2_1", "VERSIONS", "V21_LEVELS",
           "V21_PREDICTOR_DEPTHS", "rope_pretrained_grid"]
