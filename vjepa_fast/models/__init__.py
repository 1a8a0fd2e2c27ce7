"""V-JEPA 2 / 2.1 networks with exact parity to Meta's reference: encoder, masked predictor, AC predictor."""

from vjepa_fast.models.ac_predictor import ACKVCache, ActionConditionedPredictor
from vjepa_fast.models.attention import available_attention_impls, register_attention_impl
from vjepa_fast.models.config import EncoderConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.meta_config import MetaConfigs, configs_from_meta
from vjepa_fast.models.predictor import MaskedPredictor
from vjepa_fast.models.predictor_config import ACPredictorConfig, PredictorConfig
from vjepa_fast.rope import apply_rope, grid_positions, grid_rope_tables, rope_tables

__all__ = [
    "ACKVCache",
    "ACPredictorConfig",
    "ActionConditionedPredictor",
    "EncoderConfig",
    "MaskedPredictor",
    "MetaConfigs",
    "PredictorConfig",
    "VideoEncoder",
    "apply_rope",
    "available_attention_impls",
    "configs_from_meta",
    "grid_positions",
    "grid_rope_tables",
    "register_attention_impl",
    "rope_tables",
]
