"""Numbers of the V-JEPA 2 maths that several modules share, defined once (SPEC.md)."""

from __future__ import annotations

__all__ = ["TARGET_LN_EPS"]

# The target / latent normalisation: layer norm without affine over the channels, with F.layer_norm's default
# eps, as Meta's pretraining targets, AC training targets and world-model latents all use it.
TARGET_LN_EPS = 1e-5
