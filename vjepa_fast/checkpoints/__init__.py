"""Checkpoint I/O: Meta's official .pt files, the HF transformers VJEPA2 layout, and our safetensors format.

Every file is read with `torch.load(..., weights_only=True)` (no pickled code runs) or with safetensors.
Every mismatch is a `CheckpointError` (a ValueError) naming the file, the entry and the keys at fault.
Models are built on the meta device and take the file's tensors (`load_state_dict(assign=True)`), so a
1B-parameter encoder is never randomly initialised just to be overwritten; parameters keep the file's dtype.

One module per format, all re-exported here (`from vjepa_fast.checkpoints import load_official` as before):
  common       OfficialModels, CheckpointError, type aliases, file readers, strict loading onto meta-device models
  inference    infer_encoder_config / infer_predictor_config from tensor shapes, building encoder + predictor
  meta         load_official: Meta's official V-JEPA 2 / V-JEPA 2-AC .pt files
  hf           HF transformers VJEPA2: state dicts both ways, hf_config_dict, save_hf / load_hf folders
  safetensors  our safetensors format: save_safetensors, safetensors_info, load_safetensors
"""

from __future__ import annotations

from vjepa_fast.checkpoints.common import (
    AnyConfig,
    CheckpointError,
    OfficialModels,
    PathLike,
    Predictor,
)
from vjepa_fast.checkpoints.hf import (
    from_hf_state_dict,
    hf_config_dict,
    hf_to_ours_state_dicts,
    load_hf,
    save_hf,
    to_hf_state_dict,
)
from vjepa_fast.checkpoints.inference import _build_models  # noqa: F401  (private, used by tests)
from vjepa_fast.checkpoints.inference import infer_encoder_config, infer_predictor_config
from vjepa_fast.checkpoints.meta import load_official
from vjepa_fast.checkpoints.safetensors import (
    FORMAT_KEY,
    FORMAT_VERSION,
    INFO_KEY,
    load_safetensors,
    safetensors_info,
    save_safetensors,
)

__all__ = [
    "AnyConfig",
    "CheckpointError",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "INFO_KEY",
    "OfficialModels",
    "PathLike",
    "Predictor",
    "from_hf_state_dict",
    "hf_config_dict",
    "hf_to_ours_state_dicts",
    "infer_encoder_config",
    "infer_predictor_config",
    "load_hf",
    "load_official",
    "load_safetensors",
    "safetensors_info",
    "save_hf",
    "save_safetensors",
    "to_hf_state_dict",
]
