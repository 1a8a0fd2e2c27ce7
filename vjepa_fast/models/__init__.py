"""V-JEPA 2 networks with exact parity to Meta's reference: encoder, masked predictor, AC predictor."""

from vjepa_fast.models.ac_predictor import ACKVCache, ActionConditionedPredictor
from vjepa_fast.models.attention import available_attention_impls, register_attention_impl
from vjepa_fast.models.config import ACPredictorConfig, EncoderConfig, PredictorConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor
from vjepa_fast.models.rope import apply_rope, grid_positions, grid_rope_tables, rope_tables

__all__ = [
    "ACKVCache",
    "ACPredictorConfig",
    "ActionConditionedPredictor",
    "EncoderConfig",
    "MaskedPredictor",
    "PredictorConfig",
    "VideoEncoder",
    "apply_rope",
    "available_attention_impls",
    "grid_positions",
    "grid_rope_tables",
    "register_attention_impl",
    "rope_tables",
]
