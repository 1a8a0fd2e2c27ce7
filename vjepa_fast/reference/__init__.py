"""Plain-PyTorch twins of every fused op: the definition of correct that the kernels are tested against.

Nothing here imports the kernels or the ops it checks.
"""

from vjepa_fast.reference.attention import reference_rope_attention, reference_rope_attention_backward
from vjepa_fast.reference.cem import cem_refit_reference, cem_sample_reference, philox4x32_10, philox_normals
from vjepa_fast.reference.ema import ema_update_foreach_, ema_update_loop_, ema_update_reference_

__all__ = [
    "cem_refit_reference",
    "cem_sample_reference",
    "ema_update_foreach_",
    "ema_update_loop_",
    "ema_update_reference_",
    "philox4x32_10",
    "philox_normals",
    "reference_rope_attention",
    "reference_rope_attention_backward",
]
