"""Loads the compiled extension with an error that says how to build it."""

from __future__ import annotations

import torch  # noqa: F401  (libtorch must be loaded before the extension)

try:
    from vjepa_fast import _C
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "vjepa_fast._C (the compiled ops) could not be loaded: "
        f"{exc}. Build it with `pip install --no-build-isolation -e .` in an environment that has torch."
    ) from exc


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels (VJEPA_FAST_CUDA=ON/AUTO with nvcc)."""
    return bool(_C.with_cuda)
