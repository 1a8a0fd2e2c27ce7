"""Plain-PyTorch twins of every fused op: the definition of correct that the kernels are tested against.

Nothing here imports the kernels or the ops it checks.
"""

from vjepa_fast.reference.ema import ema_update_foreach_, ema_update_loop_, ema_update_reference_

__all__ = ["ema_update_reference_", "ema_update_foreach_", "ema_update_loop_"]
