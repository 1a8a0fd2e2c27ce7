"""Training: the V-JEPA 2 objective, pretraining and action-conditioned post-training loops."""

from vjepa_fast.train.objective import jepa_loss, normalized_targets

__all__ = ["jepa_loss", "normalized_targets"]

from vjepa_fast.train import _removed  # noqa: E402

_removed.install()
