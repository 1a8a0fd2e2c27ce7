"""Numbers of the V-JEPA 2 maths that several modules share, defined once (SPEC.md)."""

from __future__ import annotations

__all__ = ["TARGET_LN_EPS", "IMAGENET_MEAN", "IMAGENET_STD", "EVAL_RESIZE_RATIO"]

# The target / latent normalisation: layer norm without affine over the channels, with F.layer_norm's default
# eps, as Meta's pretraining targets, AC training targets and world-model latents all use it.
TARGET_LN_EPS = 1e-5

# Pixel normalisation of every V-JEPA 2 input (ImageNet statistics, RGB in [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Evaluation / planner preprocessing: the short side is resized to int(crop * 256 / 224) before the centre crop.
EVAL_RESIZE_RATIO = 256 / 224
